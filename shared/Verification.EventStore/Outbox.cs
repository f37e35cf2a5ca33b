using System.Diagnostics;
using System.Text.Json;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Verification.EventStore;

/// <summary>
/// Publishes outbox messages after their transaction commits: in outbox order (so in order per stream), at
/// least once, each with its outbox message id as the MassTransit MessageId so consumers' inboxes dedupe.
/// One instance publishes at a time (advisory lock).
/// </summary>
public sealed partial class OutboxRelay(EventStore store, IServiceScopeFactory scopes, ILogger<OutboxRelay> logger) : BackgroundService
{
    private static readonly ActivitySource Source = new("Verification.Outbox");

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var lease = await Lease.TryAcquireAsync(store, "outbox", stoppingToken);
                if (lease is null)
                {
                    await Task.Delay(store.Options.PollInterval * 2, stoppingToken);
                    continue;
                }
                using var scope = scopes.CreateScope();
                var publisher = scope.ServiceProvider.GetRequiredService<IPublishEndpoint>();
                while (!stoppingToken.IsCancellationRequested)
                {
                    var wake = store.Signals.NextOutbox;
                    using var batch = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    batch.CancelAfter(store.Options.PublishTimeout);
                    int published;
                    try
                    {
                        published = await store.PublishPendingAsync(publisher, batch.Token);
                    }
                    catch (OutboxMessageUnreadableException e)
                    {
                        LogUnreadable(logger, e, e.Position, e.MessageType);
                        published = 1;   // the rest of the batch went out: look again at once, past the stream held back
                    }
                    if (published == 0)
                    {
                        await lease.EnsureHeldAsync(stoppingToken);
                        await Signals.WaitAsync(wake, store.Options.PollInterval, stoppingToken);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, e);
                await Task.Delay(store.Options.PollInterval, stoppingToken);
            }
        }
    }

    internal static Activity? StartPublishActivity(string? traceparent, string messageType) =>
        Source.StartActivity("outbox publish " + messageType, ActivityKind.Internal, traceparent ?? default(string));

    [LoggerMessage(Level = LogLevel.Error,
        Message = "Outbox message at {Position} ({MessageType}) cannot be read; its stream waits behind it and it is tried again later")]
    private static partial void LogUnreadable(ILogger logger, Exception exception, long position, string messageType);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay failed; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}

/// <summary>
/// An outbox message this code could not read, so could not publish: its stream's later messages wait behind it while
/// the other streams go on, and it is tried again later (deploy code that knows its type, or an upcaster).
/// </summary>
public sealed class OutboxMessageUnreadableException(long position, Guid messageId, string? streamId, string messageType, Exception inner)
    : Exception($"outbox message {messageId} at {position} ({messageType}{(streamId is null ? "" : $" of {streamId}")}) cannot be read, " +
        $"so its stream waits: {inner.Message}", inner)
{
    public long Position => position;
    public string MessageType => messageType;
}

public static class Outbox
{
    /// <summary>Publishes unsent messages through MassTransit in order and marks each sent. Returns how many were published.</summary>
    public static Task<int> PublishPendingAsync(this EventStore store, IPublishEndpoint publisher, CancellationToken cancellationToken = default, int limit = 200) =>
        store.PublishPendingAsync((message, id, correlation, ct) => publisher.Publish(message, message.GetType(), context =>
        {
            context.MessageId = id;
            context.CorrelationId = correlation;
        }, ct), cancellationToken, limit);

