using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Verification.Demo;
using Verification.ServiceDefaults;
using Verification.Testing;

namespace Verification.EndToEnd.Tests;

/// <summary>The five services as separate processes on real RabbitMQ and PostgreSQL, hotline deadlines short enough to watch an escalation.</summary>
public sealed class Services : DistributedSystem
{
    protected override IDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Hotline:Deadlines:critical"] = "00:00:20", ["Hotline:Deadlines:high"] = "00:00:20", ["Hotline:Deadlines:routine"] = "00:00:20",
        ["Hotline:Deadlines:preNotification"] = "00:05:00", ["Log:PublishInterval"] = "00:00:01",
    };

    private readonly AuthSettings _auth = AuthSettings.From(new ConfigurationBuilder()
        .AddInMemoryCollection(new Dictionary<string, string?> { ["Auth:DevMode"] = "true" }).Build());

    public string Token(string role, string? party, string subject) => _auth.CreateToken(subject, role, party);
}

public sealed class EndToEndTests(Services system) : IClassFixture<Services>
{
    private static JsonObject Scenario() => JsonNode.Parse(File.ReadAllText(Path.Combine(DistributedSystem.RepositoryRoot(),
        "tools", "Verification.Demo", "scenarios", "overnight-barrage.json")))!.AsObject();

