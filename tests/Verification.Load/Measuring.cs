using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using MassTransit;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Verification.ServiceDefaults;
using Verification.Testing;

namespace Verification.Load;

/// <summary>Exact percentiles from every recorded sample (milliseconds).</summary>
public sealed class Samples
{
    private readonly List<double> _values = [];

    public Samples(IEnumerable<double> values) => _values = [.. values.Order()];

    public int Count => _values.Count;
    public double Max => _values.Count == 0 ? double.NaN : _values[^1];

    public double P(double percentile) =>
        _values.Count == 0 ? double.NaN : _values[Math.Clamp((int)Math.Ceiling(percentile / 100 * _values.Count) - 1, 0, _values.Count - 1)];
}

public sealed record Baseline(int Count, double PerSecond, Samples Latency);

public sealed record BusProbe(long SentAt);

public static class Baselines
{
    /// <summary>One row per transaction, autocommit, the same columns as the store's events table.</summary>
    public static async Task<Baseline> PostgresAsync(int count)
    {
        var connectionString = await PostgresServer.Instance.CreateDatabaseAsync("load_raw");
        try
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            await using (var create = new NpgsqlCommand("""
                CREATE TABLE raw_events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
                  id uuid NOT NULL UNIQUE, stream_id text NOT NULL, version bigint NOT NULL, type text NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL,
                  recorded_at timestamptz NOT NULL DEFAULT now(), hash bytea NOT NULL, UNIQUE (stream_id, version))
                """, connection))
                await create.ExecuteNonQueryAsync();
            var latencies = new List<double>(count);
            var total = Stopwatch.StartNew();
            for (var i = 0; i < count; i++)
            {
                var started = Stopwatch.GetTimestamp();
                await using var insert = new NpgsqlCommand(
                    "INSERT INTO raw_events (id, stream_id, version, type, data, metadata, hash) VALUES (@id, @stream, 1, 'incident_filed', @data::jsonb, @meta::jsonb, @hash)", connection);
                insert.Parameters.AddWithValue("id", Guid.NewGuid());
                insert.Parameters.AddWithValue("stream", $"inc-{i}");
                insert.Parameters.AddWithValue("data", """{"incidentId":"inc","category":"droneStrike","region":"Kharkiv","narrative":"Drone strike on a substation"}""");
                insert.Parameters.AddWithValue("meta", """{"actorSub":"monitor-1","actorRole":"monitor"}""");
                insert.Parameters.AddWithValue("hash", new byte[32]);
                await insert.ExecuteNonQueryAsync();
                latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            return new Baseline(count, count / total.Elapsed.TotalSeconds, new Samples(latencies));
        }
        finally
        {
            await PostgresServer.Instance.DropDatabaseAsync(connectionString);
        }
    }