    /// <summary>
    /// The relay's loop body with the publish step given: (message, message id, correlation id). Streams are published
    /// side by side (their confirms overlap), each stream's messages one after another in order; one UPDATE marks the
    /// batch. A failure marks what was published and rethrows: the rest goes out, in order, next time. A message this
    /// code cannot read (a type it does not know, JSON that no longer fits) holds back its stream only: it is marked
    /// with why, tried again after a delay doubling from the poll interval up to sixty of them, and
    /// <see cref="OutboxMessageUnreadableException"/> is thrown once the rest of the batch is out.
    /// </summary>
    public static async Task<int> PublishPendingAsync(this EventStore store, Func<object, Guid, Guid?, CancellationToken, Task> publish,
        CancellationToken cancellationToken = default, int limit = 200)
    {
        var pending = new List<(long Position, Guid Id, string? Stream, string Type, string Message, string Headers)>();
        await using (var connection = await store.DataSource.OpenConnectionAsync(cancellationToken))
        await using (var read = new NpgsqlCommand(
            $"""
            SELECT position, message_id, stream_id, message_type, message::text, headers::text FROM {store.Schema}.outbox o
            WHERE sent_at IS NULL AND NOT EXISTS (
                SELECT 1 FROM {store.Schema}.outbox h WHERE h.sent_at IS NULL AND h.retry_at IS NOT NULL AND h.retry_at > now()
                  AND h.position <= o.position AND (h.position = o.position OR h.stream_id = o.stream_id))
            ORDER BY position LIMIT @limit
            """, connection))
        {
            read.Parameters.AddWithValue("limit", limit);
            await read.PrepareAsync(cancellationToken);
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
                pending.Add((reader.GetInt64(0), reader.GetGuid(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.GetString(5)));
        }
        if (pending.Count == 0) return 0;
        var sent = new System.Collections.Concurrent.ConcurrentBag<long>();
        var unreadable = new System.Collections.Concurrent.ConcurrentBag<(long Position, Guid Id, string? Stream, string Type, Exception Error)>();
        var streams = pending.GroupBy(p => p.Stream ?? p.Id.ToString()).Select(async group =>
        {
            foreach (var (position, id, stream, type, json, headersJson) in group)
            {
                Dictionary<string, string?> headers;
                object message;
                try
                {
                    headers = JsonSerializer.Deserialize<Dictionary<string, string?>>(headersJson, EventTypes.Json) ?? [];
                    message = store.Types.Deserialize(type, json);
                }
                catch (Exception e) when (e is JsonException or InvalidOperationException or NotSupportedException)
                {
                    unreadable.Add((position, id, stream, type, e));
                    return;   // the stream waits behind it, in order; the others go on
                }
                // The publish joins the trace of the request that wrote the message.
                using (OutboxRelay.StartPublishActivity(headers.GetValueOrDefault("traceparent"), type))
                {
                    await publish(message, id, Guid.TryParse(headers.GetValueOrDefault("correlationId"), out var correlation) ? correlation : null, cancellationToken);
                }
                sent.Add(position);
            }
        }).ToList();
        try
        {
            // WaitAsync: a publish that ignores cancellation (a confirm lost with its channel) is abandoned, not awaited
            // forever; what it sends after that goes again next time, and the consumer's inbox absorbs the repeat.
            await Task.WhenAll(streams).WaitAsync(cancellationToken);
        }
        finally
        {
            if (!sent.IsEmpty)
            {
                await using var connection = await store.DataSource.OpenConnectionAsync(CancellationToken.None);
                await using var mark = new NpgsqlCommand($"UPDATE {store.Schema}.outbox SET sent_at = now() WHERE position = ANY(@positions)", connection);
                mark.Parameters.AddWithValue("positions", sent.ToArray());
                await mark.PrepareAsync(CancellationToken.None);
                await mark.ExecuteNonQueryAsync(CancellationToken.None);
            }
            foreach (var (position, _, _, _, error) in unreadable)
            {
                await using var connection = await store.DataSource.OpenConnectionAsync(CancellationToken.None);
                await using var hold = new NpgsqlCommand(
                    $"UPDATE {store.Schema}.outbox SET failure = @failure, attempts = attempts + 1, " +
                    "retry_at = now() + @poll * least(60, power(2, least(attempts, 6))) WHERE position = @position", connection);
                hold.Parameters.AddWithValue("failure", Storable.Error(error));
                hold.Parameters.AddWithValue("poll", store.Options.PollInterval);
                hold.Parameters.AddWithValue("position", position);
                await hold.ExecuteNonQueryAsync(CancellationToken.None);
            }
        }
        if (!unreadable.IsEmpty)
        {
            var (position, id, stream, type, error) = unreadable.MinBy(u => u.Position);
            throw new OutboxMessageUnreadableException(position, id, stream, type, error);
        }
        return pending.Count;
    }

    public static async Task<long> UnsentCountAsync(this EventStore store, CancellationToken cancellationToken = default)
    {
        await using var command = store.DataSource.CreateCommand($"SELECT count(*) FROM {store.Schema}.outbox WHERE sent_at IS NULL");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Runs <paramref name="work"/> once per message id and consumer: the inbox mark is written in the same
    /// transaction as the consumer's appends, so a redelivered message changes nothing. False if already done.
    /// </summary>
    public static async Task<bool> HandleOnceAsync(this EventStore store, string consumer, Guid messageId, EventMetadata metadata,
        Func<EventSession, Task> work, CancellationToken cancellationToken = default)
    {
        await using (var connection = await store.DataSource.OpenConnectionAsync(cancellationToken))
        await using (var seen = new NpgsqlCommand($"SELECT 1 FROM {store.Schema}.inbox WHERE consumer = @c AND message_id = @m", connection))
        {
            seen.Parameters.AddWithValue("c", consumer);
            seen.Parameters.AddWithValue("m", messageId);
            await seen.PrepareAsync(cancellationToken);   // every message a consumer takes runs it
            if (await seen.ExecuteScalarAsync(cancellationToken) is not null) return false;
        }
        var session = store.OpenSession(metadata).MarkProcessed(consumer, messageId);
        await work(session);
        try
        {
            await session.SaveChangesAsync(cancellationToken);
            return true;
        }
        catch (DuplicateMessageException)
        {
            return false;
        }
    }
}
