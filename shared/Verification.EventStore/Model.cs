namespace Verification.EventStore;

/// <summary>Who did it and why: stored with every event (and hashed with it).</summary>
public sealed record EventMetadata
{
    public string? ActorSub { get; init; }
    public string? ActorRole { get; init; }
    public string? ActorParty { get; init; }
    public string? CorrelationId { get; init; }
    public string? CausationId { get; init; }
    public string? TraceId { get; init; }
    public int SchemaVersion { get; init; } = 1;

    public static readonly EventMetadata Empty = new();
}

/// <summary>An event as stored: its place in the log, its stream and version, its data and metadata.</summary>
public sealed record StoredEvent(
    long Position,
    ulong TransactionId,
    Guid Id,
    string StreamId,
    long Version,
    string Type,
    object Data,
    EventMetadata Metadata,
    DateTimeOffset RecordedAt,
    byte[] Hash);

public sealed record AppendResult(string StreamId, long Version, IReadOnlyList<long> Positions, bool Duplicate);

/// <summary>An event to append with its own id: a retry with the same ids is a no-op.</summary>
public sealed record NewEvent(Guid Id, object Data);

/// <summary>A place in the log's commit order: (transaction id, position). Zero is before the first event.</summary>
public readonly record struct LogPosition(ulong TransactionId, long Position) : IComparable<LogPosition>
{
    public int CompareTo(LogPosition other) => (TransactionId, Position).CompareTo((other.TransactionId, other.Position));

    public static readonly LogPosition Start = new(0, 0);
}

/// <summary>Expected version: a number, <see cref="Any"/>, or <see cref="NoStream"/> (0) to start a stream.</summary>
public static class ExpectedVersion
{
    public const long NoStream = 0;
    public static readonly long? Any;
}

public sealed class DuplicateMessageException(string consumer, Guid messageId)
    : Exception($"message {messageId} was already processed by {consumer}")
{
    public string Consumer { get; } = consumer;
    public Guid MessageId { get; } = messageId;
}

/// <summary>The stream is archived: it takes no more events (its events stay readable); nothing of the batch was written.</summary>
public sealed class StreamArchivedException(string streamId) : Exception($"Stream '{streamId}' is archived and takes no more events.")
{
    public string StreamId { get; } = streamId;
}

/// <summary>
/// An event this code cannot read: a newer schema version than it knows (written by a newer instance during a rolling
/// deployment), no upcaster from an older one, or JSON that no longer fits its type.
/// </summary>
public sealed class UnreadableEventException(LogPosition at, string streamId, string eventType, Exception inner)
    : InvalidOperationException($"event {at.Position} ({eventType} of {streamId}) cannot be read: {inner.Message}", inner)
{
    /// <summary>Where it stands in commit order: a reader that may pass over it (a live feed, not a projection) resumes after it.</summary>
    public LogPosition At { get; } = at;
    public long Position => At.Position;
    public string StreamId { get; } = streamId;
    public string EventType { get; } = eventType;
}

/// <summary>
/// A rebuild-and-compare could not get past an event: the projection throws on it, or this code cannot read it. The
/// scratch documents are gone; the live projection, if it has met the event, shows the same in its status.
/// </summary>
public sealed class RebuildFailedException(string projection, long position, string streamId, string eventType, Exception inner)
    : InvalidOperationException($"projection {projection} cannot be rebuilt past event {position} ({eventType} of {streamId}): {inner.Message}", inner)
{
    public string Projection { get; } = projection;
    public long Position { get; } = position;
    public string StreamId { get; } = streamId;
    public string EventType { get; } = eventType;
}

/// <summary>
/// Tells a failure that is everyone's (the database gone, busy or timed out, the caller stopping: try the whole pass
/// again) from one that is a single item's own (a projection's code, an event or message this code cannot read, a
/// stream that refuses the append): workers set that item aside and go on with the rest.
/// </summary>
public static class Failures
{
    public static bool IsTransient(Exception e) => e switch
    {
        OperationCanceledException or TimeoutException => true,
        Npgsql.PostgresException postgres => postgres.IsTransient,
        Npgsql.NpgsqlException => true,
        _ => false,
    };

    /// <summary>How long an item set aside waits before its next attempt: the interval, doubling, at most sixty of them.</summary>
    public static TimeSpan RetryDelay(TimeSpan interval, int attempts) => interval * Math.Min(60, 1 << Math.Clamp(attempts - 1, 0, 6));
}