    /// <summary>
    /// The bus as the services configure it (MassTransit, publisher confirms, a quorum queue, retry filter) between
    /// two endpoints in this process, against <see cref="RabbitMqAsync"/> on the same queue type: what MassTransit costs.
    /// </summary>
    public static async Task<Baseline> MassTransitAsync(Uri vhost, int count)
    {
        var latencies = new ConcurrentBag<double>();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var queue = $"load-mt-{Guid.NewGuid():N}";
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(vhost, h => h.PublisherConfirmation = true);
            cfg.PrefetchCount = Verification.ServiceDefaults.Messaging.DefaultPrefetchCount;
            cfg.ReceiveEndpoint(queue, e =>
            {
                e.SetQuorumQueue();
                e.AutoDelete = false;
                e.UseMessageRetry(r => r.Immediate(3));
                e.Handler<BusProbe>(context =>
                {
                    latencies.Add(Stopwatch.GetElapsedTime(context.Message.SentAt).TotalMilliseconds);
                    if (latencies.Count == count) done.TrySetResult();
                    return Task.CompletedTask;
                });
            });
        });
        await bus.StartAsync();
        try
        {
            var total = Stopwatch.StartNew();
            await PublishWindowedAsync(count, () => bus.Publish(new BusProbe(Stopwatch.GetTimestamp())));   // published, as the outbox relay does
            await done.Task.WaitAsync(TimeSpan.FromSeconds(120));
            return new Baseline(count, count / total.Elapsed.TotalSeconds, new Samples(latencies));
        }
        finally
        {
            await bus.StopAsync();
        }
    }

    /// <summary>Publishes <paramref name="count"/> times with a window of 64 confirmations in flight, as MassTransit keeps several outstanding.</summary>
    private static async Task PublishWindowedAsync(int count, Func<Task> publish)
    {
        var inFlight = new List<Task>(64);
        for (var i = 0; i < count; i++)
        {
            inFlight.Add(publish());
            if (inFlight.Count < 64) continue;
            await Task.WhenAll(inFlight);
            inFlight.Clear();
        }
        await Task.WhenAll(inFlight);
    }

    /// <summary>Publisher confirms on, one consumer: each message's time from publish to receipt.</summary>
    public static Task<Baseline> RabbitMqAsync(Uri vhost, int count) => RabbitMqAsync(vhost, count, quorum: false);

    /// <summary>As above; <paramref name="quorum"/>: a durable quorum queue and persistent messages, as the services' queues.</summary>
    public static async Task<Baseline> RabbitMqAsync(Uri vhost, int count, bool quorum)
    {
        var factory = new ConnectionFactory { Uri = vhost };
        await using var connection = await factory.CreateConnectionAsync();
        await using var publisher = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await using var consumerChannel = await connection.CreateChannelAsync();
        var queue = quorum
            ? (await consumerChannel.QueueDeclareAsync($"load-raw-q-{Guid.NewGuid():N}", durable: true, exclusive: false, autoDelete: false,
                arguments: new Dictionary<string, object?> { ["x-queue-type"] = "quorum" })).QueueName
            : (await consumerChannel.QueueDeclareAsync($"load-raw-{Guid.NewGuid():N}", durable: false, exclusive: true, autoDelete: true)).QueueName;
        var properties = new BasicProperties { Persistent = quorum };
        var latencies = new ConcurrentBag<double>();
        var done = new TaskCompletionSource();
        var consumer = new AsyncEventingBasicConsumer(consumerChannel);
        consumer.ReceivedAsync += (_, e) =>
        {
            var sent = BitConverter.ToInt64(e.Body.Span);
            latencies.Add(Stopwatch.GetElapsedTime(sent).TotalMilliseconds);
            if (latencies.Count == count) done.TrySetResult();
            return Task.CompletedTask;
        };
        await consumerChannel.BasicConsumeAsync(queue, autoAck: true, consumer);
        var total = Stopwatch.StartNew();
        await PublishWindowedAsync(count, () => publisher.BasicPublishAsync("", queue, false, properties, BitConverter.GetBytes(Stopwatch.GetTimestamp())).AsTask());
        await done.Task.WaitAsync(TimeSpan.FromSeconds(60));
        var result = new Baseline(count, count / total.Elapsed.TotalSeconds, new Samples(latencies));
        if (quorum) await consumerChannel.QueueDeleteAsync(queue);
        return result;
    }
}

public sealed record ProcessSample(string Name, double RssMb, double CpuPercent);

public sealed record StepResult(int Rate, int Sent, int Accepted, int Errors, int Alerted, Samples Api, Samples E2E, bool Sustainable,
    IReadOnlyList<ProcessSample> Processes, string Queues, string ProjectionLag, double StartSecond, double EndSecond);

