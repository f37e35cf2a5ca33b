using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Verification.Compliance.Domain;
using Verification.EventStore;
using Verification.ServiceDefaults;

namespace Verification.Compliance.History;

/// <summary>Per party, term and day (of occurrence): each determination's current outcome and response time.</summary>
public sealed record DailyCompliance(string Party, string AgreementId, string TermId, TermKind TermKind, DateOnly Day,
    Dictionary<string, Outcome> Outcomes, Dictionary<string, double> ResponseSeconds);

/// <summary>What a reader gets: counts and hotline response times (exact median and p90 of the samples; missed = breaches).</summary>
public sealed record ComplianceLine(string Party, string AgreementId, string TermId, TermKind TermKind, DateOnly? Day, int Violations, int Breaches, int Honoured,
    double? MedianResponseSeconds, double? P90ResponseSeconds, int Missed);

public sealed record DeterminationRevision(long Version, DateTimeOffset RecordedAt, Guid EventId, TermEvaluated Determination);

public sealed record BitemporalSummary(DateTimeOffset RecordedAsOf, DateTimeOffset? OccurredUpTo, IReadOnlyList<ComplianceLine> Lines);

public static class ComplianceHistory
{
    public const string DailyView = "compliance_daily";

    /// <summary>The async projection over this service's own log; a determination's day is the day its fact occurred (UTC).</summary>
    public static DocumentProjection<DailyCompliance> View() => new(DailyView,
        e => e.Data is TermEvaluated t ? $"{t.Party}|{t.AgreementId}|{t.TermId}|{DateOnly.FromDateTime(t.OccurredAt.UtcDateTime):yyyy-MM-dd}" : null,
        (doc, e) =>
        {
            var t = (TermEvaluated)e.Data;
            doc ??= new DailyCompliance(t.Party, t.AgreementId, t.TermId, t.TermKind, DateOnly.FromDateTime(t.OccurredAt.UtcDateTime), [], []);
            if (t.Outcome == Outcome.None) doc.Outcomes.Remove(t.DeterminationId);
            else doc.Outcomes[t.DeterminationId] = t.Outcome;
            if (t.ResponseSeconds is { } seconds && t.Outcome != Outcome.None) doc.ResponseSeconds[t.DeterminationId] = seconds;
            else doc.ResponseSeconds.Remove(t.DeterminationId);
            return doc;
        });

    public static ComplianceLine Line(string party, string agreementId, string termId, TermKind kind, DateOnly? day, IReadOnlyCollection<Outcome> outcomes, IEnumerable<double> seconds)
    {
        var sorted = seconds.Order().ToArray();
        var breaches = outcomes.Count(o => o == Outcome.Breach);
        return new ComplianceLine(party, agreementId, termId, kind, day, outcomes.Count(o => o == Outcome.Violation), breaches, outcomes.Count(o => o == Outcome.Honoured),
            Percentile(sorted, 0.5), Percentile(sorted, 0.9), kind == TermKind.HotlineAcknowledgement ? breaches : 0);
    }

    /// <summary>Nearest-rank percentile of sorted samples.</summary>
    public static double? Percentile(double[] sorted, double p) => sorted.Length == 0 ? null : sorted[Math.Max(0, (int)Math.Ceiling(p * sorted.Length) - 1)];

