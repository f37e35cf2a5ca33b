using System.Net;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Verification.Exchanges;
using Verification.Hotline;
using Verification.Incidents;
using Verification.Pullbacks;
using Verification.ServiceDefaults;
using Verification.Testing;

namespace Verification.Compliance.Tests;

/// <summary>Every service composed in one host (the embedded mode), on one real database and the in-memory bus.</summary>
public class EverythingHost : IAsyncLifetime
{
    /// <summary>Tree heads are not published here: tests count every appended event.</summary>
    protected virtual IEnumerable<KeyValuePair<string, string?>> Settings => [new("Log:PublishInterval", "0")];

    public PostgresDatabaseFixture Postgres { get; } = new();
    public ServiceHost Host { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Postgres.InitializeAsync();
        Host = await ServiceHost.StartAsync("verification", new Dictionary<string, string?>(Settings) { ["ConnectionStrings:Postgres"] = Postgres.ConnectionString }, null, a =>
        {
            a.MapIncidentsApi();
            a.MapHotlineApi();
            a.MapExchangesApi();
            a.MapPullbacksApi();
            a.MapComplianceApi();
            a.MapVerifiableLog(IncidentsModule.Name, HotlineModule.Name, ExchangesModule.Name, PullbacksModule.Name, ComplianceModule.Name);
        }, configure: o =>
        {
            o.Modules.Add(b => b.AddIncidents());
            o.Modules.Add(b => b.AddHotline(o));
            o.Modules.Add(b => b.AddExchanges());
            o.Modules.Add(b => b.AddPullbacks());
            o.Modules.Add(b => b.AddCompliance(o));
        });
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        await Postgres.DisposeAsync();
    }
}

public sealed class AuditorAccessTests(EverythingHost fixture) : IClassFixture<EverythingHost>
{
    // Comparing a rebuilt projection writes only scratch documents it deletes again: it reads the record, never changes it.
    private static readonly string[] ReadOnlyPosts = ["/log/{log}/projections/{name}/compare"];

    [Fact]
    public async Task The_auditor_role_is_refused_on_every_write_endpoint_of_every_service_and_nothing_is_appended()
    {
        var endpoints = fixture.Host.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? []).Select(m => (Method: m, Route: "/" + e.RoutePattern.RawText!.TrimStart('/'))))
            .Where(e => e.Method is "POST" or "PUT" or "PATCH" or "DELETE" && !ReadOnlyPosts.Contains(e.Route))
            .Distinct().ToList();
        Assert.True(endpoints.Count >= 20, $"only {endpoints.Count} write endpoints found: {string.Join(", ", endpoints)}");
        foreach (var prefix in new[] { "/incidents", "/alerts", "/pre-notifications", "/channels", "/exchanges", "/pullbacks", "/agreements" })
            Assert.Contains(endpoints, e => e.Route.StartsWith(prefix, StringComparison.Ordinal));

        var before = await CountEventsAsync();
        var refused = new List<string>();
        foreach (var (method, route) in endpoints)
        {
            var path = System.Text.RegularExpressions.Regex.Replace(route, "{[^}]+}", "x");
            using var response = await fixture.Host.SendAsync(new HttpMethod(method), path, "{}", Roles.Auditor, "US");
            if (response.StatusCode != HttpStatusCode.Forbidden) refused.Add($"{method} {route} → {(int)response.StatusCode}");
        }
        Assert.True(refused.Count == 0, "not refused to the auditor: " + string.Join("; ", refused));
        Assert.Equal(before, await CountEventsAsync());
    }

    private async Task<long> CountEventsAsync()
    {
        await using var connection = new Npgsql.NpgsqlConnection(fixture.Postgres.ConnectionString);
        await connection.OpenAsync();
        long total = 0;
        foreach (var schema in new[] { "incidents", "hotline", "exchanges", "pullbacks", "compliance" })
        {
            await using var command = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM {schema}.events", connection);
            total += (long)(await command.ExecuteScalarAsync())!;
        }
        return total;
    }
}

/// <summary>Tree heads published every 200 ms.</summary>
public sealed class PublishingHost : EverythingHost
{
    protected override IEnumerable<KeyValuePair<string, string?>> Settings => [new("Log:PublishInterval", "00:00:00.2")];
}

public sealed class TreeHeadCollectionTests(PublishingHost fixture) : IClassFixture<PublishingHost>
{
    private async Task<List<System.Text.Json.JsonElement>> CollectedAsync(string log)
    {
        using var response = await fixture.Host.SendAsync(HttpMethod.Get, $"/compliance/tree-heads/{log}", null, Roles.Auditor, "US");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        return [.. System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.EnumerateArray()];
    }

    [Fact]
    public async Task Every_service_publishes_its_signed_tree_head_and_the_compliance_service_keeps_it_with_consistency_proofs()
    {
        foreach (var log in new[] { "incidents", "hotline", "exchanges", "pullbacks" })
        {
            var heads = await Eventually.Get(async () => await CollectedAsync(log) is { Count: > 0 } h ? h : null, what: $"a collected tree head of the {log} log");
            Assert.All(heads, h => Assert.True(h.TryGetProperty("signature", out _), h.ToString()));   // collected, none refused
            Assert.All(heads, h => Assert.Equal(log, h.GetProperty("log").GetString()));
        }
        Assert.Empty(await CollectedAsync("compliance"));   // its own heads would grow its own log at every interval

        // The incidents log grows twice: the head after the second incident proves it extends the one after the first.
        long largest = 0;
        for (var i = 0; i < 2; i++)
        {
            using var filed = await fixture.Host.SendAsync(HttpMethod.Post, "/incidents", new
            {
                occurredFrom = DateTimeOffset.UtcNow.AddHours(-1), occurredPrecision = "exact", category = "droneStrike",
                location = new { latitude = 49.99, longitude = 36.23, region = "Kharkiv", precision = "exact" }, targetTypes = new[] { "energySubstation" }, narrative = "Drone strike",
            }, Roles.Monitor);
            Assert.Equal(System.Net.HttpStatusCode.Created, filed.StatusCode);
            var previous = largest;
            largest = await Eventually.Get(async () => (await CollectedAsync("incidents")).Select(h => h.GetProperty("size").GetInt64()).DefaultIfEmpty().Max() is var m && m > previous ? m : (long?)null,
                what: $"an incidents head larger than {previous}");
        }
        var proven = (await CollectedAsync("incidents")).Single(h => h.GetProperty("size").GetInt64() == largest);
        Assert.True(proven.TryGetProperty("signature", out _), proven.ToString());
        Assert.True(proven.GetProperty("provenFromSize").GetInt64() > 0, proven.ToString());
    }
}
