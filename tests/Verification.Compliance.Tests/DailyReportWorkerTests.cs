using System.Globalization;
using System.Net;
using System.Text.Json;
using Verification.ServiceDefaults;
using Verification.Testing;

namespace Verification.Compliance.Tests;

/// <summary>The compliance service with its daily report worker looking every 200 ms.</summary>
public sealed class ReportingHost : ServiceFixture
{
    protected override Task<ServiceHost> StartAsync(IDictionary<string, string?> settings)
    {
        settings["Compliance:DailyReportCheck"] = "00:00:00.2";
        return ServiceHost.StartAsync(ComplianceModule.Name, settings, null, a => a.MapComplianceApi(), configure: o => o.Modules.Add(b => b.AddCompliance(o)));
    }
}

public sealed class DailyReportWorkerTests(ReportingHost fixture) : IClassFixture<ReportingHost>
{
    private static string Day(DateTimeOffset at) => DateOnly.FromDateTime(at.UtcDateTime).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    [Fact]
    public async Task Each_day_past_its_cut_off_gets_version_one_without_anyone_asking_and_today_does_not()
    {
        var now = DateTimeOffset.UtcNow;
        var from = now.Date.AddDays(-3);
        using (var concluded = await fixture.Host.SendAsync(HttpMethod.Post, "/agreements", new
        {
            agreementId = "truce-auto", title = "Energy truce", parties = new[] { "UA", "RU" }, mediator = "US",
            terms = new[] { new { termId = "energy", kind = "noStrikes", title = "No strikes on energy infrastructure", partiesBound = new[] { "UA", "RU" },
                from = new DateTimeOffset(from, TimeSpan.Zero), targetTypes = new[] { "energy" } } },
        }, Roles.Verifier))
            Assert.Equal(HttpStatusCode.Created, concluded.StatusCode);

        // Two days ago is past its cut-off (its end plus six hours) whatever the hour now.
        var twoDaysAgo = Day(now.AddDays(-2));
        var report = await Eventually.Get(async () =>
        {
            using var response = await fixture.Host.SendAsync(HttpMethod.Get, $"/agreements/truce-auto/daily-reports/{twoDaysAgo}", null, Roles.Auditor);
            return response.IsSuccessStatusCode ? JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone() : (JsonElement?)null;
        }, TimeSpan.FromSeconds(30), "the worker to issue the report of two days ago");
        Assert.Equal(1, report.GetProperty("report").GetProperty("version").GetInt32());
        Assert.Equal([1], report.GetProperty("versions").EnumerateArray().Select(v => v.GetInt32()));

        // Issued once: later checks leave it alone; today's cut-off is tomorrow. The worker issues the days past their
        // cut-off one after another (yesterday's too, from 06:00 UTC): wait for all of them first, or a busy machine
        // finds one still being issued.
        var pastCutOff = Enumerable.Range(1, 3).Count(back => now.Date.AddDays(1 - back).AddHours(6) <= now.UtcDateTime);
        await Eventually.True(async () => await fixture.CountAsync("SELECT count(*) FROM compliance.events WHERE type = 'daily_report_issued'") == pastCutOff,
            TimeSpan.FromSeconds(30), $"a report for each of the {pastCutOff} days past their cut-off");
        var before = pastCutOff;
        await Task.Delay(TimeSpan.FromSeconds(1));   // five more checks of the worker
        Assert.Equal(before, await fixture.CountAsync("SELECT count(*) FROM compliance.events WHERE type = 'daily_report_issued'"));
        Assert.Equal(1, await fixture.CountAsync($"SELECT count(*) FROM compliance.events WHERE stream_id = 'report-truce-auto-{twoDaysAgo}'"));
        using var today = await fixture.Host.SendAsync(HttpMethod.Get, $"/agreements/truce-auto/daily-reports/{Day(now)}", null, Roles.Auditor);
        Assert.Equal(HttpStatusCode.NotFound, today.StatusCode);
    }
}

public sealed class DailyReportIsolationTests(ReportingHost fixture) : IClassFixture<ReportingHost>
{
    [Fact]
    public async Task An_agreement_whose_reports_cannot_be_read_does_not_keep_the_others_from_being_issued()
    {
        var now = DateTimeOffset.UtcNow;
        var twoDaysAgo = DateOnly.FromDateTime(now.AddDays(-2).UtcDateTime).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        // A report a newer version of the service wrote (schema version 99) for the agreement checked first: this code
        // refuses to read it, so it cannot tell whether that day was issued.
        await using (var connection = new Npgsql.NpgsqlConnection(fixture.Postgres.ConnectionString))
        {
            await connection.OpenAsync();
            await using var insert = new Npgsql.NpgsqlCommand(
                "INSERT INTO compliance.events (id, stream_id, version, type, data, metadata, recorded_at, hash) " +
                $"VALUES (gen_random_uuid(), 'report-a-newer-{twoDaysAgo}', 1, 'daily_report_issued', '{{}}', '{{\"schemaVersion\":99}}', now(), '\\x00')", connection);
            await insert.ExecuteNonQueryAsync();
        }
        foreach (var id in new[] { "a-newer", "b-current" })
        {
            using var concluded = await fixture.Host.SendAsync(HttpMethod.Post, "/agreements", new
            {
                agreementId = id, title = "Energy truce", parties = new[] { "UA", "RU" }, mediator = "US",
                terms = new[] { new { termId = "energy", kind = "noStrikes", title = "No strikes on energy infrastructure", partiesBound = new[] { "UA", "RU" },
                    from = new DateTimeOffset(now.Date.AddDays(-3), TimeSpan.Zero), targetTypes = new[] { "energy" } } },
            }, Roles.Verifier);
            Assert.Equal(HttpStatusCode.Created, concluded.StatusCode);
        }

        await Eventually.True(async () => await fixture.CountAsync($"SELECT count(*) FROM compliance.events WHERE stream_id = 'report-b-current-{twoDaysAgo}'") == 1,
            TimeSpan.FromSeconds(30), "the other agreement's report of two days ago");
        Assert.Equal(1, await fixture.CountAsync($"SELECT count(*) FROM compliance.events WHERE stream_id = 'report-a-newer-{twoDaysAgo}'"));
    }
}
