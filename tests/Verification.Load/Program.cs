// The measuring harness: drives the distributed system (five service processes, RabbitMQ, PostgreSQL) at fixed
// arrival rates (open model: requests leave on schedule whether or not earlier ones finished), measures incident
// filed -> alert readable on the hotline (its live feed), API latency, projection lag, queue depths, RSS and CPU per
// process, beside raw Npgsql and raw RabbitMQ.Client baselines measured in the same run; writes a Markdown report and
// an SVG plot to results/. Run: bash scripts/load.sh [--quick] [--rates 25,50,100]
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Verification.Load;
using Verification.ServiceDefaults;
using Verification.Testing;

var quick = args.Contains("--quick");
var culture = CultureInfo.InvariantCulture;
var results = Path.Combine(DistributedSystem.RepositoryRoot(), "results", DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", culture));
Directory.CreateDirectory(results);
var auth = AuthSettings.From(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Auth:DevMode"] = "true" }).Build());

if (args.Contains("--bus"))
{
    // The bus alone: raw RabbitMQ.Client beside MassTransit as the services configure it, on the same broker.
    var vhost = (await RabbitMqServer.GetAsync()).CreateVirtualHost("bus");
    var n = quick ? 3000 : 10000;
    foreach (var (name, run) in new (string, Func<Task<Baseline>>)[]
    {
        ("RabbitMQ.Client, transient queue", () => Baselines.RabbitMqAsync(vhost, n)),
        ("RabbitMQ.Client, quorum queue", () => Baselines.RabbitMqAsync(vhost, n, quorum: true)),
        ("MassTransit as the services run it", () => Baselines.MassTransitAsync(vhost, n)),
    })
    {
        var b = await run();
        Console.WriteLine(string.Create(culture, $"{name}: {b.PerSecond:0}/s, p50 {b.Latency.P(50):0.00} ms, p99 {b.Latency.P(99):0.00} ms"));
    }
    return;
}

Console.WriteLine("starting PostgreSQL, RabbitMQ and the five services (separate processes) ...");
var system = new DistributedSystem();
await system.InitializeAsync();
try
{
    var report = new StringBuilder();
    report.AppendLine(culture, $"# Verification load report, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC").AppendLine()
        .AppendLine(culture, $"Machine: {Environment.ProcessorCount} cores; services as separate processes on one RabbitMQ and one PostgreSQL (fsync as the test server runs it).").AppendLine();

    Console.WriteLine("baseline: raw Npgsql INSERT+COMMIT ...");
    var rawPg = await Baselines.PostgresAsync(quick ? 1000 : 3000);
    Console.WriteLine("baseline: raw RabbitMQ.Client publish -> consume ...");
    var rawBus = await Baselines.RabbitMqAsync(system.VirtualHost!, quick ? 3000 : 10000);
    Console.WriteLine("baseline: raw RabbitMQ.Client and MassTransit on quorum queues ...");
    var rawQuorum = await Baselines.RabbitMqAsync(system.VirtualHost!, quick ? 3000 : 10000, quorum: true);
    var massTransit = await Baselines.MassTransitAsync(system.VirtualHost!, quick ? 3000 : 10000);
    report.AppendLine("## Raw baselines (same run, same servers)").AppendLine()
        .AppendLine("| baseline | ops | per second | p50 ms | p99 ms |").AppendLine("| --- | --- | --- | --- | --- |")
        .AppendLine(culture, $"| Npgsql single-row INSERT+COMMIT (event row shape), 1 writer | {rawPg.Count} | {rawPg.PerSecond:0} | {rawPg.Latency.P(50):0.00} | {rawPg.Latency.P(99):0.00} |")
        .AppendLine(culture, $"| RabbitMQ.Client publish (confirmed) -> consume, transient queue | {rawBus.Count} | {rawBus.PerSecond:0} | {rawBus.Latency.P(50):0.00} | {rawBus.Latency.P(99):0.00} |")
        .AppendLine(culture, $"| RabbitMQ.Client publish (confirmed, persistent) -> consume, quorum queue | {rawQuorum.Count} | {rawQuorum.PerSecond:0} | {rawQuorum.Latency.P(50):0.00} | {rawQuorum.Latency.P(99):0.00} |")
        .AppendLine(culture, $"| MassTransit publish -> consume as the services run it (confirms, quorum queue, retry, prefetch) | {massTransit.Count} | {massTransit.PerSecond:0} | {massTransit.Latency.P(50):0.00} | {massTransit.Latency.P(99):0.00} |")
        .AppendLine()
        .AppendLine(culture, $"Bus: MassTransit over raw RabbitMQ.Client on the same queue type = **{massTransit.PerSecond / Math.Max(rawQuorum.PerSecond, 1):0.00}x** throughput (target ≥ 0.5x), p50 latency {massTransit.Latency.P(50) / Math.Max(rawQuorum.Latency.P(50), 0.001):0.0}x.")
        .AppendLine();

    using var driver = new Driver(system, auth);
    await driver.StartFeedAsync();
    // Services start on tier-0 JIT code; the first tens of seconds under load measure the JIT, not the system.
    var warmUp = quick ? new[] { (50, 5), (100, 5) } : [(25, 5), (50, 10), (100, 15)];
    foreach (var (rate, seconds) in warmUp)
    {
        Console.WriteLine($"warm-up: {rate}/s for {seconds} s ...");
        await driver.RunStepAsync(rate, TimeSpan.FromSeconds(seconds));
    }

    var steps = new List<StepResult>();
    var rates = args.SkipWhile(a => a != "--rates").Skip(1).FirstOrDefault()?.Split(',').Select(r => (int.Parse(r, culture), quick ? 10 : 15)).ToArray();
    var plan = rates ?? (quick ? [(100, 10)] : [(100, 20), (200, 10), (400, 10), (700, 10), (1000, 10), (1400, 10)]);
    foreach (var (rate, seconds) in plan)
    {
        Console.WriteLine($"{rate} incidents/s for {seconds} s ...");
        var step = await driver.RunStepAsync(rate, TimeSpan.FromSeconds(seconds));
        steps.Add(step);
        Console.WriteLine($"  sent {step.Sent}, 2xx {step.Accepted}, errors {step.Errors}, alerts {step.Alerted}/{step.Accepted}, E2E p50 {step.E2E.P(50):0.0} ms p99 {step.E2E.P(99):0.0} ms, sustainable: {step.Sustainable}");
        if (!step.Sustainable && rates is null) break;
    }

    report.AppendLine("## Incident filed -> alert readable on the hotline feed (end to end, via RabbitMQ)").AppendLine()
        .AppendLine("Open model: each request leaves at its scheduled time. Sustainable: no error, every alert readable within 5 s of the step's end, p99 under 1 s.")
        .AppendLine(culture, $"After a warm-up of {string.Join(", ", warmUp.Select(w => $"{w.Item2} s at {w.Item1}/s"))} (the services start on tier-0 JIT code).").AppendLine()
        .AppendLine("| rate/s | sent | 2xx | errors | alerts | E2E p50 | p90 | p99 | max (ms) | API p50 | p99 (ms) | sustainable |")
        .AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    foreach (var s in steps)
        report.AppendLine(culture, $"| {s.Rate} | {s.Sent} | {s.Accepted} | {s.Errors} | {s.Alerted} | {s.E2E.P(50):0.0} | {s.E2E.P(90):0.0} | {s.E2E.P(99):0.0} | {s.E2E.Max:0.0} | {s.Api.P(50):0.0} | {s.Api.P(99):0.0} | {(s.Sustainable ? "yes" : "no")} |");
    var best = steps.Where(s => s.Sustainable).Select(s => s.Rate).DefaultIfEmpty(0).Max();
    var at100 = steps.FirstOrDefault(s => s.Rate == 100);
    report.AppendLine()
        .AppendLine(culture, $"Highest sustained rate: **{best} incidents/s** (target ≥ 1,000). Each incident is one append in incidents, one message to hotline (alerts to RU, US, AE: 3 appends) and on to compliance.")
        .AppendLine(culture, $"At 100/s: E2E p50 {at100?.E2E.P(50):0.0} ms (target ≤ 25), p99 {at100?.E2E.P(99):0.0} ms (target ≤ 100).")
        .AppendLine(culture, $"E2E p50 at 100/s over the raw quorum-queue bus p50 = {(at100?.E2E.P(50) ?? 0) / Math.Max(rawQuorum.Latency.P(50), 0.001):0.0}x (an incident crosses the bus once to the hotline, with three commits on the way).")
        .AppendLine(culture, $"Store: an incident's API p50 at 100/s over a raw INSERT+COMMIT p50 = {(at100?.Api.P(50) ?? 0) / Math.Max(rawPg.Latency.P(50), 0.001):0.0}x (the API also authenticates, validates, hashes and writes the outbox).")
        .AppendLine();

    report.AppendLine("## Processes at the end of each step").AppendLine().AppendLine("| rate/s | process | RSS MB | CPU % (of one core) |").AppendLine("| --- | --- | --- | --- |");
    foreach (var s in steps)
        foreach (var p in s.Processes)
            report.AppendLine(culture, $"| {s.Rate} | {p.Name} | {(double.IsNaN(p.RssMb) ? "shared" : p.RssMb.ToString("0", culture))} | {p.CpuPercent:0} |");
    report.AppendLine().AppendLine("## Queues and projections at the end of each step").AppendLine();
    foreach (var s in steps) report.AppendLine(culture, $"- {s.Rate}/s: queues {s.Queues}; async projection lag (events) {s.ProjectionLag}");
    report.AppendLine().AppendLine("![E2E latency over time](latency.svg)");

    await File.WriteAllTextAsync(Path.Combine(results, "latency.svg"), Plot.Svg(driver.Timeline, steps));
    await File.WriteAllTextAsync(Path.Combine(results, "report.md"), report.ToString());
    Console.WriteLine($"\nreport: {Path.Combine(results, "report.md")}");
    Console.WriteLine(report.ToString());
}
finally
{
    await system.DisposeAsync();
}
