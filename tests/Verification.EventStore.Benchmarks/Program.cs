// Event store benchmark: the store against raw Npgsql with the same row shape, in one run, on one server.
// Usage: dotnet run -c Release -- "<connection string>" [seconds per case] [events for catch-up]
using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using Verification.EventStore;

var connectionString = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("VERIFICATION_BENCH_POSTGRES")
    ?? throw new InvalidOperationException("pass a PostgreSQL connection string (scripts/bench-store.sh starts a server)");
var seconds = args.Length > 1 ? double.Parse(args[1], CultureInfo.InvariantCulture) : 5;
var catchUpEvents = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 200_000;
var duration = TimeSpan.FromSeconds(seconds);

// Raw and store on one data source with the settings services run with (no reset on return); both prepare their statements.
await using var dataSource = new NpgsqlDataSourceBuilder(ServiceCollectionExtensions.WithStoreSettings(new NpgsqlConnectionStringBuilder(connectionString) { MaxPoolSize = 64 }.ConnectionString)).Build();
await Exec(dataSource, "DROP SCHEMA IF EXISTS bench CASCADE; DROP SCHEMA IF EXISTS raw CASCADE; CREATE SCHEMA raw;" +
    "CREATE TABLE raw.events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(), " +
    "id uuid NOT NULL UNIQUE, stream_id text NOT NULL, version bigint NOT NULL, type text NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL, " +
    "recorded_at timestamptz NOT NULL DEFAULT now(), hash bytea NOT NULL, UNIQUE (stream_id, version));" +
    "CREATE INDEX ON raw.events (transaction_id, position);" +
    "CREATE TABLE raw.streams (id text PRIMARY KEY, version bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now()) WITH (fillfactor = 70)");

var options = new EventStoreOptions { Schema = "bench", DaemonBatchSize = 1000 };
options.Types.Register<Observed>("observed");
var store = new EventStore(dataSource, options);
await store.MigrateAsync();
// The same store with group commit off: every append its own round trip, statement and commit.
var alone = new EventStore(dataSource, new EventStoreOptions { Schema = "bench", MaxAppendsInFlight = int.MaxValue });
alone.Options.Types.Register<Observed>("observed");

var sample = new Observed("zone-7", "MLRS", 3, DateTimeOffset.Parse("2026-02-01T04:10:00Z", CultureInfo.InvariantCulture));
var data = JsonSerializer.Serialize(sample, EventTypes.Json);
var metadata = JsonSerializer.Serialize(new EventMetadata { ActorSub = "monitor-1", ActorRole = "monitor", CorrelationId = "c" }, EventTypes.Json);
var rows = new List<(string Case, double Rate, string Unit, string Ratio)>();
var warmUp = TimeSpan.Zero;

