using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Npgsql;
using Verification.ServiceDefaults;
using Verification.Testing;
using Xunit.Abstractions;

namespace Verification.Faults.Tests;

/// <summary>The five services as separate processes on a PostgreSQL and a RabbitMQ of their own, so the faults hit nobody else's tests.</summary>
public sealed class FaultySystem : DistributedSystem
{
    private readonly AuthSettings _auth = AuthSettings.From(new ConfigurationBuilder()
        .AddInMemoryCollection(new Dictionary<string, string?> { ["Auth:DevMode"] = "true" }).Build());

    protected override IDictionary<string, string> Settings => new Dictionary<string, string>
    {
        // A stuck bus (see BusWatchdog) is given up on after 30 s, so a service that never gets its consumers back after
        // a broker restart is started again well within the waits below.
        ["Log:PublishInterval"] = "0", ["Bus:RetryLimit"] = "2", ["Bus:StuckAfter"] = "00:00:30",
    };

    protected override async Task<(PostgresServer Postgres, RabbitMqServer RabbitMq)> ServersAsync() =>
        (PostgresServer.StartPrivate(), await RabbitMqServer.StartPrivateAsync());

    public string Token(string role, string? party, string subject) => _auth.CreateToken(subject, role, party, TimeSpan.FromHours(2));
}

/// <summary>
/// Under steady load (a monitor filing incidents, retrying with its Idempotency-Key as a real client does), faults at
/// random moments, each kind five times: kill -9 of a service (then restart), RabbitMQ stop/start, PostgreSQL fast
/// restart, the hotline's consumer throwing for a while (its messages go to the error queue, then are redriven).
/// Afterwards, from the databases and the APIs: nothing accepted is lost, every incident has exactly one alert per
/// addressee, every projection equals a rebuild from zero, every log verifies. The seed is printed: FAULT_SEED replays it.
/// </summary>
public sealed class FaultInjectionTests(FaultySystem system, ITestOutputHelper output) : IClassFixture<FaultySystem>
{
    private enum Fault { KillService, RestartBroker, RestartDatabase, PoisonConsumer }

    private static readonly string[] Killable = ["incidents", "hotline", "compliance"];