/// <summary>Files incidents on schedule and hears their alerts on the hotline's live feed (as RU's liaison officer).</summary>
public sealed class Driver(DistributedSystem system, AuthSettings auth) : IDisposable
{
    private readonly HttpClient _http = new(new SocketsHttpHandler { MaxConnectionsPerServer = 512, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
    {
        Timeout = TimeSpan.FromSeconds(30),
    };
    private readonly ConcurrentDictionary<string, long> _alertSeen = new();
    private readonly long _origin = Stopwatch.GetTimestamp();
    private readonly CancellationTokenSource _stop = new();

    /// <summary>(second since the first step, E2E ms) per incident, for the plot.</summary>
    public ConcurrentQueue<(double Second, double Milliseconds)> Timeline { get; } = new();

    public async Task StartFeedAsync()
    {
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(system.Endpoints["hotline"], "/alerts/feed"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", auth.CreateToken("liaison-ru-load", Roles.Liaison, "RU", TimeSpan.FromHours(4)));
        var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        var stream = await response.Content.ReadAsStreamAsync();
        _ = Task.Run(async () =>
        {
            using var reader = new StreamReader(stream);
            while (!_stop.IsCancellationRequested && await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                var at = Stopwatch.GetTimestamp();
                using var json = JsonDocument.Parse(line.AsMemory(6));
                _alertSeen.TryAdd(json.RootElement.GetProperty("id").GetString()!, at);
            }
        });
    }

    public async Task<StepResult> RunStepAsync(int rate, TimeSpan duration)
    {
        var token = auth.CreateToken("monitor-load", Roles.Monitor, null, TimeSpan.FromHours(4));
        var count = (int)(rate * duration.TotalSeconds);
        var sends = new List<Task<(string? Id, long SentAt, double Api, bool Ok)>>(count);
        var start = Stopwatch.GetTimestamp();
        var before = Processes();
        var interval = Stopwatch.Frequency / (double)rate;
        for (var i = 0; i < count; i++)
        {
            var due = start + (long)(i * interval);
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.FromMilliseconds(1)) await Task.Delay(wait);
            sends.Add(FileAsync(token, due));
        }
        var outcomes = await Task.WhenAll(sends);
        var end = Stopwatch.GetTimestamp();
        var accepted = outcomes.Where(o => o.Ok).ToList();
        // Every accepted incident's alert should be readable within 5 s of the step's end.
        var grace = Stopwatch.GetTimestamp() + 5 * Stopwatch.Frequency;
        while (Stopwatch.GetTimestamp() < grace && accepted.Any(o => !_alertSeen.ContainsKey($"alert-{o.Id}-RU"))) await Task.Delay(50);
        var e2e = new List<double>();
        foreach (var o in accepted)
            if (_alertSeen.TryGetValue($"alert-{o.Id}-RU", out var seenAt))
            {
                var ms = Stopwatch.GetElapsedTime(o.SentAt, seenAt).TotalMilliseconds;
                e2e.Add(ms);
                Timeline.Enqueue((Stopwatch.GetElapsedTime(_origin, o.SentAt).TotalSeconds, ms));
            }
        var e2eSamples = new Samples(e2e);
        var errors = outcomes.Count(o => !o.Ok);
        var sustainable = errors == 0 && e2e.Count == accepted.Count && e2eSamples.P(99) < 1000;
        var after = Processes();
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        var samples = after.Select(a =>
        {
            var b = before.FirstOrDefault(x => x.Name == a.Name);
            return new ProcessSample(a.Name, a.RssMb, (a.CpuSeconds - b.CpuSeconds) / seconds * 100);
        }).ToList();
        return new StepResult(rate, count, accepted.Count, errors, e2e.Count, new Samples(outcomes.Select(o => o.Api)), e2eSamples, sustainable, samples,
            await QueuesAsync(), await ProjectionLagAsync(), Stopwatch.GetElapsedTime(_origin, start).TotalSeconds, Stopwatch.GetElapsedTime(_origin, end).TotalSeconds);
    }

    private async Task<(string? Id, long SentAt, double Api, bool Ok)> FileAsync(string token, long sentAt)
    {
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(system.Endpoints["incidents"], "/incidents"))
            {
                Content = new StringContent($$"""
                    {"occurredFrom":"{{DateTimeOffset.UtcNow.AddMinutes(-5):o}}","occurredPrecision":"exact","category":"droneStrike",
                     "location":{"latitude":49.99,"longitude":36.23,"region":"Kharkiv","precision":"exact"},"targetTypes":["energySubstation"],
                     "narrative":"Drone strike on a substation","allegedParty":"RU","figures":{"drones":{"low":3,"best":4,"high":5} } }
                    """, Encoding.UTF8, "application/json"),
            };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await _http.SendAsync(request);
            var api = Stopwatch.GetElapsedTime(sentAt).TotalMilliseconds;
            if (!response.IsSuccessStatusCode) return (null, sentAt, api, false);
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return (json.RootElement.GetProperty("id").GetString(), sentAt, api, true);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return (null, sentAt, Stopwatch.GetElapsedTime(sentAt).TotalMilliseconds, false);
        }
    }

    private List<(string Name, double RssMb, double CpuSeconds)> Processes() =>
        [.. ServiceProcesses(), Servers("postgres", "postgres (all backends)"), Servers("beam.smp", "rabbitmq"), Servers(null, "load driver (this process)")];

