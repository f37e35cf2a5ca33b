using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;

namespace Verification.EventStore;

/// <summary>
/// Group commit for the common append: one event to one stream at an expected version. While
/// <see cref="EventStoreOptions.MaxAppendsInFlight"/> appends are running, later ones wait and go together,
/// in one transaction and one statement per table, when one finishes: under load the store then spends one
/// round trip, one statement and one commit on many appends instead of one each. A flush that finds no one
/// waiting stays for one turn of the thread pool, and appends arriving then join it. Otherwise, below the limit,
/// every append runs at once on its own, so a lone writer, or a few, wait for nobody. Each append still stands alone: it is
/// stored whole or not at all, and one the group could not store (a conflict, a retry, an archived
/// stream) or a group that failed sends its appends back to run alone, where each meets its own outcome.
/// </summary>
internal sealed class GroupCommit(EventStore store)
{
    private const int MaxGroup = 100;
    private static readonly ActivitySource Source = new("Verification.EventStore");

    private readonly Lock _gate = new();
    private readonly List<Member> _waiting = [];
    private int _running, _lingering;

    internal sealed record Message(Guid Id, string? StreamId, string Type, string Json, string Headers);

    internal sealed class Member(string streamId, string streamType, long expected, NewEvent @event, string type, string data, string metadataJson,
        EventMetadata metadata, IReadOnlyList<Message> messages, ActivityContext caller)
    {
        public string StreamId => streamId;
        public string StreamType => streamType;
        public long Expected => expected;
        public NewEvent Event => @event;
        public string Type => type;
        public string Data => data;
        public string MetadataJson => metadataJson;
        public EventMetadata Metadata => metadata;
        public IReadOnlyList<Message> Messages => messages;
        /// <summary>The caller's trace: the group's activity links to each of its appends' callers.</summary>
        public ActivityContext Caller => caller;
        /// <summary>The stored result, or null: the group did not store it, so it runs alone.</summary>
        public TaskCompletionSource<AppendResult?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Appends waiting for a group.</summary>
    internal int Waiting
    {
        get { lock (_gate) return _waiting.Count; }
    }

    /// <summary>Null: a place is free and no flush is gathering, so the caller appends alone now and calls <see cref="Leave"/> after.</summary>
    public Task<AppendResult?>? Enter(Member member)
    {
        lock (_gate)
        {
            if (_running < store.Options.MaxAppendsInFlight && _waiting.Count == 0 && _lingering == 0)
            {
                _running++;
                return null;
            }
            _waiting.Add(member);
            return member.Done.Task;
        }
    }

    /// <summary>An append that ran alone is done: its place goes to the appends that waited meanwhile, if any.</summary>
    public void Leave()
    {
        lock (_gate)
        {
            if (_waiting.Count == 0)
            {
                _running--;
                return;
            }
        }
        // Not under this caller's trace: the flush serves many callers and links to each.
        using (ExecutionContext.SuppressFlow()) _ = Task.Run(FlushAsync);
    }

    /// <summary>A caller that stops waiting before its group is taken is withdrawn: nothing of it is written.</summary>
    public bool Withdraw(Member member)
    {
        lock (_gate) return _waiting.Remove(member);
    }

    private async Task FlushAsync()
    {
        var lingered = false;
        while (true)
        {
            List<Member> group = [];
            lock (_gate)
            {
                if (lingered) _lingering--;
                if (_waiting.Count == 0)
                {
                    if (lingered)
                    {
                        _running--;
                        return;
                    }
                    _lingering++;
                }
                else
                {
                    // One append per stream in a group (a later one to the same stream expects what the earlier one makes);
                    // the rest keep their order, in one pass under the lock.
                    var streams = new HashSet<string>(StringComparer.Ordinal);
                    var kept = 0;
                    for (var i = 0; i < _waiting.Count; i++)
                    {
                        var member = _waiting[i];
                        if (group.Count < MaxGroup && streams.Add(member.StreamId)) group.Add(member);
                        else _waiting[kept++] = member;
                    }
                    _waiting.RemoveRange(kept, _waiting.Count - kept);
                }
            }
            // Nothing waits: stay for one turn of the thread pool before giving the place up. Under load the callers of
            // the appends just stored come straight back with their next ones; they join this flush instead of each
            // starting alone (which cost twice the server time of an append in a group).
            lingered = group.Count == 0;
            if (lingered)
            {
                await Task.Yield();
                continue;
            }
            Dictionary<string, AppendResult>? stored = null;
            var outbox = group.Exists(m => m.Messages.Count > 0);
            var carried = store.Signals.Carry(outbox);
            using (var activity = Source.StartActivity(ActivityKind.Internal, parentContext: default, tags: [new("verification.appends", group.Count)],
                links: group.Where(m => m.Caller != default).Select(m => new ActivityLink(m.Caller)), name: "group commit"))
            {
                try
                {
                    stored = await StoreAsync(group, carried);
                }
                catch (Exception e)
                {
                    // Rolled back, so every append in it runs alone and meets its own outcome. (Had the commit gone through
                    // unseen, an append finds its event stored when it runs alone, and reports a duplicate.)
                    activity?.SetStatus(ActivityStatusCode.Error, e.Message);
                    if (carried is not null) store.Signals.CarryFailed(e);
                }
            }
            foreach (var member in group) member.Done.TrySetResult(stored?.GetValueOrDefault(member.StreamId));
            if (stored is { Count: > 0 }) store.Signals.Committed(events: true, outbox, carried: carried is not null);
        }
    }

    private async Task<Dictionary<string, AppendResult>> StoreAsync(List<Member> group, string[]? notify)
    {
        // Stream order: every writer locks streams in the same order, so two groups never wait on each other crosswise.
        group.Sort((a, b) => string.CompareOrdinal(a.StreamId, b.StreamId));
        var inline = store.Options.InlineProjections;
        await using var connection = await store.DataSource.OpenConnectionAsync();
        await using var transaction = inline.Count > 0 ? await connection.BeginTransactionAsync() : null;
        await using var batch = new NpgsqlBatch(connection, transaction);

        var streams = group.Select(m => m.StreamId).ToArray();
        var lockStreams = new NpgsqlBatchCommand(store.LockStreamsSql);
        lockStreams.Parameters.Add(Texts(streams));
        lockStreams.Parameters.Add(Texts(group.Select(m => m.StreamType)));
        batch.BatchCommands.Add(lockStreams);

        var append = new NpgsqlBatchCommand(store.AppendGroupSql(stored: inline.Count > 0));
        append.Parameters.Add(Texts(streams));
        append.Parameters.Add(new NpgsqlParameter { Value = group.Select(m => m.Expected).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
        append.Parameters.Add(new NpgsqlParameter { Value = group.Select(m => m.Event.Id).ToArray() });
        append.Parameters.Add(Texts(group.Select(m => m.Type)));
        append.Parameters.Add(EventStore.Jsonb([.. group.Select(m => m.Data)]));
        append.Parameters.Add(EventStore.Jsonb([.. group.Select(m => m.MetadataJson)]));
        batch.BatchCommands.Add(append);

        var messages = group.SelectMany(m => m.Messages.Select(message => (Member: m, Message: message))).ToArray();
        if (messages.Length > 0)
        {
            var publish = new NpgsqlBatchCommand(store.PublishGroupSql);
            publish.Parameters.Add(new NpgsqlParameter { Value = messages.Select(x => x.Message.Id).ToArray() });
            publish.Parameters.Add(Texts(messages.Select(x => x.Message.StreamId)));
            publish.Parameters.Add(Texts(messages.Select(x => x.Message.Type)));
            publish.Parameters.Add(EventStore.Jsonb([.. messages.Select(x => x.Message.Json)]));
            publish.Parameters.Add(EventStore.Jsonb([.. messages.Select(x => x.Message.Headers)]));
            publish.Parameters.Add(new NpgsqlParameter { Value = messages.Select(x => x.Member.Event.Id).ToArray() });
            batch.BatchCommands.Add(publish);
        }
        if (notify is not null) batch.BatchCommands.Add(Signals.Notify(notify));

        var results = new Dictionary<string, AppendResult>(StringComparer.Ordinal);
        var events = new List<StoredEvent>();
        await batch.PrepareAsync();
        await using (var reader = await batch.ExecuteReaderAsync())
        {
            var byStream = group.ToDictionary(m => m.StreamId, StringComparer.Ordinal);
            while (await reader.ReadAsync())
            {
                var member = byStream[reader.GetString(0)];
                var position = reader.GetInt64(1);
                var version = reader.GetInt64(2);
                results[member.StreamId] = new AppendResult(member.StreamId, version, [position], Duplicate: false);
                if (transaction is not null)
                {
                    events.Add(new StoredEvent(position, 0, member.Event.Id, member.StreamId, version, member.Type, member.Event.Data, member.Metadata,
                        reader.GetFieldValue<DateTimeOffset>(3), reader.GetFieldValue<byte[]>(4)));
                }
            }
        }
        if (transaction is not null)
        {
            if (events.Count > 0)
            {
                foreach (var projection in inline)
                    await projection.ApplyAsync(events, new ProjectionWrite(connection, transaction, store.Schema, 0), CancellationToken.None);
            }
            await transaction.CommitAsync();
        }
        return results;
    }

    private static NpgsqlParameter Texts(IEnumerable<string?> values) =>
        new() { Value = values.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text };
}
