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
public sealed class EverythingHost : IAsyncLifetime
{
    public PostgresDatabaseFixture Postgres { get; } = new();
    public ServiceHost Host { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Postgres.InitializeAsync();
        Host = await ServiceHost.StartAsync("verification", new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = Postgres.ConnectionString }, null, a =>
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
