using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace Verification.EventStore;

/// <summary>
/// A unit of work: appends to one or more streams, outbox messages and inbox marks, written in one
/// transaction with the inline projections. Without inline projections it is a single round trip.
/// </summary>
public sealed class EventSession
{
    private readonly EventStore _store;
    private readonly EventMetadata _metadata;
    private readonly List<(string StreamId, string StreamType, long? Expected, NewEvent[] Events)> _appends = [];
    private readonly List<(object Message, string? StreamId, Guid? MessageId)> _messages = [];
    private readonly List<(string Consumer, Guid MessageId)> _processed = [];
    private Dictionary<int, string>? _metadataJson;

    internal EventSession(EventStore store, EventMetadata metadata)
    {
        _store = store;
        _metadata = metadata;
    }

    /// <summary>Appends events with fresh ids. <paramref name="expectedVersion"/>: 0 starts a new stream, null is any.</summary>
    public EventSession Append(string streamId, string streamType, long? expectedVersion, params object[] events) =>
        Append(streamId, streamType, expectedVersion, events.Select(e => e as NewEvent ?? new NewEvent(Guid.CreateVersion7(), e)).ToArray());

    /// <summary>Appends events with ids the caller chose, so a retry of the same batch is a no-op.</summary>
    public EventSession Append(string streamId, string streamType, long? expectedVersion, NewEvent[] events)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(streamId);
        if (events.Length == 0) throw new ArgumentException("nothing to append", nameof(events));
        Storable.Text(streamId, "the stream id");
        Storable.Text(streamType, "the stream type");
        _appends.Add((streamId, streamType, expectedVersion, events));
        return this;
    }

    /// <summary>
    /// Queues an integration message, published by the outbox relay after commit. Without a message id one is
    /// derived from the session's first event id, so retrying the same batch does not publish twice.
    /// </summary>
    public EventSession Publish(object message, string? streamId = null, Guid? messageId = null)
    {
        if (streamId is not null) Storable.Text(streamId, "the message's stream id");
        _messages.Add((message, streamId, messageId));
        return this;
    }

    /// <summary>How many events the session will append.</summary>
    public int PendingCount => _appends.Sum(a => a.Events.Length);

    /// <summary>Records that <paramref name="consumer"/> processed <paramref name="messageId"/>, in this transaction.</summary>
    public EventSession MarkProcessed(string consumer, Guid messageId)
    {
        _processed.Add((consumer, messageId));
        return this;
    }

    public async Task<IReadOnlyList<AppendResult>> SaveChangesAsync(CancellationToken cancellationToken = default)
    {
        if (GroupMember() is not { } member) return await SaveAloneAsync(null, cancellationToken);
        var grouped = _store.Appends.Enter(member);
        if (grouped is null)
        {
            try { return await SaveAloneAsync(member, cancellationToken); }
            finally { _store.Appends.Leave(); }
        }
        AppendResult? result;
        try { result = await grouped.WaitAsync(cancellationToken); }
        catch (OperationCanceledException) when (!_store.Appends.Withdraw(member))
        {
            result = await grouped;   // its group has it already: the outcome is on its way
        }
        // Not stored by its group (a conflict, a retry, an archived stream, or the group failed): alone, it learns why.
        return result is not null ? [result] : await SaveAloneAsync(member, cancellationToken);
    }

    /// <summary>This session as one append of a group commit: one event to one stream at a known version, no inbox mark.</summary>
    private GroupCommit.Member? GroupMember()
    {
        if (_appends.Count != 1 || _processed.Count > 0) return null;
        var (streamId, streamType, expected, events) = _appends[0];
        if (events.Length != 1 || expected is not (>= 0 and var at)) return null;
        var type = _store.Types.NameOf(events[0].Data.GetType());
        return new GroupCommit.Member(streamId, streamType, at, events[0], type.Name, _store.Types.Serialize(events[0].Data), MetadataJson(type.Version),
            _metadata, OutboxMessages(), Activity.Current?.Context ?? default);
    }

    /// <summary>The queued messages as the outbox stores them, with their ids and the headers they carry.</summary>
    private List<GroupCommit.Message> OutboxMessages()
    {
        if (_messages.Count == 0) return [];
        var seed = _appends.Count > 0 ? _appends[0].Events[0].Id : Guid.NewGuid();
        var headers = JsonSerializer.Serialize(new Dictionary<string, string?>
        {
            ["traceparent"] = Activity.Current?.Id,
            ["correlationId"] = _metadata.CorrelationId,
        }, EventTypes.Json);
        return [.. _messages.Select((m, i) => new GroupCommit.Message(m.MessageId ?? Derive(seed, i), m.StreamId, _store.Types.NameOf(m.Message.GetType()).Name,
            _store.Types.Serialize(m.Message), headers))];
    }

    /// <summary>The session in a transaction of its own; <paramref name="prepared"/>: what it was serialized to for a group.</summary>
    private async Task<IReadOnlyList<AppendResult>> SaveAloneAsync(GroupCommit.Member? prepared, CancellationToken cancellationToken)
    {
        var schema = _store.Schema;
        var types = _store.Types;
        await using var connection = await _store.DataSource.OpenConnectionAsync(cancellationToken);
        var inline = _store.Options.InlineProjections;
        await using var transaction = inline.Count > 0 ? await connection.BeginTransactionAsync(cancellationToken) : null;
        await using var batch = new NpgsqlBatch(connection, transaction);

        // Inbox marks first: a message handled before (or being handled now) fails the batch on the primary key
        // (DuplicateMessageException) before any append takes a position.
        foreach (var (consumer, messageId) in _processed)
        {
            var mark = new NpgsqlBatchCommand($"INSERT INTO {schema}.inbox (consumer, message_id) VALUES ($1, $2)");
            mark.Parameters.Add(new NpgsqlParameter { Value = consumer });
            mark.Parameters.Add(new NpgsqlParameter { Value = messageId });
            batch.BatchCommands.Add(mark);
        }

        // Several appends run in stream order, after one statement that locks all their streams (sorted): two sessions
        // over the same streams then never wait on each other crosswise. A lone multi-event append at any version locks
        // its own (at an expected version, or to a new stream, its statement does).
        var order = _appends.Count == 1 ? [0] : Enumerable.Range(0, _appends.Count).OrderBy(i => _appends[i].StreamId, StringComparer.Ordinal).ToArray();
        var lockAll = _appends.Count > 1;
        var locked = order.Select(i => _appends[i]).Where(a => lockAll || (a.Events.Length > 1 && a.Expected is null)).DistinctBy(a => a.StreamId).ToArray();
        if (locked.Length > 0)
        {
            var lockStreams = new NpgsqlBatchCommand(lockAll ? _store.LockAndCheckStreamsSql : _store.LockStreamsSql);
            lockStreams.Parameters.Add(new NpgsqlParameter { Value = locked.Select(a => a.StreamId).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            lockStreams.Parameters.Add(new NpgsqlParameter { Value = locked.Select(a => a.StreamType).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            if (lockAll)
            {
                lockStreams.Parameters.Add(new NpgsqlParameter { Value = locked.Select(a => a.Expected).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
                lockStreams.Parameters.Add(new NpgsqlParameter { Value = locked.Select(a => a.Events[0].Id).ToArray() });
            }
            batch.BatchCommands.Add(lockStreams);
        }
        // Inline projections read each stored event; without them the appends return positions and versions only.
        var returnStored = inline.Count > 0;
        var names = new string[_appends.Count][];
        foreach (var i in order)
        {
            var (streamId, streamType, expected, events) = _appends[i];
            // A locked stream has its row already (version 0 if new), so a new one is started by moving that row from 0.
            var shape = events.Length > 1 ? expected switch { null => AppendShape.Many, 0 => AppendShape.ManyNew, _ => AppendShape.ManyAtVersion }
                : expected > 0 || (expected == 0 && lockAll) ? AppendShape.OneAtVersion : AppendShape.One;
            var command = new NpgsqlBatchCommand(_store.AppendSql(shape, returnStored));
            command.Parameters.Add(new NpgsqlParameter { Value = streamId });
            command.Parameters.Add(new NpgsqlParameter { Value = streamType });
            command.Parameters.Add(new NpgsqlParameter { Value = (object?)expected ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            var typeNames = Array.ConvertAll(events, e => types.NameOf(e.Data.GetType()));
            names[i] = Array.ConvertAll(typeNames, n => n.Name);
            if (events.Length == 1)
            {
                command.Parameters.Add(new NpgsqlParameter { Value = events[0].Id });
                command.Parameters.Add(new NpgsqlParameter { Value = typeNames[0].Name, NpgsqlDbType = NpgsqlDbType.Text });
                command.Parameters.Add(new NpgsqlParameter { Value = prepared?.Data ?? types.Serialize(events[0].Data), NpgsqlDbType = NpgsqlDbType.Jsonb });
                command.Parameters.Add(new NpgsqlParameter { Value = MetadataJson(typeNames[0].Version), NpgsqlDbType = NpgsqlDbType.Jsonb });
            }
            else
            {
                command.Parameters.Add(new NpgsqlParameter { Value = Array.ConvertAll(events, e => e.Id) });
                command.Parameters.Add(new NpgsqlParameter { Value = names[i], NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
                command.Parameters.Add(EventStore.Jsonb(Array.ConvertAll(events, e => types.Serialize(e.Data))));
                // One metadata value for all the events when their schema versions agree: sent, parsed and hashed once.
                var metadata = Array.ConvertAll(typeNames, n => MetadataJson(n.Version));
                command.Parameters.Add(EventStore.Jsonb(Array.TrueForAll(metadata, m => ReferenceEquals(m, metadata[0])) ? [metadata[0]] : metadata));
            }
            batch.BatchCommands.Add(command);
        }
        // After the appends: a stream's messages then commit in the order its row lock admits writers.
        foreach (var message in prepared?.Messages ?? OutboxMessages())
        {
            var publish = new NpgsqlBatchCommand(_store.PublishSql);
            publish.Parameters.Add(new NpgsqlParameter { Value = message.Id });
            publish.Parameters.Add(new NpgsqlParameter { Value = (object?)message.StreamId ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
            publish.Parameters.Add(new NpgsqlParameter { Value = message.Type });
            publish.Parameters.Add(new NpgsqlParameter { Value = message.Json });
            publish.Parameters.Add(new NpgsqlParameter { Value = message.Headers });
            batch.BatchCommands.Add(publish);
        }
        var carried = _store.Signals.Carry(outbox: _messages.Count > 0);
        if (carried is not null) batch.BatchCommands.Add(Signals.Notify(carried));

        var results = new AppendResult[_appends.Count];
        var stored = new List<StoredEvent>();
        var inserted = 0;
        var refused = false;
        try
        {
            await batch.PrepareAsync(cancellationToken);   // once per connection and statement (see WithStoreSettings)
            await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
            {
                // The check of a session over several streams returns an empty result before the appends' own.
                if (lockAll) await reader.NextResultAsync(cancellationToken);
                foreach (var i in order)
                {
                    var (streamId, _, _, events) = _appends[i];
                    var positions = new List<long>(events.Length);
                    long version = 0;
                    while (await reader.ReadAsync(cancellationToken))
                    {
                        var index = positions.Count;
                        positions.Add(reader.GetInt64(0));
                        version = reader.GetInt64(1);
                        if (returnStored)
                        {
                            stored.Add(new StoredEvent(positions[index], 0, events[index].Id, streamId, version, names[i][index],
                                events[index].Data, _metadata, reader.GetFieldValue<DateTimeOffset>(2), reader.GetFieldValue<byte[]>(3)));
                        }
                    }
                    inserted += positions.Count;
                    // Nothing inserted and no conflict raised: the batch was stored before (read after the reader closes).
                    results[i] = new AppendResult(streamId, version, positions, Duplicate: positions.Count == 0);
                    await reader.NextResultAsync(cancellationToken);
                }
            }
            for (var i = 0; i < results.Length; i++)
            {
                if (results[i].Duplicate) results[i] = await StoredAsync(connection, transaction, _appends[i].StreamId, _appends[i].Events, cancellationToken);
            }
            if (transaction is not null)
            {
                if (stored.Count > 0)
                {
                    foreach (var projection in inline)
                        await projection.ApplyAsync(stored, new ProjectionWrite(connection, transaction, schema, 0), cancellationToken);
                }
                await transaction.CommitAsync(cancellationToken);
            }
        }
        // Runs for any failure of a transaction that was to carry the NOTIFY, and hands it back to the notifier; unless the
        // NOTIFY itself was refused, the filter is false and the failure goes on to the catches below or the caller.
        catch (Exception e) when (carried is not null && _store.Signals.CarryFailed(e))
        {
            refused = true;   // the transaction failed whole: nothing of it was written
        }
        catch (PostgresException e) when (e.SqlState == "VE001")
        {
            var match = System.Text.RegularExpressions.Regex.Match(e.MessageText, "^stream (.*) is at version ([0-9]+), not the expected");
            var failed = _appends.First(a => a.StreamId == match.Groups[1].Value);
            throw new ConcurrencyException(failed.StreamId, failed.Expected ?? -1, long.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        }
        catch (PostgresException e) when (e.SqlState == "VE004")
        {
            var match = System.Text.RegularExpressions.Regex.Match(e.MessageText, "^stream (.*) is archived$");
            throw new StreamArchivedException(match.Groups[1].Value);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation && e.ConstraintName == "inbox_pkey")
        {
            throw new DuplicateMessageException(_processed[0].Consumer, _processed[0].MessageId);
        }
        if (refused) return await SaveAloneAsync(prepared, cancellationToken);
        _store.Signals.Committed(events: inserted > 0, outbox: _messages.Count > 0, carried: carried is not null);
        return results;
    }

    /// <summary>What an earlier, identical append stored.</summary>
    private async Task<AppendResult> StoredAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string streamId, NewEvent[] events, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand($"SELECT position, version FROM {_store.Schema}.events WHERE id = ANY($1) ORDER BY version", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Id).ToArray() });
        var positions = new List<long>();
        long version = 0;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            positions.Add(reader.GetInt64(0));
            version = reader.GetInt64(1);
        }
        return new AppendResult(streamId, version, positions, Duplicate: true);
    }

    /// <summary>The session's metadata as JSON for one schema version, serialized once per version, not once per event.</summary>
    private string MetadataJson(int schemaVersion)
    {
        _metadataJson ??= [];
        if (!_metadataJson.TryGetValue(schemaVersion, out var json))
            _metadataJson[schemaVersion] = json = Storable.Json(JsonSerializer.Serialize(_metadata with { SchemaVersion = schemaVersion }, EventTypes.Json), "the metadata");
        return json;
    }

    /// <summary>A stable id for the i-th message of a batch whose first event is <paramref name="seed"/>.</summary>
    private static Guid Derive(Guid seed, int index)
    {
        Span<byte> input = stackalloc byte[20];
        seed.TryWriteBytes(input);
        BitConverter.TryWriteBytes(input[16..], index);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input, hash);
        return new Guid(hash[..16]);
    }
}