    [Fact]
    public async Task The_seed_scenario_across_separate_processes_ends_in_the_expected_compliance_record_on_verifiable_logs()
    {
        using var output = new StringWriter();
        ScenarioResult result;
        try
        {
            result = await new ScenarioRunner(system.Endpoints, system.Token, output).RunAsync(Scenario());
        }
        catch (ScenarioException e)
        {
            Assert.Fail($"{e.Message}\n--- scenario output\n{output}\n--- hotline\n{system.OutputOf("hotline")}\n--- compliance\n{system.OutputOf("compliance")}");
            throw;
        }

        int Count(string party, string term, string field) => result.Summary!["lines"]!.AsArray()
            .Where(l => (string?)l!["party"] == party && (string?)l["termId"] == term).Sum(l => l![field]!.GetValue<int>());
        // The overnight barrage: two energy strikes and the strike inside the repair window, all graded against RU.
        Assert.Equal(3, Count("RU", "energy", "violations"));
        Assert.Equal(1, Count("RU", "repair", "violations"));
        // The maternity hospital, the shelter and the train; the contested Donetsk shelling counts against nobody.
        Assert.Equal(3, Count("RU", "civilian", "violations"));
        Assert.Equal(0, Count("UA", "civilian", "violations"));
        // Hotline: the train's alert lapsed unacknowledged; five were acknowledged in time; UA acknowledged its one.
        Assert.Equal((1, 5, 1), (Count("RU", "hotline", "breaches"), Count("RU", "hotline", "honoured"), Count("RU", "hotline", "missed")));
        Assert.Equal(1, Count("UA", "hotline", "honoured"));
        // 157 for 157: RU listed one person twice, so 156 of 157 arrived.
        Assert.Equal((1, 1), (Count("RU", "exchange", "breaches"), Count("UA", "exchange", "honoured")));
        Assert.Equal(1, Count("RU", "pullback", "violations"));

        // Every log verifies against its signed tree head, from outside, as an auditor would.
        foreach (var service in DistributedSystem.ServiceNames)
        {
            Assert.True(result.TreeHeads[service]!["size"]!.GetValue<long>() > 0, service);
            using var cliOutput = new StringWriter();
            var code = await Auditor.Cli.RunAsync(["verify-log", "--url", system.Endpoints[service].ToString(), "--token", system.Token(Roles.Auditor, "US", "auditor-e2e"),
                "--log", service], cliOutput);
            Assert.True(code == 0, $"{service}: {cliOutput}");
        }

        // Each service published its signed tree head over RabbitMQ; the compliance service kept them, none refused.
        using var http = new HttpClient();
        foreach (var service in DistributedSystem.ServiceNames.Where(s => s != "compliance"))
        {
            var heads = await Eventually.Get(async () =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(system.Endpoints["compliance"], $"/compliance/tree-heads/{service}"));
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", system.Token(Roles.Auditor, "US", "auditor-e2e"));
                using var response = await http.SendAsync(request);
                return JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsArray() is { Count: > 0 } found ? found : null;
            }, TimeSpan.FromSeconds(30), $"a collected tree head of {service}");
            Assert.All(heads, h => Assert.NotNull(h!["signature"]));
        }
    }

    [Fact]
    public async Task Filing_an_incident_makes_one_trace_from_the_request_through_the_bus_to_hotline_and_on_to_compliance()
    {
        var traceId = Convert.ToHexStringLower(Guid.NewGuid().ToByteArray());
        var rootSpan = traceId[..16];
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(system.Endpoints["incidents"], "/incidents"))
        {
            Content = new StringContent($$"""
                {"occurredFrom":"{{DateTimeOffset.UtcNow.AddHours(-1):o}}","occurredPrecision":"exact","category":"droneStrike",
                 "location":{"latitude":49.99,"longitude":36.23,"region":"Kharkiv","precision":"exact"},"targetTypes":["energySubstation"],
                 "narrative":"Drone strike on a substation","allegedParty":"RU"}
                """, Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", system.Token(Roles.Monitor, null, "monitor-trace"));
        request.Headers.Add("traceparent", $"00-{traceId}-{rootSpan}-01");
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);

        // A span's path to the caller's span, as the services on the way.
        List<string>? PathOf(ExportedSpan span, Dictionary<string, ExportedSpan> byId)
        {
            var services = new List<string>();
            for (var current = span; ;)
            {
                services.Add(current.Service);
                if (current.ParentSpanId == rootSpan) return services;
                if (current.ParentSpanId is null || !byId.TryGetValue(current.ParentSpanId, out current!)) return null;
            }
        }

        var chain = await Eventually.Get(() =>
        {
            var spans = system.Spans.OfTrace(traceId);
            var byId = spans.ToDictionary(s => s.SpanId);
            // A compliance consumer whose ancestry runs through hotline (the alert it raised) back to the incidents request.
            var found = spans.Where(s => s.Service == "compliance" && s.Kind == 5).Select(s => PathOf(s, byId))
                .FirstOrDefault(p => p is not null && p.Contains("hotline"));
            return Task.FromResult(found);
        }, TimeSpan.FromSeconds(60), "a compliance span reached through hotline from the incidents request");

        var hops = chain.Distinct().Reverse().ToList();
        Assert.Equal(["incidents", "hotline", "compliance"], hops);
        var spans = system.Spans.OfTrace(traceId);
        Assert.Contains(spans, s => s.Service == "incidents" && s.Kind == 2 && s.ParentSpanId == rootSpan);   // the HTTP server span
        Assert.Contains(spans, s => s.Service == "incidents" && s.Kind == 4);                                 // published to RabbitMQ
        Assert.Contains(spans, s => s.Service == "hotline" && s.Kind == 5);                                   // consumed by hotline
        Assert.Contains(spans, s => s.Service == "hotline" && s.Kind == 4);                                   // the alert published on

        // Metrics reach the collector too: each service's store gauges (a projection's only where it has one), the runtime's.
        foreach (var service in new[] { "incidents", "hotline", "exchanges", "pullbacks", "compliance" })
        {
            string[] expected = service == "pullbacks"
                ? ["verification.eventstore.outbox.unsent", "dotnet.process.memory.working_set"]
                : ["verification.eventstore.outbox.unsent", "verification.eventstore.projection.lag", "dotnet.process.memory.working_set"];
            await Eventually.True(() => Task.FromResult(system.Spans.MetricsOf(service).IsSupersetOf(expected)),
                TimeSpan.FromSeconds(30), $"{service}'s metrics at the collector");
        }
        Assert.Contains("http.server.request.duration", system.Spans.MetricsOf("incidents"));
    }
}
