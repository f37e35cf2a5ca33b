using System.Net;
using System.Text.Json;
using Verification.Testing;

namespace Verification.ServiceDefaults.Tests;

public sealed class SmokeServers : IAsyncLifetime
{
    public RabbitMqFixture Rabbit { get; } = new();
    public PostgresDatabaseFixture Postgres { get; } = new();
    public SmokeHost Host { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Task.WhenAll(Rabbit.InitializeAsync(), Postgres.InitializeAsync());
        Host = await SmokeHost.StartAsync(Rabbit.Amqp, Postgres.ConnectionString);
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        await Task.WhenAll(Rabbit.DisposeAsync(), Postgres.DisposeAsync());
    }
}

public sealed class ServiceDefaultsTests(SmokeServers servers) : IClassFixture<SmokeServers>
{
    private SmokeHost Host => servers.Host;

    [Fact]
    public async Task A_published_message_is_consumed_through_RabbitMQ_in_the_same_trace_as_the_request()
    {
        using (var probe = await Host.Client.GetAsync("/health/live")) Assert.Equal(HttpStatusCode.OK, probe.StatusCode);
        using var response = await Host.Client.SendAsync(Host.Post("/pings", """{"text":"hello","tone":"urgent"}""", Roles.Monitor));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var id = body.RootElement.GetProperty("id").GetGuid();
        var traceId = body.RootElement.GetProperty("traceId").GetString()!;

        var received = Host.Services.GetService(typeof(ReceivedPings)) as ReceivedPings;
        string? consumerTrace = null;
        await Eventually.True(() => Task.FromResult(received!.TryGet(id, out consumerTrace)), what: "the consumer to receive the ping");
        Assert.Equal(traceId, consumerTrace);

        // The exported spans: the HTTP request, the publish to RabbitMQ and the consume, one trace.
        await Eventually.True(() => Task.FromResult(Host.Activities.ForTrace(traceId).Any(a => a.Kind == System.Diagnostics.ActivityKind.Consumer)),
            what: "the consumer span to end");
        var spans = Host.Activities.ForTrace(traceId);
        var http = Assert.Single(spans, a => a.Source.Name == "Microsoft.AspNetCore");
        var publish = Assert.Single(spans, a => a.Source.Name == "MassTransit" && a.Kind == System.Diagnostics.ActivityKind.Producer);
        var consume = Assert.Single(spans, a => a.Source.Name == "MassTransit" && a.Kind == System.Diagnostics.ActivityKind.Consumer && a.OperationName.Contains("process", StringComparison.Ordinal));
        // The request span carries what an operator filters on (OpenTelemetry's HTTP server conventions), named by its route.
        Assert.Equal("POST /pings", http.DisplayName);
        Assert.Equal("POST", http.GetTagItem("http.request.method"));
        Assert.Equal("/pings", http.GetTagItem("http.route"));
        Assert.Equal(202, http.GetTagItem("http.response.status_code"));
        Assert.DoesNotContain(Host.Activities.All, a => a.Source.Name == "Microsoft.AspNetCore" && a.DisplayName.Contains("/health", StringComparison.Ordinal));
        Assert.Equal(http.SpanId, publish.ParentSpanId);
        Assert.Equal("rabbitmq", publish.GetTagItem("messaging.system"));
        Assert.NotEqual(default, consume.ParentSpanId);
    }

    [Fact]
    public async Task Traces_and_logs_go_out_over_OTLP_and_an_unhandled_fault_is_logged_in_the_span_of_its_request()
    {
        await using var collector = new OtlpReceiver();
        await collector.StartAsync();
        await using var host = await SmokeHost.StartAsync(servers.Rabbit.Amqp, servers.Postgres.ConnectionString, settings: new Dictionary<string, string?>
        {
            ["Telemetry:OtlpEndpoint"] = collector.Endpoint.ToString(),
            ["Telemetry:OtlpProtocol"] = "http/protobuf",
        });
        using var response = await host.Client.SendAsync(host.Post("/failures", "{}", Roles.Monitor));
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        await Eventually.True(() => Task.FromResult(host.Activities.All.Any(a => a.DisplayName == "POST /failures")), what: "the request span to end");
        var request = host.Activities.All.Single(a => a.DisplayName == "POST /failures");
        var traceId = request.TraceId.ToString();

        await Eventually.True(() => Task.FromResult(collector.OfTrace(traceId).Any(s => s.Name == "POST /failures")), TimeSpan.FromSeconds(30),
            "the request span at the collector");
        await Eventually.True(() => Task.FromResult(collector.Logs.Any(l => l.Body == "Unhandled exception")), TimeSpan.FromSeconds(30),
            "the fault's log record at the collector");
        var log = collector.Logs.Single(l => l.Body == "Unhandled exception");
        Assert.True(log.TraceId == traceId, string.Join("\n", collector.Logs));
        Assert.Equal(("smoke", request.SpanId.ToString(), 17), (log.Service, log.SpanId, log.Severity));
        Assert.Equal("smoke", collector.OfTrace(traceId).Single(s => s.Name == "POST /failures").Service);
    }

