using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace Verification.EventStore;

public sealed class EventStoreOptions
{
    /// <summary>The service's schema: every table of the store lives in it.</summary>
    public string Schema { get; set; } = "events";

    /// <summary>Events and outbox messages, by stable name.</summary>
    public EventTypes Types { get; } = new();

    /// <summary>Updated in the same transaction as the events they read.</summary>
    public List<Projection> InlineProjections { get; } = [];

    /// <summary>Run by the daemon in commit order, one instance at a time.</summary>
    public List<Projection> AsyncProjections { get; } = [];

    /// <summary>The service's own tables (idempotent SQL, <c>{schema}</c> replaced), created in the same migration.</summary>
    public List<string> Migrations { get; } = [];

    /// <summary>If set, the migration grants this role read and insert on events and nothing more.</summary>
    public string? ApplicationRole { get; set; }

    public int DaemonBatchSize { get; set; } = 2000;

    /// <summary>Page size while rebuilding beside the live generation: larger pages, fewer commits.</summary>
    public int RebuildBatchSize { get; set; } = 10000;
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Commits tell other processes (their daemons and relays) through NOTIFY at most once per interval: one that finds
    /// none sent within it carries one in its own transaction, and after the last such commit one follows within two
    /// intervals. Longer costs less under load and delays other processes more.
    /// </summary>
    public TimeSpan NotifyInterval { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// How long the relay waits on one batch of publishes before giving up and starting again with a fresh publish
    /// endpoint: a broker that went away mid-confirm must not leave the outbox stuck behind a publish that never ends.
    /// </summary>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Appends running at once before further single-event appends wait and go together (group commit: one round trip,
    /// statement and commit for many). Below it every append runs at once, as a lone writer's does. Lower shares more
    /// under load; <see cref="int.MaxValue"/> turns grouping off.
    /// </summary>
    public int MaxAppendsInFlight { get; set; } = 2 * Environment.ProcessorCount;
}

/// <summary>The event store of one service: streams with expected versions, a hash chain, projections, outbox and inbox.</summary>
public sealed class EventStore : IAsyncDisposable
{
    public EventStore(NpgsqlDataSource dataSource, EventStoreOptions options)
    {
        if (!System.Text.RegularExpressions.Regex.IsMatch(options.Schema, "^[a-z_][a-z0-9_]{0,40}$"))
            throw new ArgumentException($"schema name '{options.Schema}' must be lower-case letters, digits and underscores");
        DataSource = dataSource;
        Options = options;
        Signals = new Signals(this);
        Tree = new LogTree(this);
        _appendSql = Enum.GetValues<AppendShape>().Select(shape => new[] { StoreSchema.Append(Schema, shape, stored: false), StoreSchema.Append(Schema, shape) }).ToArray();
        LockStreamsSql = StoreSchema.LockStreams(Schema);
        LockAndCheckStreamsSql = StoreSchema.LockAndCheckStreams(Schema);
        _appendGroupSql = [StoreSchema.AppendGroup(Schema, stored: false), StoreSchema.AppendGroup(Schema, stored: true)];
        PublishSql = StoreSchema.Publish(Schema);
        PublishGroupSql = StoreSchema.PublishGroup(Schema);
        Appends = new GroupCommit(this);
    }

    // Built once: Npgsql finds its prepared statement by the text, and building it costs more than looking it up.
    private readonly string[][] _appendSql;

    /// <summary>The append statement for a shape; <paramref name="stored"/>: also returning what inline projections read.</summary>
    internal string AppendSql(AppendShape shape, bool stored) => _appendSql[(int)shape][stored ? 1 : 0];
    private readonly string[] _appendGroupSql;
    internal string AppendGroupSql(bool stored) => _appendGroupSql[stored ? 1 : 0];
    internal string PublishSql { get; }
    internal string PublishGroupSql { get; }
    internal GroupCommit Appends { get; }
    internal string LockStreamsSql { get; }
    internal string LockAndCheckStreamsSql { get; }

    internal Signals Signals { get; }

    /// <summary>
    /// Completes at the next commit this process sees (its own, or another instance's through NOTIFY). Take it before
    /// reading, then wait on it, so a commit in between is never missed; poll as well, as the daemon does.
    /// </summary>
    public Task NextCommit => Signals.NextEvents;

    /// <summary>The verifiable log's leaves, kept in memory and extended as events settle.</summary>
    public LogTree Tree { get; }

    public ValueTask DisposeAsync() => Signals.DisposeAsync();

    public NpgsqlDataSource DataSource { get; }
    public EventStoreOptions Options { get; }
    public string Schema => Options.Schema;
    public EventTypes Types => Options.Types;
    public string EventsChannel => Schema + "_events";
    public string OutboxChannel => Schema + "_outbox";