    /// <summary>
    /// Bitemporal: the determinations as recorded up to <paramref name="recordedAsOf"/> (what was known then), for facts
    /// that occurred up to <paramref name="occurredUpTo"/> (what had happened by then). Read from the log itself.
    /// </summary>
    public static async Task<IReadOnlyList<TermEvaluated>> AsOfAsync(EventStore.EventStore store, DateTimeOffset recordedAsOf, DateTimeOffset? occurredUpTo,
        DateTimeOffset? occurredFrom, string? agreementId, string? party, CancellationToken cancellationToken)
    {
        await using var command = store.DataSource.CreateCommand(
            $"""
            SELECT data::text FROM (
              SELECT DISTINCT ON (stream_id) data FROM {store.Schema}.events
              WHERE type = 'term_evaluated' AND recorded_at <= @recorded
                AND (@agreement::text IS NULL OR data->>'agreementId' = @agreement) AND (@party::text IS NULL OR data->>'party' = @party)
              ORDER BY stream_id, version DESC) latest
            ORDER BY data->>'determinationId'
            """);
        command.Parameters.AddWithValue("recorded", recordedAsOf);
        command.Parameters.Add(new Npgsql.NpgsqlParameter<string?>("agreement", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = agreementId });
        command.Parameters.Add(new Npgsql.NpgsqlParameter<string?>("party", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = party });
        var found = new List<TermEvaluated>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var t = JsonSerializer.Deserialize<TermEvaluated>(reader.GetString(0), EventTypes.Json)!;
            if ((occurredUpTo is null || t.OccurredAt <= occurredUpTo) && (occurredFrom is null || t.OccurredAt >= occurredFrom)) found.Add(t);
        }
        return found;
    }

    public static IReadOnlyList<ComplianceLine> Summarize(IEnumerable<TermEvaluated> determinations) =>
        [.. determinations.Where(d => d.Outcome != Outcome.None).GroupBy(d => (d.Party, d.AgreementId, d.TermId, d.TermKind))
            .OrderBy(g => g.Key.Party, StringComparer.Ordinal).ThenBy(g => g.Key.AgreementId, StringComparer.Ordinal).ThenBy(g => g.Key.TermId, StringComparer.Ordinal)
            .Select(g => Line(g.Key.Party, g.Key.AgreementId, g.Key.TermId, g.Key.TermKind, null, [.. g.Select(d => d.Outcome)], g.Where(d => d.ResponseSeconds is not null).Select(d => d.ResponseSeconds!.Value)))];

    public static void Map(RouteGroupBuilder group)
    {
        group.MapGet("/daily", async (HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, string? party, string? agreement,
            DateOnly? from, DateOnly? to) =>
        {
            if (from > to) throw Rejection.Invalid(new Dictionary<string, string[]> { ["from"] = ["must not be after to"] });
            var docs = await store.QueryDocumentsAsync<DailyCompliance>(DailyView,
                "(@party::text IS NULL OR d.data->>'party' = @party) AND (@agreement::text IS NULL OR d.data->>'agreementId' = @agreement) " +
                "AND (@from::text IS NULL OR d.data->>'day' >= @from) AND (@to::text IS NULL OR d.data->>'day' <= @to)",
                p =>
                {
                    p.Add(new Npgsql.NpgsqlParameter<string?>("party", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = party });
                    p.Add(new Npgsql.NpgsqlParameter<string?>("agreement", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = agreement });
                    p.Add(new Npgsql.NpgsqlParameter<string?>("from", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = from?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) });
                    p.Add(new Npgsql.NpgsqlParameter<string?>("to", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = to?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) });
                }, orderBy: "d.data->>'day', d.id", limit: 10_000, cancellationToken: http.RequestAborted);
            return TypedResults.Ok(docs.Select(d => Line(d.Party, d.AgreementId, d.TermId, d.TermKind, d.Day, d.Outcomes.Values, d.ResponseSeconds.Values)).ToList());
        });

        group.MapGet("/summary", async (HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, TimeProvider clock,
            string? party, string? agreement, DateTimeOffset? recordedAsOf, DateTimeOffset? occurredUpTo) =>
        {
            var asOf = recordedAsOf ?? clock.GetUtcNow();
            var found = await AsOfAsync(store, asOf, occurredUpTo, null, agreement, party, http.RequestAborted);
            return TypedResults.Ok(new BitemporalSummary(asOf, occurredUpTo, Summarize(found)));
        });

        group.MapGet("/determinations", async (HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, string? subject, string? party, string? agreement) =>
            TypedResults.Ok(await store.QueryDocumentsAsync<TermEvaluated>(ComplianceModule.DeterminationsView,
                "(@subject::text IS NULL OR d.data->>'subjectId' = @subject) AND (@party::text IS NULL OR d.data->>'party' = @party) AND (@agreement::text IS NULL OR d.data->>'agreementId' = @agreement)",
                p =>
                {
                    p.Add(new Npgsql.NpgsqlParameter<string?>("subject", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = subject });
                    p.Add(new Npgsql.NpgsqlParameter<string?>("party", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = party });
                    p.Add(new Npgsql.NpgsqlParameter<string?>("agreement", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = agreement });
                }, limit: 1000, cancellationToken: http.RequestAborted)));

        // Every revision with what it rests on: follow Inputs to the messages kept in the subject's stream, and from there
        // (the subject id) to the other service's own record.
        group.MapGet("/determinations/{id}", async (string id, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store) =>
        {
            var events = await store.ReadStreamAsync(id, cancellationToken: http.RequestAborted);
            if (events.Count == 0 || events[0].Data is not TermEvaluated) throw Rejection.NotFound($"determination {id} does not exist");
            return TypedResults.Ok(events.Select(e => new DeterminationRevision(e.Version, e.RecordedAt, e.Id, (TermEvaluated)e.Data)).ToList());
        });

        group.MapGet("/subjects/{kind}/{id}", async (SubjectKind kind, string id, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store) =>
        {
            var (subject, _) = await Facts.Judging.LoadSubjectAsync(store, Subject.StreamId(kind, id), http.RequestAborted);
            return subject is null ? throw Rejection.NotFound($"nothing is known here about {kind} {id}") : TypedResults.Ok(subject);
        });
    }
}
