using System.Net;
using System.Text.Json;
using Npgsql;
using Verification.ServiceDefaults;
using Verification.Testing;
using Contract = Verification.Contracts;

namespace Verification.Pullbacks.Tests;

public sealed class PullbacksHost : ServiceFixture
{
    protected override Task<ServiceHost> StartAsync(IDictionary<string, string?> settings) =>
        ServiceHost.StartAsync(PullbacksModule.Name, settings, b => b.AddPullbacks(), a => a.MapPullbacksApi(), [typeof(Contract.PullbackViolationDetected), typeof(Contract.HoldingSiteDiscrepancy)]);

    public Task<long> EventsAsync() => CountAsync("SELECT count(*) FROM pullbacks.events");
}

public sealed class PullbacksApiTests(PullbacksHost fixture) : IClassFixture<PullbacksHost>
{
    private ServiceHost Host => fixture.Host;

    private async Task<JsonElement> SendAsync(HttpMethod method, string path, object? body, string role, string? party, HttpStatusCode expected)
    {
        using var response = await Host.SendAsync(method, path, body, role, party);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{method} {path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>The scenario: RU withdraws MLRS 70 km from the line; observations inside and outside; a revisit finds weapons missing.</summary>
    [Fact]
    public async Task A_70_km_MLRS_commitment_gives_exactly_the_expected_verdicts()
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(2);
        var created = await SendAsync(HttpMethod.Post, "/pullbacks", new
        {
            party = "RU", weaponClasses = new[] { "mlrs" }, deadline,
            zone = new { line = RulesTests.LineOfContact },
            holdingSites = new[] { new { siteId = "site-1", name = "Depot North", latitude = 49.5, longitude = 38.0, weaponClass = "mlrs", declaredCount = 12 } },
        }, Roles.Verifier, null, HttpStatusCode.Created);
        var id = created.GetProperty("id").GetString()!;
        await Eventually.True(() => Task.FromResult(DateTimeOffset.UtcNow > deadline.AddSeconds(1)), what: "the deadline to pass");

        var outside = await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/observations",
            new { observedAt = DateTimeOffset.UtcNow, sensor = "drone", latitude = 48.9, longitude = 38.0, weaponClass = "mlrs", count = 6 }, Roles.Monitor, null, HttpStatusCode.OK);
        Assert.Equal("inProgress", outside.GetProperty("status").GetString());
        await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/site-visits", new
        {
            siteId = "site-1", visitedAt = DateTimeOffset.UtcNow, checks = new[] { new { weaponClass = "mlrs", finding = "countMatchingSerialsUnchecked", countSeen = 9 } },
        }, Roles.Monitor, null, HttpStatusCode.OK);
        await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/verdict", null, Roles.Verifier, null, HttpStatusCode.Conflict);   // nothing decidable yet

        await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/observations",
            new { observedAt = DateTimeOffset.UtcNow, sensor = "patrol", latitude = 48.5, longitude = 38.0, weaponClass = "mlrs", count = 4 }, Roles.Monitor, null, HttpStatusCode.OK);
        var verdict = await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/verdict", null, Roles.Verifier, null, HttpStatusCode.OK);
        Assert.Equal("violated", verdict.GetProperty("status").GetString());

        var violation = await Eventually.Get(() => Task.FromResult(Host.Messages.Of<Contract.PullbackViolationDetected>().FirstOrDefault(m => m.CommitmentId == id)), what: "the violation message");
        Assert.Equal(("RU", "mlrs", 48.5), (violation.Party, violation.WeaponClass, violation.Latitude));
        Assert.Single(Host.Messages.Of<Contract.PullbackViolationDetected>(), m => m.CommitmentId == id);
        var missing = await Eventually.Get(() => Task.FromResult(Host.Messages.Of<Contract.HoldingSiteDiscrepancy>().FirstOrDefault(m => m.CommitmentId == id)), what: "the missing weapons");
        Assert.Equal("missing", missing.Kind);

        var read = await SendAsync(HttpMethod.Get, $"/pullbacks/{id}", null, Roles.Liaison, "RU", HttpStatusCode.OK);
        Assert.Equal(2, read.GetProperty("observations").GetArrayLength());
        await SendAsync(HttpMethod.Get, $"/pullbacks/{id}", null, Roles.Liaison, "UA", HttpStatusCode.Forbidden);
        await SendAsync(HttpMethod.Get, $"/pullbacks/{id}", null, Roles.Auditor, "US", HttpStatusCode.OK);
    }

    [Fact]
    public async Task Bad_input_and_wrong_roles_are_refused_and_nothing_is_appended()
    {
        var before = await fixture.EventsAsync();
        await SendAsync(HttpMethod.Post, "/pullbacks", new { party = "RU", weaponClasses = new[] { "mlrs" }, deadline = DateTimeOffset.UtcNow.AddDays(-1), zone = new { line = RulesTests.LineOfContact } },
            Roles.Verifier, null, HttpStatusCode.BadRequest);
        await SendAsync(HttpMethod.Post, "/pullbacks", new { party = "RU", weaponClasses = new[] { "mlrs" }, deadline = DateTimeOffset.UtcNow.AddDays(9),
            zone = new { polygon = new[] { new[] { 37.0, 47 }, new[] { 38.0, 48 }, new[] { 38.0, 47 }, new[] { 37.0, 48 }, new[] { 37.0, 47 } } } }, Roles.Verifier, null, HttpStatusCode.BadRequest);
        await SendAsync(HttpMethod.Post, "/pullbacks", new { party = "RU", weaponClasses = new[] { "railgun" }, deadline = DateTimeOffset.UtcNow.AddDays(9), zone = new { line = RulesTests.LineOfContact } },
            Roles.Verifier, null, HttpStatusCode.BadRequest);
        await SendAsync(HttpMethod.Post, "/pullbacks", new { party = "RU", weaponClasses = new[] { "mlrs" }, deadline = DateTimeOffset.UtcNow.AddDays(9), zone = new { line = RulesTests.LineOfContact } },
            Roles.Monitor, null, HttpStatusCode.Forbidden);
        Assert.Equal(before, await fixture.EventsAsync());

        var created = await SendAsync(HttpMethod.Post, "/pullbacks", new { party = "RU", weaponClasses = new[] { "mlrs" }, deadline = DateTimeOffset.UtcNow.AddDays(9), zone = new { line = RulesTests.LineOfContact } },
            Roles.Verifier, null, HttpStatusCode.Created);
        var id = created.GetProperty("id").GetString()!;
        var afterCreate = await fixture.EventsAsync();
        await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/observations", new { observedAt = DateTimeOffset.UtcNow, sensor = "drone", latitude = 91, longitude = 38.0, weaponClass = "mlrs", count = 1 },
            Roles.Monitor, null, HttpStatusCode.BadRequest);
        await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/observations", new { observedAt = DateTimeOffset.UtcNow, sensor = "drone", latitude = 48.5, longitude = 38.0, weaponClass = "mlrs", count = 1 },
            Roles.Liaison, "RU", HttpStatusCode.Forbidden);
        await SendAsync(HttpMethod.Post, $"/pullbacks/{id}/verdict", null, Roles.Monitor, null, HttpStatusCode.Forbidden);
        Assert.Equal(afterCreate, await fixture.EventsAsync());
    }
}