// Raw rows get ids as the store makes them (UUIDv7, time-ordered): random ones scatter inserts over the id index (measured
// 2026-12-01: twice the WAL per row, full-page images, twice the executor time), a slower baseline than a fair one.
foreach (var writers in new[] { 1, 4, 16 })
{
    await Exec(dataSource, $"INSERT INTO raw.streams (id) SELECT 'rawh-{writers}-' || w FROM generate_series(0, {writers - 1}) w");
    var rates = await Compare(writers, async (w, i) =>
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(
            "INSERT INTO raw.events (id, stream_id, version, type, data, metadata, hash) VALUES ($1, $2, $3, 'observed', $4::jsonb, $5::jsonb, $6)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
        command.Parameters.Add(new NpgsqlParameter { Value = $"raw-{writers}-{w}" });
        command.Parameters.Add(new NpgsqlParameter { Value = (long)i + 1 });
        command.Parameters.Add(new NpgsqlParameter { Value = data });
        command.Parameters.Add(new NpgsqlParameter { Value = metadata });
        command.Parameters.Add(new NpgsqlParameter { Value = new byte[32] });
        await command.PrepareAsync();
        await command.ExecuteNonQueryAsync();
        return 1;
    }, async (w, i) =>
    {
        // The least any append with the store's guarantees does: move a head row (the lock that orders a stream's
        // writers and keeps a loser from taking a position) and insert from it. No hash, no conflict handling.
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(
            "WITH head AS (UPDATE raw.streams SET version = version + 1, updated_at = now() WHERE id = $2 AND version = $3 RETURNING version) " +
            "INSERT INTO raw.events (id, stream_id, version, type, data, metadata, hash) SELECT $1, $2, version, 'observed', $4::jsonb, $5::jsonb, $6 FROM head", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
        command.Parameters.Add(new NpgsqlParameter { Value = $"rawh-{writers}-{w}" });
        command.Parameters.Add(new NpgsqlParameter { Value = (long)i });
        command.Parameters.Add(new NpgsqlParameter { Value = data });
        command.Parameters.Add(new NpgsqlParameter { Value = metadata });
        command.Parameters.Add(new NpgsqlParameter { Value = new byte[32] });
        await command.PrepareAsync();
        return await command.ExecuteNonQueryAsync() == 1 ? 1 : throw new InvalidOperationException("the head row was not at the expected version");
    }, async (w, i) =>
    {
        await store.AppendAsync($"s-{writers}-{w}", "zone", i, [sample], EventMetadata.Empty);
        return 1;
    }, async (w, i) =>
    {
        await alone.AppendAsync($"a-{writers}-{w}", "zone", i, [sample], EventMetadata.Empty);
        return 1;
    });
    rows.Add(($"raw INSERT+COMMIT, {writers} writer(s)", rates.Rates[0], "rows/s", ""));
    rows.Add(($"raw INSERT + head-row UPDATE, one statement (reference), {writers} writer(s)", rates.Rates[1], "rows/s", rates.Ratio(1)));
    rows.Add(($"store append (1 event, expected version), {writers} writer(s)", rates.Rates[2], "events/s", rates.Ratio(2)));
    rows.Add(($"the same, group commit off, {writers} writer(s)", rates.Rates[3], "events/s", rates.Ratio(3)));
}

const int batchSize = 100;
var batchData = Enumerable.Repeat(data, batchSize).ToArray();
var batchMeta = Enumerable.Repeat(metadata, batchSize).ToArray();
var hashes = Enumerable.Range(0, batchSize).Select(_ => new byte[32]).ToArray();
foreach (var writers in new[] { 1, 4 })
{
    var events = Enumerable.Repeat<object>(sample, batchSize).ToArray();
    var batchRates = await Compare(writers, async (w, i) =>
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(
            "INSERT INTO raw.events (id, stream_id, version, type, data, metadata, hash) " +
            "SELECT u.id, $2, $3 + u.n, 'observed', u.d, u.m, u.h FROM unnest($1::uuid[], $4::jsonb[], $5::jsonb[], $6::bytea[]) WITH ORDINALITY AS u(id, d, m, h, n)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = Enumerable.Range(0, batchSize).Select(_ => Guid.CreateVersion7()).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = $"rawb-{writers}-{w}" });
        command.Parameters.Add(new NpgsqlParameter { Value = (long)i * batchSize });
        command.Parameters.Add(new NpgsqlParameter { Value = batchData, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        command.Parameters.Add(new NpgsqlParameter { Value = batchMeta, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        command.Parameters.Add(new NpgsqlParameter { Value = hashes });
        await command.PrepareAsync();
        await command.ExecuteNonQueryAsync();
        return batchSize;
    }, async (w, i) =>
    {
        await store.AppendAsync($"b-{writers}-{w}", "zone", (long)i * batchSize, events, EventMetadata.Empty);
        return batchSize;
    });
    rows.Add(($"raw multi-row INSERT ({batchSize} rows), {writers} writer(s)", batchRates.Rates[0], "rows/s", ""));
    rows.Add(($"store append ({batchSize} events/call), {writers} writer(s)", batchRates.Rates[1], "events/s", batchRates.Ratio(1)));
}

// Catch-up and rebuild of a simple aggregating projection vs a raw sequential read of the same events.
var existing = await Scalar(dataSource, "SELECT count(*) FROM bench.events");
for (long written = existing, s = 0; written < catchUpEvents; written += 1000, s++)
    await store.AppendAsync($"fill-{s}", "zone", ExpectedVersion.NoStream, Enumerable.Repeat<object>(sample, 1000).ToArray(), EventMetadata.Empty);
var total = await Scalar(dataSource, "SELECT count(*) FROM bench.events");

var read = Stopwatch.StartNew();
long readRows = 0;
await using (var command = dataSource.CreateCommand("SELECT position, transaction_id::text AS x, id, stream_id, version, type, data::text, metadata::text, recorded_at, hash FROM bench.events ORDER BY transaction_id, position"))
await using (var reader = await command.ExecuteReaderAsync())
{
    while (await reader.ReadAsync())
    {
        _ = reader.GetString(6);
        readRows++;
    }
}
var rawRead = readRows / read.Elapsed.TotalSeconds;
rows.Add(($"raw sequential read of {readRows:N0} events", rawRead, "events/s", ""));

var perClass = new DocumentProjection<Tally>("tally_by_class", e => ((Observed)e.Data).WeaponClass, (t, e) => new Tally((t?.Events ?? 0) + 1, (t?.Count ?? 0) + ((Observed)e.Data).Count));
options.AsyncProjections.Add(perClass);
await store.MigrateAsync();
var daemon = new ProjectionDaemon(store, NullLogger<ProjectionDaemon>.Instance);
var catchUp = Stopwatch.StartNew();
await daemon.StartAsync(CancellationToken.None);
await WaitCaughtUp();
var catchUpRate = total / catchUp.Elapsed.TotalSeconds;
rows.Add(($"daemon catch-up from zero, {total:N0} events", catchUpRate, "events/s", Ratio(catchUpRate, rawRead)));

var rebuild = Stopwatch.StartNew();
await store.RequestRebuildAsync("tally_by_class");
await WaitRebuilt();
var rebuildRate = total / rebuild.Elapsed.TotalSeconds;
rows.Add(($"rebuild beside live + swap, {total:N0} events", rebuildRate, "events/s", Ratio(rebuildRate, rawRead)));
await daemon.StopAsync(CancellationToken.None);

var process = Process.GetCurrentProcess();
Console.WriteLine();
Console.WriteLine($"| case | rate | unit | store / raw (lowest–highest turn) |");
Console.WriteLine($"| --- | ---: | --- | ---: |");
foreach (var (name, rate, unit, ratio) in rows) Console.WriteLine($"| {name} | {rate:N0} | {unit} | {ratio} |");
Console.WriteLine();
Console.WriteLine($"peak working set {process.PeakWorkingSet64 / 1048576} MiB, managed heap {GC.GetTotalMemory(false) / 1048576} MiB, {Math.Max(1, (int)Math.Round(seconds))} one-second turns each for raw and store per write case " +
    $"after {warmUp.TotalSeconds:0} s of uncounted warm-up turns in all, {Environment.ProcessorCount} cores");
return 0;

// The sides take turns in one-second slices, so a drift in the machine's speed (it is shared) falls on all alike.
// Each turn's rates are kept too: the ratio within one turn shows how far the machine's noise moves the result.
async Task<Comparison> Compare(int writers, params Func<int, int, Task<int>>[] sides)
{
    var next = new int[sides.Length, writers];
    var done = new long[sides.Length];
    var elapsed = new TimeSpan[sides.Length];
    var turns = new List<double[]>();
    // Turns first that are not counted, until a round of them compiles next to nothing: the first side to run a code
    // path would otherwise pay for compiling it (tier 0, then tier 1 in the background) within its measured turns.
    // Tier 1 of a path as long as the store's went on for about five seconds of a lone writer (2026-12-01), so one
    // warm-up second each did not cover it.
    var warming = Stopwatch.StartNew();
    for (var round = 0; round < 10; round++)
    {
        var compiled = JitInfo.GetCompiledMethodCount();
        for (var side = 0; side < sides.Length; side++) await Slice(side, sides[side], TimeSpan.FromMilliseconds(500));
        if (JitInfo.GetCompiledMethodCount() - compiled < 20) break;
    }
    warmUp += warming.Elapsed;
    Array.Clear(done);
    Array.Clear(elapsed);
    for (var round = 0; round < Math.Max(1, (int)Math.Round(duration.TotalSeconds)); round++)
    {
        var turn = new double[sides.Length];
        for (var side = 0; side < sides.Length; side++) turn[side] = await Slice(side, sides[side], TimeSpan.FromSeconds(1));
        turns.Add(turn);
    }
    return new Comparison([.. Enumerable.Range(0, sides.Length).Select(side => done[side] / elapsed[side].TotalSeconds)], turns);

    async Task<double> Slice(int side, Func<int, int, Task<int>> operation, TimeSpan length)
    {
        var before = Interlocked.Read(ref done[side]);
        var stop = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            while (stop.Elapsed < length) Interlocked.Add(ref done[side], await operation(w, next[side, w]++));
        })));
        elapsed[side] += stop.Elapsed;
        return (done[side] - before) / stop.Elapsed.TotalSeconds;
    }
}

async Task WaitCaughtUp()
{
    while ((await store.ProjectionStatusAsync("tally_by_class")) is not [{ CaughtUp: true }]) await Task.Delay(20);
}

async Task WaitRebuilt()
{
    while ((await store.ProjectionStatusAsync("tally_by_class")) is not [{ Generation: > 1, CaughtUp: true }]) await Task.Delay(20);
}

static string Ratio(double a, double b) => (a / b).ToString("0.00", CultureInfo.InvariantCulture) + "×";

static async Task Exec(NpgsqlDataSource dataSource, string sql)
{
    await using var command = dataSource.CreateCommand(sql);
    await command.ExecuteNonQueryAsync();
}

static async Task<long> Scalar(NpgsqlDataSource dataSource, string sql)
{
    await using var command = dataSource.CreateCommand(sql);
    return (long)(await command.ExecuteScalarAsync())!;
}

/// <summary>Each side's rate over all its turns, and every turn's rates (sides side by side).</summary>
internal sealed record Comparison(double[] Rates, IReadOnlyList<double[]> Turns)
{
    /// <summary>Side over the first side (raw), overall and the lowest and highest within one turn.</summary>
    public string Ratio(int side)
    {
        var perTurn = Turns.Select(t => t[side] / t[0]).ToArray();
        return string.Create(CultureInfo.InvariantCulture, $"{Rates[side] / Rates[0]:0.00}× ({perTurn.Min():0.00}–{perTurn.Max():0.00})");
    }
}

internal sealed record Observed(string ZoneId, string WeaponClass, int Count, DateTimeOffset ObservedAt);
internal sealed record Tally(long Events, long Count);