    [Fact(Timeout = 900_000)]
    public async Task Under_load_faults_lose_nothing_duplicate_nothing_and_leave_projections_and_logs_verifiable()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("FAULT_SEED"), CultureInfo.InvariantCulture, out var s) ? s : Random.Shared.Next();
        var random = new Random(seed);
        var log = new StringBuilder().AppendLine(CultureInfo.InvariantCulture, $"FAULT_SEED={seed}");
        var clock = Stopwatch.StartNew();
        void Note(string line)
        {
            lock (log) log.AppendLine(CultureInfo.InvariantCulture, $"{clock.Elapsed.TotalSeconds,7:0.0}s {line}");
        }

        try
        {
            await RunAsync(random, Note);
        }
        finally
        {
            output.WriteLine(log.ToString());
        }
    }

    private async Task RunAsync(Random random, Action<string> note)
    {
        using var load = new Load(system, rate: 10);
        var loading = load.RunAsync();
        await Eventually.True(() => Task.FromResult(load.Accepted.Count >= 20), TimeSpan.FromSeconds(60), "the load to be accepted before any fault");

        var faults = Enumerable.Range(0, 5).SelectMany(_ => Enum.GetValues<Fault>()).OrderBy(_ => random.Next()).ToList();
        var poisoned = 0;
        foreach (var fault in faults)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(random.Next(500, 2500)));
            switch (fault)
            {
                case Fault.KillService:
                    var service = Killable[random.Next(Killable.Length)];
                    note($"kill -9 {service}");
                    await system.KillAsync(service);
                    await Task.Delay(random.Next(0, 1000));
                    await system.RestartAsync(service);
                    note($"{service} restarted and ready");
                    break;
                case Fault.RestartBroker:
                    note("RabbitMQ stop_app");
                    system.RabbitMq.StopApp();
                    await Task.Delay(random.Next(500, 2500));
                    await system.RabbitMq.StartAppAsync();
                    await AllReadyAsync();
                    note("RabbitMQ started; services ready");
                    break;
                case Fault.RestartDatabase:
                    note("PostgreSQL fast restart");
                    system.Postgres.Restart();
                    await AllReadyAsync();
                    note("PostgreSQL restarted; services ready");
                    break;
                case Fault.PoisonConsumer:
                    note("hotline consumer throws (trigger on its inbox)");
                    await HotlineSqlAsync("""
                        CREATE OR REPLACE FUNCTION hotline.injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN RAISE EXCEPTION 'injected fault: the hotline consumer throws'; END $$;
                        CREATE TRIGGER injected_fault BEFORE INSERT ON hotline.inbox FOR EACH ROW EXECUTE FUNCTION hotline.injected_fault();
                        """);
                    try
                    {
                        await Eventually.True(() => Task.FromResult(system.RabbitMq.Depths(system.VirtualHost!).Any(q => q.Key.StartsWith("hotline-", StringComparison.Ordinal)
                            && q.Key.EndsWith("_error", StringComparison.Ordinal) && q.Value > 0)), TimeSpan.FromSeconds(120), "a message in a hotline error queue");
                    }
                    catch (TimeoutException e)
                    {
                        throw new TimeoutException($"{e.Message} ({await DiagnosticsAsync()})", e);
                    }
                    await HotlineSqlAsync("DROP TRIGGER injected_fault ON hotline.inbox");
                    var moved = await system.RabbitMq.RedriveAsync(system.VirtualHost!);
                    poisoned += moved;
                    note($"trigger dropped; {moved} messages redriven from error queues");
                    break;
            }
        }
        load.Stop();
        await loading;
        note($"load stopped: {load.Sent} requests, {load.Accepted.Count} accepted, {load.Retries} retries");

        // Settle: redrive what the faults sent to error queues until every queue is empty and every alert is there.
        var expected = load.Accepted.Values.ToHashSet();
        var gaveUp = load.Sent - load.Accepted.Count;
        var waiting = "";
        try
        {
            await Eventually.True(async () =>
            {
                poisoned += await system.RabbitMq.RedriveAsync(system.VirtualHost!);
                var deep = system.RabbitMq.Depths(system.VirtualHost!).Where(q => q.Value > 0).ToList();
                var alerts = await AlertsAsync();
                var without = expected.Count(id => !alerts.ContainsKey(id));
                // An outbox not yet relayed (a publish cut off by a broker stop waits out its timeout) still has messages
                // to send: comparing before they are consumed would find views ahead of the log read a moment earlier.
                var unsent = deep.Count == 0 && without == 0 ? await UnsentAsync() : [];
                waiting = $"queues: {string.Join(", ", deep.Select(q => $"{q.Key}={q.Value}"))}; accepted incidents without alerts: {without}" +
                          string.Concat(unsent.Select(u => $"; {u.Key} outbox unsent: {u.Value}"));
                return deep.Count == 0 && without == 0 && unsent.Count == 0;
            }, TimeSpan.FromMinutes(4), "queues to drain and every accepted incident's alerts to be raised");
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message} ({waiting}) {await DiagnosticsAsync()}", e);
        }
        note($"settled: {waiting}");

        // Nothing accepted is lost; nothing is filed twice.
        var filed = await ScalarListAsync("incidents", "SELECT stream_id, data->>'narrative' FROM incidents.events WHERE type = 'incident_filed'");
        var filedIds = filed.Select(f => f.Key).ToHashSet();
        var lost = expected.Where(id => !filedIds.Contains(id)).ToList();
        var filedTwice = filed.GroupBy(f => f.Value).Where(g => g.Count() > 1).Select(g => g.Key).ToList();

        // Exactly one alert per addressee for every filed incident, and the same addressees for each.
        var raised = await AlertsAsync();
        var missing = filedIds.Where(id => !raised.ContainsKey(id)).ToList();
        var duplicated = raised.SelectMany(r => r.Value.Where(a => a.Value > 1).Select(a => $"{r.Key}/{a.Key}")).ToList();
        var addressees = raised.Values.Select(a => string.Join(',', a.Keys.Order())).Distinct().ToList();

        note($"faults: {string.Join(", ", faults.GroupBy(f => f).Select(g => $"{g.Key} x{g.Count()}"))}; messages redriven from error queues: {poisoned}; " +
             $"services that stopped with a stuck bus and were started again: {system.SupervisorRestarts}");
        note($"requests: {load.Sent} sent, {load.Accepted.Count} accepted (2xx), {load.Retries} retried with their Idempotency-Key; " +
             $"never accepted after 3 min of retries: {gaveUp}; incidents filed: {filedIds.Count}; lost: {lost.Count}; filed twice: {filedTwice.Count}; alerts missing: {missing.Count}; duplicated: {duplicated.Count}");

        Assert.True(poisoned > 0, "the poisoned consumer sent nothing to an error queue: the fault did not bite");
        Assert.Equal(0, gaveUp);
        Assert.Empty(lost);
        Assert.Empty(filedTwice);
        Assert.Empty(missing);
        Assert.Empty(duplicated);
        Assert.True(addressees.Count == 1 && addressees[0].Contains("RU", StringComparison.Ordinal), $"addressees differ between incidents: {string.Join(" | ", addressees)}");

        // Every projection equals a rebuild from zero, and every log's hash chains and Merkle root verify, from outside.
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        var auditor = system.Token(Roles.Auditor, "US", "auditor-faults");
        foreach (var service in DistributedSystem.ServiceNames)
        {
            using var list = new HttpRequestMessage(HttpMethod.Get, new Uri(system.Endpoints[service], $"/log/{service}/projections"));
            list.Headers.Authorization = new AuthenticationHeaderValue("Bearer", auditor);
            using var listed = await http.SendAsync(list);
            listed.EnsureSuccessStatusCode();
            using var projections = JsonDocument.Parse(await listed.Content.ReadAsStringAsync());
            foreach (var name in projections.RootElement.EnumerateArray().Where(p => p.GetProperty("live").GetBoolean()).Select(p => p.GetProperty("name").GetString()!))
            {
                using var compare = new HttpRequestMessage(HttpMethod.Post, new Uri(system.Endpoints[service], $"/log/{service}/projections/{name}/compare"));
                compare.Headers.Authorization = new AuthenticationHeaderValue("Bearer", auditor);
                using var compared = await http.SendAsync(compare);
                var body = await compared.Content.ReadAsStringAsync();
                if (compared.IsSuccessStatusCode && JsonDocument.Parse(body).RootElement.GetProperty("equal").GetBoolean()) continue;
                Assert.Fail($"{service}.{name} differs from its rebuild: {await RebuildDifferenceAsync(service, body)}");
            }
            using var cli = new StringWriter();
            var code = await Auditor.Cli.RunAsync(["verify-log", "--url", system.Endpoints[service].ToString(), "--token", auditor, "--log", service], cli);
            Assert.True(code == 0, $"{service}: {cli}");
        }
    }

    /// <summary>
    /// A failed comparison, said so that its cause shows: how many documents differ, the first few, and where the log
    /// holds the events of the first one (a document id is its stream id in the views compared here), beside the head.
    /// </summary>
    private async Task<string> RebuildDifferenceAsync(string service, string body)
    {
        if (JsonDocument.Parse(body).RootElement.TryGetProperty("differences", out var list) is false) return body;
        var differences = list.EnumerateArray().Select(d => d.GetString() ?? "").ToList();
        if (differences.Count == 0) return body;
        var cut = differences[0].IndexOf(": live ", StringComparison.Ordinal);
        if (cut < 0) return body;
        var first = differences[0][..cut];
        var rows = await ScalarListAsync(service,
            $"SELECT format('(%s, %s) v%s %s committed %s', transaction_id, position, version, type, recorded_at), '' FROM {service}.events WHERE stream_id = '{first.Replace("'", "''", StringComparison.Ordinal)}' ORDER BY version");
        var head = await ScalarListAsync(service,
            $"SELECT format('head (%s, %s) of %s events; snapshot xmin %s', max(transaction_id::text::numeric), max(position), count(*), pg_snapshot_xmin(pg_current_snapshot())), '' FROM {service}.events");
        return $"{differences.Count} documents differ; the first of them: {string.Join(" | ", differences.Take(3).Select(d => d.Length > 600 ? d[..600] + "…" : d))}; " +
               $"events of {first}: [{string.Join("; ", rows.Select(r => r.Key))}]; {head[0].Key}";
    }

    /// <summary>Services whose outbox still holds messages not yet published, and how many.</summary>
    private async Task<Dictionary<string, long>> UnsentAsync()
    {
        var unsent = new Dictionary<string, long>();
        foreach (var service in DistributedSystem.ServiceNames)
        {
            var count = long.Parse((await ScalarListAsync(service, $"SELECT count(*)::text, '' FROM {service}.outbox WHERE sent_at IS NULL"))[0].Key, CultureInfo.InvariantCulture);
            if (count > 0) unsent[service] = count;
        }
        return unsent;
    }

    private async Task<string> DiagnosticsAsync()
    {
        var text = new StringBuilder();
        text.AppendLine(system.RabbitMq.Describe(system.VirtualHost!));
        var unsent = await UnsentAsync();
        foreach (var service in DistributedSystem.ServiceNames)
        {
            // A stalled consumer shows here: what its connections run and wait on (locks, a pool, nothing).
            var busy = await ScalarListAsync(service,
                "SELECT format('%s %s %s', state, coalesce(wait_event_type || ':' || wait_event, '-'), now() - state_change), left(query, 120) " +
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'");
            text.AppendLine(CultureInfo.InvariantCulture, $"--- {service}: {unsent.GetValueOrDefault(service)} outbox messages unsent; {busy.Count} busy connections");
            foreach (var (what, query) in busy) text.AppendLine(CultureInfo.InvariantCulture, $"  {what}: {query}");
            text.AppendLine(Tail(system.OutputOf(service)));
        }
        return text.ToString();
    }

    private static string Tail(string text) => string.Join('\n', text.Split('\n').TakeLast(40));

    private async Task AllReadyAsync()
    {
        foreach (var service in DistributedSystem.ServiceNames) await system.WaitReadyAsync(service);
    }

    /// <summary>The test's own connections are not pooled: a pooled one would be a dead socket after a database restart.</summary>
    private string Unpooled(string service) => new NpgsqlConnectionStringBuilder(system.Databases[service]) { Pooling = false }.ConnectionString;

    private async Task HotlineSqlAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(Unpooled("hotline"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private async Task<List<KeyValuePair<string, string>>> ScalarListAsync(string service, string sql)
    {
        await using var connection = new NpgsqlConnection(Unpooled(service));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<KeyValuePair<string, string>>();
        while (await reader.ReadAsync()) rows.Add(new(reader.GetString(0), reader.IsDBNull(1) ? "" : reader.GetString(1)));
        return rows;
    }

    /// <summary>incident id → (addressee → alert_raised events), from the hotline's own log.</summary>
    private async Task<Dictionary<string, Dictionary<string, int>>> AlertsAsync()
    {
        var rows = await ScalarListAsync("hotline", "SELECT stream_id, '' FROM hotline.events WHERE type = 'alert_raised'");
        var alerts = new Dictionary<string, Dictionary<string, int>>();
        foreach (var stream in rows.Select(r => r.Key))
        {
            // alert-<incident id>-<addressee>
            var cut = stream.LastIndexOf('-');
            var incident = stream["alert-".Length..cut];
            var addressee = stream[(cut + 1)..];
            if (!alerts.TryGetValue(incident, out var byAddressee)) alerts[incident] = byAddressee = [];
            byAddressee[addressee] = byAddressee.GetValueOrDefault(addressee) + 1;
        }
        return alerts;
    }

    /// <summary>
    /// A monitor filing incidents at a fixed rate (open model). Each request carries its own Idempotency-Key and is
    /// retried with it until accepted, as a client on a flaky line would: the key, not luck, keeps it from being filed twice.
    /// </summary>
    private sealed class Load(FaultySystem system, int rate) : IDisposable
    {
        private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
        private readonly CancellationTokenSource _stop = new();
        private int _sent;
        private int _retries;
        private long? _stoppedAt;

        /// <summary>Idempotency-Key → incident id, for every request that got a 2xx.</summary>
        public ConcurrentDictionary<string, string> Accepted { get; } = new();
        public int Sent => _sent;
        public int Retries => _retries;

        public void Stop()
        {
            _stoppedAt = Stopwatch.GetTimestamp();
            _stop.Cancel();
        }

        public async Task RunAsync()
        {
            var token = system.Token(Roles.Monitor, null, "monitor-faults");
            var requests = new List<Task>();
            var start = Stopwatch.GetTimestamp();
            for (var i = 0; !_stop.IsCancellationRequested; i++)
            {
                var due = TimeSpan.FromSeconds(i / (double)rate) - Stopwatch.GetElapsedTime(start);
                if (due > TimeSpan.Zero) await Task.Delay(due);
                requests.Add(FileUntilAcceptedAsync(token, $"fault-run-{i:D6}"));
            }
            await Task.WhenAll(requests);
        }

        private async Task FileUntilAcceptedAsync(string token, string key)
        {
            Interlocked.Increment(ref _sent);
            // The same body on every attempt: the key stands for this request, and a changed one is refused (422).
            var body = $$"""
                {"occurredFrom":"{{DateTimeOffset.UtcNow.AddMinutes(-5):o}}","occurredPrecision":"exact","category":"droneStrike",
                 "location":{"latitude":49.99,"longitude":36.23,"region":"Kharkiv","precision":"exact"},"targetTypes":["energySubstation"],
                 "narrative":"{{key}}","allegedParty":"RU"}
                """;
            // Retried until accepted; once the load has stopped, for three more minutes at most.
            for (var attempt = 0; ; attempt++)
            {
                if (attempt > 0)
                {
                    if (_stoppedAt is { } stopped && Stopwatch.GetElapsedTime(stopped) > TimeSpan.FromMinutes(3)) return;
                    Interlocked.Increment(ref _retries);
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(200 * attempt, 2000)));
                }
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(system.Endpoints["incidents"], "/incidents"))
                    {
                        Content = new StringContent(body, Encoding.UTF8, "application/json"),
                    };
                    request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                    request.Headers.Add("Idempotency-Key", key);
                    using var response = await _http.SendAsync(request);
                    if (!response.IsSuccessStatusCode) continue;
                    using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                    Accepted[key] = json.RootElement.GetProperty("id").GetString()!;
                    return;
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    // the service is down or restarting: try again with the same key
                }
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _stop.Dispose();
            _http.Dispose();
        }
    }
}
