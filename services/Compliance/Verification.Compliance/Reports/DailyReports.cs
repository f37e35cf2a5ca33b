using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Verification.Compliance.Agreements;
using Verification.Compliance.Domain;
using Verification.Compliance.History;
using Verification.EventStore;
using Verification.ServiceDefaults;

namespace Verification.Compliance.Reports;

public sealed record IssueDailyReport(DateOnly Day);

/// <summary>
/// A day's report for an agreement, frozen like an OSCE daily report: version 1 holds what was known at the cut-off
/// (the end of the day plus <c>Compliance:DailyReportCutoff</c>); later issues add a version only if corrections
/// changed the content, never edit one. ContentHash is SHA-256 over the lines and determinations as JSON.
/// </summary>
public sealed record DailyReportIssued(string AgreementId, DateOnly Day, int Version, DateTimeOffset Cutoff, DateTimeOffset KnownAsOf,
    ComplianceLine[] Lines, string[] Determinations, string ContentHash, DateTimeOffset IssuedAt);

public sealed record DailyReport(DailyReportIssued Report, int[] Versions);

public static class DailyReports
{
    public static string StreamId(string agreementId, DateOnly day) => $"report-{agreementId}-{day:yyyy-MM-dd}";

    /// <summary>Decides whether to issue: not before the cut-off; a new version only when the content changed.</summary>
    public static DailyReportIssued? Decide(string agreementId, DateOnly day, TimeSpan cutoffAfterDay, IReadOnlyList<DailyReportIssued> issued,
        IReadOnlyList<TermEvaluated> knownAtCutoff, IReadOnlyList<TermEvaluated> knownNow, DateTimeOffset now)
    {
        var cutoff = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero).AddDays(1) + cutoffAfterDay;
        if (now < cutoff) throw Rejection.Conflict($"the report for {day:yyyy-MM-dd} can be issued from {cutoff:u}, its cut-off");
        var (basis, asOf) = issued.Count == 0 ? (knownAtCutoff, cutoff) : (knownNow, now);
        var lines = ComplianceHistory.Summarize(basis).ToArray();
        var determinations = basis.Where(d => d.Outcome != Outcome.None).Select(d => $"{d.DeterminationId}@{d.Revision}").Order(StringComparer.Ordinal).ToArray();
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { lines, determinations }, EventTypes.Json))));
        if (issued.Count > 0 && issued[^1].ContentHash == hash) return null;
        return new DailyReportIssued(agreementId, day, issued.Count + 1, cutoff, asOf, lines, determinations, hash, now);
    }

    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/{id}/daily-reports", async (string id, IssueDailyReport r, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store,
            IConfiguration configuration, TimeProvider clock) =>
        {
            await Concluding.LoadAsync(store, id, http.RequestAborted);
            var now = clock.GetUtcNow();
            var cutoffAfterDay = configuration.GetValue("Compliance:DailyReportCutoff", TimeSpan.FromHours(6));
            var issued = await IssuedAsync(store, id, r.Day, http.RequestAborted);
            var dayStart = new DateTimeOffset(r.Day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
            var cutoff = dayStart.AddDays(1) + cutoffAfterDay;
            var lastMoment = dayStart.AddDays(1).AddTicks(-1);
            var atCutoff = now >= cutoff ? await ComplianceHistory.AsOfAsync(store, cutoff, lastMoment, dayStart, id, null, http.RequestAborted) : [];
            var current = issued.Count > 0 ? await ComplianceHistory.AsOfAsync(store, now, lastMoment, dayStart, id, null, http.RequestAborted) : [];
            var report = Decide(id, r.Day, cutoffAfterDay, issued, atCutoff, current, now);
            if (report is null) return Results.Ok(new DailyReport(issued[^1], [.. issued.Select(i => i.Version)]));
            var actor = Actor.From(http.User);
            await store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party })
                .Append(StreamId(id, r.Day), "daily_report", issued.Count, report).SaveChangesAsync(http.RequestAborted);
            return Results.Created($"/agreements/{id}/daily-reports/{r.Day:yyyy-MM-dd}?version={report.Version}",
                new DailyReport(report, [.. issued.Select(i => i.Version), report.Version]));
        }).RequireAuthorization(p => p.RequireRole(Roles.Admin, Roles.Verifier));

        group.MapGet("/{id}/daily-reports/{day}", async (string id, string day, int? version, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store) =>
        {
            if (!DateOnly.TryParseExact(day, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
                throw Rejection.Invalid(new Dictionary<string, string[]> { ["day"] = ["a date as yyyy-MM-dd"] });
            var issued = await IssuedAsync(store, id, date, http.RequestAborted);
            if (issued.Count == 0) throw Rejection.NotFound($"no report for {id} on {day} has been issued");
            var chosen = version is { } v ? issued.FirstOrDefault(i => i.Version == v) ?? throw Rejection.NotFound($"the report has no version {v}") : issued[^1];
            return TypedResults.Ok(new DailyReport(chosen, [.. issued.Select(i => i.Version)]));
        });
    }

    private static async Task<IReadOnlyList<DailyReportIssued>> IssuedAsync(EventStore.EventStore store, string id, DateOnly day, CancellationToken cancellationToken) =>
        [.. (await store.ReadStreamAsync(StreamId(id, day), cancellationToken: cancellationToken)).Select(e => (DailyReportIssued)e.Data)];
}