    /// <summary>CPU of every process named <paramref name="command"/> (null: this one), summed; RSS summed too.</summary>
    private static (string Name, double RssMb, double CpuSeconds) Servers(string? command, string label)
    {
        double ticks = 0, kb = 0;
        IEnumerable<int> pids = command is null ? [Environment.ProcessId]
            : Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).Where(d => d!.All(char.IsAsciiDigit)).Select(d => int.Parse(d!, CultureInfo.InvariantCulture));
        foreach (var pid in pids)
        {
            if (Stat(pid) is not var (name, cpu, rss) || (command is not null && name != command)) continue;
            ticks += cpu;
            kb += rss;
        }
        // Shared buffers count in every backend's RSS: report RSS for single processes only.
        return (label, command == "postgres" ? double.NaN : kb / 1024, ticks);
    }

    private IEnumerable<(string Name, double RssMb, double CpuSeconds)> ServiceProcesses() =>
        system.ProcessIds.Select(p => Stat(p.Value) is var (_, cpu, rss) ? (p.Key, rss / 1024, cpu) : (p.Key, double.NaN, double.NaN));

    /// <summary>From /proc/PID/stat: the command name, CPU seconds (user + system) and resident KB; null if it ended.</summary>
    private static (string Name, double CpuSeconds, double RssKb)? Stat(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
            return (stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')], ticks / 100.0, long.Parse(fields[21], CultureInfo.InvariantCulture) * 4.0);
        }
        catch (IOException)
        {
            return null;
        }
    }

    private async Task<string> QueuesAsync()
    {
        var rabbit = await RabbitMqServer.GetAsync();
        if (rabbit.Node is null || system.VirtualHost is null) return "(no node to ask)";
        var vhost = Uri.UnescapeDataString(system.VirtualHost.AbsolutePath.TrimStart('/'));
        using var process = Process.Start(new ProcessStartInfo("rabbitmqctl", ["-n", rabbit.Node, "list_queues", "-p", vhost, "-q", "name", "messages"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        })!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        var deep = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).Where(p => p.Length == 2 && p[1].Trim() != "0" && !p[0].StartsWith("name", StringComparison.Ordinal))
            .Select(p => $"{p[0]}={p[1].Trim()}").ToList();
        return deep.Count == 0 ? "all empty" : string.Join(", ", deep);
    }

    private async Task<string> ProjectionLagAsync()
    {
        var lags = new List<string>();
        foreach (var (service, endpoint) in system.Endpoints)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(endpoint, $"/log/{service}/projections"));
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", auth.CreateToken("auditor-load", Roles.Auditor, "US"));
            using var response = await _http.SendAsync(request);
            if (!response.IsSuccessStatusCode) continue;
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            foreach (var p in json.RootElement.EnumerateArray().Where(p => !p.GetProperty("inline").GetBoolean()))
                lags.Add($"{service}.{p.GetProperty("name").GetString()}={p.GetProperty("head").GetProperty("position").GetInt64() - p.GetProperty("checkpoint").GetProperty("position").GetInt64()}");
        }
        return string.Join(", ", lags);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _http.Dispose();
        _stop.Dispose();
    }
}

/// <summary>E2E latency over time: per-second p50 and p99, the steps' rates marked.</summary>
public static class Plot
{
    public static string Svg(IEnumerable<(double Second, double Milliseconds)> timeline, IReadOnlyList<StepResult> steps)
    {
        var c = CultureInfo.InvariantCulture;
        var buckets = timeline.GroupBy(t => (int)t.Second).OrderBy(g => g.Key)
            .Select(g => (Second: g.Key, Stats: new Samples(g.Select(t => t.Milliseconds)))).ToList();
        const int width = 900, height = 400, left = 60, bottom = 40;
        var maxX = Math.Max(1, buckets.Select(b => b.Second).DefaultIfEmpty(1).Max());
        var maxY = Math.Max(10, buckets.Select(b => b.Stats.P(99)).DefaultIfEmpty(10).Max() * 1.1);
        double X(double s) => left + s / maxX * (width - left - 20);
        double Y(double ms) => height - bottom - ms / maxY * (height - bottom - 20);
        string Line(Func<Samples, double> pick) => string.Join(' ', buckets.Select(b => string.Create(c, $"{X(b.Second):0.0},{Y(pick(b.Stats)):0.0}")));
        var svg = new StringBuilder();
        svg.AppendLine(c, $"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">""")
            .AppendLine(c, $"""<rect width="{width}" height="{height}" fill="white"/>""")
            .AppendLine(c, $"""<line x1="{left}" y1="{height - bottom}" x2="{width - 20}" y2="{height - bottom}" stroke="black"/><line x1="{left}" y1="20" x2="{left}" y2="{height - bottom}" stroke="black"/>""");
        for (var i = 0; i <= 4; i++)
        {
            var ms = maxY * i / 4;
            svg.AppendLine(c, $"""<text x="{left - 5}" y="{Y(ms) + 4:0.0}" text-anchor="end">{ms:0}</text><line x1="{left}" y1="{Y(ms):0.0}" x2="{width - 20}" y2="{Y(ms):0.0}" stroke="#ddd"/>""");
        }
        foreach (var step in steps)
            svg.AppendLine(c, $"""<line x1="{X(step.StartSecond):0.0}" y1="20" x2="{X(step.StartSecond):0.0}" y2="{height - bottom}" stroke="#aaa" stroke-dasharray="4"/><text x="{X(step.StartSecond) + 3:0.0}" y="32">{step.Rate}/s</text>""");
        svg.AppendLine(c, $"""<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{Line(s => s.P(50))}"/>""")
            .AppendLine(c, $"""<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{Line(s => s.P(99))}"/>""")
            .AppendLine(c, $"""<text x="{width / 2}" y="{height - 8}" text-anchor="middle">seconds (each step's rate marked); blue p50, red p99 of incident filed -> alert readable (ms)</text>""")
            .AppendLine("</svg>");
        return svg.ToString();
    }
}