    [Fact]
    public async Task Without_a_token_the_answer_is_401_ProblemDetails()
    {
        using var response = await Host.Client.SendAsync(Host.Post("/pings", """{"text":"x","tone":"calm"}""", role: null));
        await AssertProblem(response, HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task With_the_wrong_role_the_answer_is_403_ProblemDetails()
    {
        using var response = await Host.Client.SendAsync(Host.Post("/pings", """{"text":"x","tone":"calm"}""", Roles.Auditor));
        await AssertProblem(response, HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task A_token_signed_with_another_key_is_refused()
    {
        var foreign = new AuthSettings("verification-dev", "verification", new byte[32]).CreateToken("x", Roles.Monitor, null);
        using var request = Host.Post("/pings", """{"text":"x","tone":"calm"}""", role: null);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", foreign);
        using var response = await Host.Client.SendAsync(request);
        await AssertProblem(response, HttpStatusCode.Unauthorized);
    }

    [Theory]
    [InlineData("""{"text":"x","tone":"calm","extra":1}""", "extra")]
    [InlineData("""{"text":"x","tone":"furious"}""", "tone")]
    [InlineData("""{"text":"x","tone":1}""", "tone")]
    [InlineData("""{"tone":"calm"}""", "text")]
    [InlineData("""{"text":"x",""", "")]
    public async Task Bad_bodies_are_400_ProblemDetails_naming_the_field(string json, string field)
    {
        using var response = await Host.Client.SendAsync(Host.Post("/pings", json, Roles.Monitor));
        var problem = await AssertProblem(response, HttpStatusCode.BadRequest);
        Assert.Contains(field, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_oversize_body_is_413_ProblemDetails()
    {
        var json = $$"""{"text":"{{new string('x', 1_100_000)}}","tone":"calm"}""";
        // Expect: 100-continue, as a careful client sends a large body: the 413 comes before the body is sent. Without it
        // the server answered and closed while the client was still writing, and the client saw a broken pipe (CI, once).
        using var request = Host.Post("/pings", json, Roles.Monitor);
        request.Headers.ExpectContinue = true;
        using var response = await Host.Client.SendAsync(request);
        await AssertProblem(response, HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task Health_endpoints_answer_and_ready_checks_postgres_and_the_bus()
    {
        using var live = await Host.Client.GetAsync("/health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        using var ready = await Host.Client.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("Healthy", await ready.Content.ReadAsStringAsync());
        var checks = Host.Services.GetService(typeof(Microsoft.Extensions.Options.IOptions<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckServiceOptions>))
            as Microsoft.Extensions.Options.IOptions<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckServiceOptions>;
        var ready_checks = checks!.Value.Registrations.Where(r => r.Tags.Contains("ready")).Select(r => r.Name).ToList();
        Assert.Contains("postgres", ready_checks);
        Assert.Contains(ready_checks, n => n.Contains("masstransit", StringComparison.OrdinalIgnoreCase));
    }

    [Theory]
    [InlineData("conflict", "The stream was changed by someone else")]
    [InlineData("archived", "The stream is archived")]
    [InlineData("rebuild", "The projection cannot be rebuilt")]
    public async Task Store_refusals_are_409_ProblemDetails(string kind, string title)
    {
        using var response = await Host.Client.SendAsync(Host.Post($"/store-refusals/{kind}", "{}", Roles.Monitor));
        var problem = await AssertProblem(response, HttpStatusCode.Conflict);
        Assert.Equal(title, problem.GetProperty("title").GetString());
        Assert.Contains("inc-1", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_event_this_instance_cannot_read_is_a_503_to_retry_not_a_500()
    {
        // A newer replica wrote it during a rolling deployment: another replica, or this one upgraded, can answer.
        using var response = await Host.Client.SendAsync(Host.Post("/store-refusals/unreadable", "{}", Roles.Monitor));
        var problem = await AssertProblem(response, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("This instance cannot read part of the record yet", problem.GetProperty("title").GetString());
        Assert.Contains("event 31 (noted of inc-1)", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(TimeSpan.FromSeconds(5), response.Headers.RetryAfter?.Delta);
    }

    [Fact]
    public async Task The_OpenAPI_document_is_served()
    {
        using var response = await Host.Client.GetAsync("/openapi/v1.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.True(doc.RootElement.GetProperty("paths").TryGetProperty("/pings", out _));
    }

    private static async Task<JsonElement> AssertProblem(HttpResponseMessage response, HttpStatusCode status)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("traceId").GetString()));
        return problem;
    }
}
