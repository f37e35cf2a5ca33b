using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Verification.Compliance.Agreements;
using Verification.Compliance.Domain;
using Verification.Compliance.Facts;
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
            var actor = Actor.From(http.User);
            var (report, issued) = await IssueAsync(store, id, r.Day, CutoffAfterDay(configuration), clock.GetUtcNow(),
                new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party }, http.RequestAborted);
            if (report is null) return Results.Ok(new DailyReport(issued[^1], [.. issued.Select(i => i.Version)]));
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

    public static TimeSpan CutoffAfterDay(IConfiguration configuration) => configuration.GetValue("Compliance:DailyReportCutoff", TimeSpan.FromHours(6));

    /// <summary>Issues the day's report (version 1 at the cut-off, a new version when corrections changed it); null when nothing changed.</summary>
    public static async Task<(DailyReportIssued? Report, IReadOnlyList<DailyReportIssued> Before)> IssueAsync(EventStore.EventStore store, string id, DateOnly day,
        TimeSpan cutoffAfterDay, DateTimeOffset now, EventMetadata metadata, CancellationToken cancellationToken)
    {
        var issued = await IssuedAsync(store, id, day, cancellationToken);
        var dayStart = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        var cutoff = dayStart.AddDays(1) + cutoffAfterDay;
        var lastMoment = dayStart.AddDays(1).AddTicks(-1);
        var atCutoff = now >= cutoff ? await ComplianceHistory.AsOfAsync(store, cutoff, lastMoment, dayStart, id, null, cancellationToken) : [];
        var current = issued.Count > 0 ? await ComplianceHistory.AsOfAsync(store, now, lastMoment, dayStart, id, null, cancellationToken) : [];
        var report = Decide(id, day, cutoffAfterDay, issued, atCutoff, current, now);
        if (report is not null)
            await store.OpenSession(metadata).Append(StreamId(id, day), "daily_report", issued.Count, report).SaveChangesAsync(cancellationToken);
        return (report, issued);
    }

    private static async Task<IReadOnlyList<DailyReportIssued>> IssuedAsync(EventStore.EventStore store, string id, DateOnly day, CancellationToken cancellationToken) =>
        [.. (await store.ReadStreamAsync(StreamId(id, day), cancellationToken: cancellationToken)).Select(e => (DailyReportIssued)e.Data)];
}

/// <summary>
/// Freezes each agreement's daily report when its cut-off passes, without anyone asking, as a monitoring mission
/// issues its report every day: version 1 of every day in the agreement's terms (the last 31 days at most, to catch up
/// after downtime) once its cut-off has passed. One instance issues (advisory lock); a report issued on request
/// first is left alone. <c>Compliance:DailyReportCheck</c> (default one minute; 0 turns it off) is how often it looks.
/// </summary>
public sealed partial class DailyReportWorker([FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, IConfiguration configuration,
    TimeProvider clock, ILogger<DailyReportWorker> logger) : BackgroundService
{
    private readonly HashSet<string> _issued = [];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var every = configuration.GetValue("Compliance:DailyReportCheck", TimeSpan.FromMinutes(1));
        if (every <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(every, clock);
        do
        {
            try
            {
                await using var lease = await Lease.TryAcquireAsync(store, "daily-reports", stoppingToken);
                if (lease is not null) await IssueDueAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, e);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    private async Task IssueDueAsync(CancellationToken cancellationToken)
    {
        var cutoffAfterDay = DailyReports.CutoffAfterDay(configuration);
        var now = clock.GetUtcNow();
        // The last day whose cut-off (its end plus the offset) has passed.
        var lastDue = DateOnly.FromDateTime((now - cutoffAfterDay - TimeSpan.FromDays(1)).UtcDateTime);
        foreach (var agreement in await Judging.AgreementsAsync(store, cancellationToken))
        {
            try
            {
                await IssueAgreementAsync(agreement, lastDue, cutoffAfterDay, now, cancellationToken);
            }
            // One agreement's report that cannot be made must not keep the others' from being issued; it is tried again
            // at the next check. The database gone or the worker stopping ends the pass.
            catch (Exception e) when (!Verification.EventStore.Failures.IsTransient(e))
            {
                LogAgreementFailed(logger, e, agreement.AgreementId);
            }
        }
    }

    /// <summary>The agreement's reports for the days whose cut-off has passed (at most the last 30), each issued once.</summary>
    private async Task IssueAgreementAsync(Agreement agreement, DateOnly lastDue, TimeSpan cutoffAfterDay, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (agreement.Terms.Count == 0) return;
        var first = DateOnly.FromDateTime(agreement.Terms.Min(t => t.From).UtcDateTime);
        var last = agreement.Terms.All(t => t.To is not null) ? DateOnly.FromDateTime(agreement.Terms.Max(t => t.To!.Value).UtcDateTime) : lastDue;
        if (last > lastDue) last = lastDue;
        if (first < lastDue.AddDays(-30)) first = lastDue.AddDays(-30);
        for (var day = first; day <= last; day = day.AddDays(1))
        {
            var stream = DailyReports.StreamId(agreement.AgreementId, day);
            if (_issued.Contains(stream)) continue;
            if ((await store.ReadStreamAsync(stream, cancellationToken: cancellationToken)).Count == 0)
            {
                try
                {
                    await DailyReports.IssueAsync(store, agreement.AgreementId, day, cutoffAfterDay, now,
                        new EventMetadata { ActorSub = "compliance", ActorRole = "system" }, cancellationToken);
                }
                catch (Verification.EventStore.ConcurrencyException)
                {
                    // issued on request at the same moment: that one stands
                }
            }
            _issued.Add(stream);
        }
    }

    [LoggerMessage(Level = LogLevel.Error,
        Message = "Daily reports of agreement {AgreementId} could not be issued; the other agreements' are, and it is tried again at the next check")]
    private static partial void LogAgreementFailed(ILogger logger, Exception exception, string agreementId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Daily report worker failed; trying again at the next check")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