    /// <summary>Creates or upgrades the schema. Safe to run from several instances at once.</summary>
    public async Task MigrateAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))", connection, transaction))
        {
            lockCommand.Parameters.AddWithValue("key", "verification-migrate:" + Schema);
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }
        var sql = StoreSchema.Sql(Schema) + string.Concat(Options.Migrations.Select(m => m.Replace("{schema}", Schema, StringComparison.Ordinal) + ";\n"));
        if (Options.ApplicationRole is { } role) sql += StoreSchema.Grants(Schema, role);
        await using (var migrate = new NpgsqlCommand(sql, connection, transaction))
            await migrate.ExecuteNonQueryAsync(cancellationToken);
        foreach (var projection in Options.InlineProjections.Concat(Options.AsyncProjections))
        {
            await using var register = new NpgsqlCommand(
                $"INSERT INTO {Schema}.projections (name, generation, live) VALUES (@name, 1, true) ON CONFLICT DO NOTHING", connection, transaction);
            register.Parameters.AddWithValue("name", projection.Name);
            await register.ExecuteNonQueryAsync(cancellationToken);
            foreach (var index in projection.Indexes)
            {
                await using var create = new NpgsqlCommand(
                    $"CREATE INDEX IF NOT EXISTS {projection.Name}_{index.Name} ON {Schema}.documents (({index.Expression})) WHERE projection = '{projection.Name}'",
                    connection, transaction);
                await create.ExecuteNonQueryAsync(cancellationToken);
            }
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public EventSession OpenSession(EventMetadata? metadata = null) => new(this, metadata ?? EventMetadata.Empty);

    /// <summary>Appends to one stream. <paramref name="expectedVersion"/>: 0 starts a new stream, null appends at any version.</summary>
    public async Task<AppendResult> AppendAsync(string streamId, string streamType, long? expectedVersion, IEnumerable<object> events,
        EventMetadata? metadata = null, CancellationToken cancellationToken = default)
    {
        var results = await OpenSession(metadata).Append(streamId, streamType, expectedVersion, events.ToArray()).SaveChangesAsync(cancellationToken);
        return results[0];
    }

    /// <summary>
    /// Closes a stream for writing: later appends to it throw <see cref="StreamArchivedException"/> and write nothing;
    /// its events stay in the log, readable, projected and verifiable. Waits for an append in flight. False if there
    /// is no such stream.
    /// </summary>
    public async Task<bool> ArchiveStreamAsync(string streamId, CancellationToken cancellationToken = default)
    {
        await using var command = DataSource.CreateCommand($"UPDATE {Schema}.streams SET archived = true, updated_at = CASE WHEN archived THEN updated_at ELSE now() END WHERE id = @id AND version > 0");
        command.Parameters.AddWithValue("id", streamId);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async Task<long> StreamVersionAsync(string streamId, CancellationToken cancellationToken = default)
    {
        // The head row every append moves; a stream whose only appends failed has a row at 0, a new one none.
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"SELECT version FROM {Schema}.streams WHERE id = @id", connection);
        command.Parameters.AddWithValue("id", streamId);
        await command.PrepareAsync(cancellationToken);
        return await command.ExecuteScalarAsync(cancellationToken) is long version ? version : 0;
    }

    /// <summary>A stream's events, all or up to a version, or as they were known at a recorded time.</summary>
    public async Task<IReadOnlyList<StoredEvent>> ReadStreamAsync(string streamId, long? toVersion = null, DateTimeOffset? recordedUpTo = null,
        CancellationToken cancellationToken = default)
    {
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"SELECT {Columns} FROM {Schema}.events WHERE stream_id = @id AND version <= @to AND recorded_at <= @at ORDER BY version", connection);
        command.Parameters.AddWithValue("id", streamId);
        command.Parameters.AddWithValue("to", toVersion ?? long.MaxValue);
        command.Parameters.AddWithValue("at", recordedUpTo ?? DateTimeOffset.MaxValue);
        return await ReadEventsAsync(command, cancellationToken);
    }

    /// <summary>Folds a stream into state (live aggregation); returns the state and the version it reflects.</summary>
    public async Task<(T? State, long Version)> AggregateAsync<T>(string streamId, Func<T?, object, T?> evolve, long? toVersion = null,
        DateTimeOffset? recordedUpTo = null, CancellationToken cancellationToken = default) where T : class
    {
        T? state = null;
        long version = 0;
        foreach (var e in await ReadStreamAsync(streamId, toVersion, recordedUpTo, cancellationToken))
        {
            state = evolve(state, e.Data);
            version = e.Version;
        }
        return (state, version);
    }

    /// <summary>
    /// Events after <paramref name="after"/> in commit order, only from transactions that have settled:
    /// those below the oldest transaction still running, so none can later appear before the returned ones.
    /// </summary>
    public async Task<IReadOnlyList<StoredEvent>> ReadAllAsync(LogPosition after, int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        return await ReadAllAsync(connection, after, limit, cancellationToken);
    }

    internal async Task<IReadOnlyList<StoredEvent>> ReadAllAsync(NpgsqlConnection connection, LogPosition after, int limit, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            SELECT {Columns} FROM {Schema}.events
            WHERE (transaction_id, position) > (@xid::text::xid8, @pos)
              AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY transaction_id, position LIMIT @limit
            """, connection);
        command.Parameters.AddWithValue("xid", after.TransactionId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        command.Parameters.AddWithValue("pos", after.Position);
        command.Parameters.AddWithValue("limit", limit);
        return await ReadEventsAsync(command, cancellationToken);
    }

    /// <summary>
    /// The newest settled place in the log (what a caught-up projection has reached); with
    /// <paramref name="settledOnly"/> false, the newest committed one even if an older transaction still runs.
    /// </summary>
    public async Task<LogPosition> HeadAsync(CancellationToken cancellationToken = default, bool settledOnly = true)
    {
        await using var command = DataSource.CreateCommand(
            $"""
            SELECT transaction_id::text AS xid_text, position FROM {Schema}.events
            WHERE {(settledOnly ? "transaction_id < pg_snapshot_xmin(pg_current_snapshot())" : "true")}
            ORDER BY transaction_id DESC, position DESC LIMIT 1
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? new LogPosition(ulong.Parse(reader.GetString(0), System.Globalization.CultureInfo.InvariantCulture), reader.GetInt64(1)) : LogPosition.Start;
    }

    internal const string Columns = "position, transaction_id::text AS xid_text, id, stream_id, version, type, data::text, metadata::text, recorded_at, hash";

    /// <summary>Runs a read of <see cref="Columns"/> (prepared: reads of streams and pages of the log run all the time).</summary>
    internal async Task<IReadOnlyList<StoredEvent>> ReadEventsAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await command.PrepareAsync(cancellationToken);
        var events = new List<StoredEvent>();
        // A session's events share their metadata: parse it once for a run of rows that carry the same (it is immutable).
        (string Json, EventMetadata Parsed)? shared = null;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var metadataJson = reader.GetString(7);
            if (shared?.Json != metadataJson) shared = (metadataJson, JsonSerializer.Deserialize<EventMetadata>(metadataJson, EventTypes.Json)!);
            events.Add(Materialize(reader, shared.Value.Parsed));
        }
        return events;
    }

    private StoredEvent Materialize(NpgsqlDataReader reader, EventMetadata metadata)
    {
        var type = reader.GetString(5);
        var json = reader.GetString(6);
        object data;
        try
        {
            data = Types.IsRegistered(type) ? Types.Deserialize(type, metadata.SchemaVersion, json) : JsonDocument.Parse(json).RootElement.Clone();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NotSupportedException)
        {
            throw new UnreadableEventException(new LogPosition(ulong.Parse(reader.GetString(1), System.Globalization.CultureInfo.InvariantCulture), reader.GetInt64(0)),
                reader.GetString(3), type, e);
        }
        return new StoredEvent(
            reader.GetInt64(0), ulong.Parse(reader.GetString(1), System.Globalization.CultureInfo.InvariantCulture), reader.GetGuid(2),
            reader.GetString(3), reader.GetInt64(4), type, data, metadata, reader.GetFieldValue<DateTimeOffset>(8), reader.GetFieldValue<byte[]>(9));
    }

    /// <summary>A projection's live document.</summary>
    public async Task<T?> LoadDocumentAsync<T>(string projection, string id, CancellationToken cancellationToken = default) where T : class
    {
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"SELECT d.data::text FROM {Schema}.documents d JOIN {Schema}.projections p ON p.name = d.projection AND p.generation = d.generation AND p.live " +
            $"WHERE d.projection = '{Projection.CheckName(projection)}' AND d.id = @id", connection);
        command.Parameters.AddWithValue("id", id);
        await command.PrepareAsync(cancellationToken);
        return await command.ExecuteScalarAsync(cancellationToken) is string json ? JsonSerializer.Deserialize<T>(json, EventTypes.Json) : null;
    }

    /// <summary>
    /// Live documents of a projection matching <paramref name="where"/> (SQL over <c>d.data</c>, jsonb), ordered and paged.
    /// Parameters are added by <paramref name="parameters"/>; never splice input into the SQL.
    /// </summary>
    public async Task<IReadOnlyList<T>> QueryDocumentsAsync<T>(string projection, string where, Action<NpgsqlParameterCollection>? parameters,
        string orderBy = "d.id", int limit = 100, int offset = 0, CancellationToken cancellationToken = default)
    {
        await using var command = DataSource.CreateCommand(
            $"SELECT d.data::text FROM {Schema}.documents d JOIN {Schema}.projections p ON p.name = d.projection AND p.generation = d.generation AND p.live " +
            // The name as a literal, so the projection's partial indexes match. Not prepared: the caller writes the query.
            $"WHERE d.projection = '{Projection.CheckName(projection)}' AND ({where}) ORDER BY {orderBy} LIMIT @limit OFFSET @offset");
        command.Parameters.AddWithValue("limit", limit);
        command.Parameters.AddWithValue("offset", offset);
        parameters?.Invoke(command.Parameters);
        var documents = new List<T>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) documents.Add(JsonSerializer.Deserialize<T>(reader.GetString(0), EventTypes.Json)!);
        return documents;
    }

    internal static NpgsqlParameter Jsonb(string[] values) => new() { Value = values, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb };
}
