namespace Verification.Compliance.Domain;

/// <summary>None means the term says nothing about this subject for this party (or no longer does, after a revision).</summary>
public enum Outcome { None, Violation, Breach, Honoured }

/// <summary>What a term makes of a subject for one party: the outcome, when the fact occurred, why, and for alerts the response time.</summary>
public sealed record Finding(string Party, Outcome Outcome, DateTimeOffset OccurredAt, string Grounds, double? ResponseSeconds = null);

/// <summary>The findings, and why there is no finding for anyone else (the grounds of a withdrawal).</summary>
public sealed record Evaluation(IReadOnlyList<Finding> Findings, string Otherwise);

/// <summary>
/// A determination: what one term of one agreement makes of one subject for one party, revision by revision.
/// The first revision is never "none"; later ones may be (withdrawn). Inputs name the messages it rests on.
/// </summary>
public sealed record TermEvaluated(string DeterminationId, string AgreementId, string TermId, TermKind TermKind, string SubjectId, SubjectKind SubjectKind,
    string Party, int Revision, Outcome Outcome, Outcome PreviousOutcome, DateTimeOffset OccurredAt, double? ResponseSeconds, string Grounds,
    Input[] Inputs, DateTimeOffset EvaluatedAt);

public static class Evaluator
{
    private static readonly string[] CountingGrades = ["confirmed", "fair"];

    public static string DeterminationId(string agreementId, string termId, string subjectId, string party) => $"det-{agreementId}-{termId}-{subjectId}-{party}";

    /// <summary>Applies a term to a subject. Repair windows are the acknowledged pre-notifications known now.</summary>
    public static Evaluation Evaluate(Term term, Subject subject, IReadOnlyList<Subject> repairWindows)
    {
        if (subject.Kind != term.Applies) return new([], "the term does not concern this kind of fact");
        return term.Kind switch
        {
            TermKind.NoStrikes or TermKind.RepairWindows => Strike(term, subject, repairWindows),
            TermKind.HotlineAcknowledgement => Hotline(term, subject),
            TermKind.Exchange => Exchange(term, subject),
            _ => Pullback(term, subject),
        };
    }

    private static Evaluation Strike(Term term, Subject s, IReadOnlyList<Subject> repairWindows)
    {
        if (s.Filed is not { } filed) return new([], "no report of the incident has arrived");
        if (s.Retracted is { } retracted) return new([], $"the report was retracted: {retracted.Reason}");
        if (s.Graded is not { } graded) return new([], "the incident is not graded yet");
        if (!CountingGrades.Contains(graded.Grade)) return new([], $"graded {graded.Grade} (revision {graded.Revision}); only confirmed or fair findings count");
        if (graded.AttributedParty is not { } party) return new([], $"the finding attributes it to no party ({graded.Attribution})");
        if (!term.PartiesBound.Contains(party)) return new([], $"attributed to {party}, which the term does not bind");
        if (!term.InPeriod(filed.OccurredFrom)) return new([], $"occurred {filed.OccurredFrom:u}, outside the term's period");
        var what = $"{graded.Grade} finding (revision {graded.Revision}) attributes incident {s.Id} ({graded.Category} on {string.Join(", ", graded.TargetTypes)}, {graded.Region}, {filed.OccurredFrom:u}) to {party}";
        if (term.Kind == TermKind.NoStrikes)
        {
            if (!term.InArea(graded.Region, graded.Latitude, graded.Longitude)) return new([], $"in {graded.Region}, outside the term's area");
            if (!term.CoversTargets(graded.TargetTypes)) return new([], $"targets {string.Join(", ", graded.TargetTypes)} are not covered by the term");
            return new([new Finding(party, Outcome.Violation, filed.OccurredFrom, what + $": breaks \"{term.Title}\"")], "");
        }
        var window = repairWindows.Select(w => w.RepairWindow!).FirstOrDefault(w => w.ToParty == party
            && filed.OccurredFrom >= w.WindowFrom && filed.OccurredFrom <= w.WindowTo
            && DistanceKm(w.Latitude, w.Longitude, graded.Latitude, graded.Longitude) <= w.RadiusKm);
        return window is null
            ? new([], "not inside any repair window the party acknowledged")
            : new([new Finding(party, Outcome.Violation, filed.OccurredFrom,
                what + $": inside the {window.ActivityKind} window {window.AlertId} notified by {window.FromParty} and acknowledged by {party}")], "");
    }

    private static Evaluation Hotline(Term term, Subject s)
    {
        if (s.Raised is not { } raised) return new([], "the alert has not been seen here");
        if (!term.PartiesBound.Contains(raised.Addressee)) return new([], $"addressed to {raised.Addressee}, which the term does not bind");
        if (!term.InPeriod(raised.RaisedAt)) return new([], "raised outside the term's period");
        var party = raised.Addressee;
        if (s.Expired is { } expired)
        {
            var late = s.Acknowledged is { } a ? $"; acknowledged late after {a.ResponseSeconds:0} s" : "";
            return new([new Finding(party, Outcome.Breach, raised.RaisedAt,
                $"alert {s.Id} was not acknowledged by {expired.DueAt:u}{late}", s.Acknowledged?.ResponseSeconds)], "");
        }
        if (s.Acknowledged is { } ack)
        {
            return new([new Finding(party, ack.Late ? Outcome.Breach : Outcome.Honoured, raised.RaisedAt,
                $"alert {s.Id} acknowledged ({ack.Response}) after {ack.ResponseSeconds:0} s{(ack.Late ? ", after its deadline" : "")}", ack.ResponseSeconds)], "");
        }
        return new([], $"awaiting acknowledgement until {raised.DueAt:u}");
    }

    private static Evaluation Exchange(Term term, Subject s)
    {
        if (s.ExchangeAgreed is not { } agreed) return new([], "the exchange agreement has not been seen here");
        if (term.ExchangeId is { } wanted && wanted != s.Id) return new([], "the term names another exchange");
        if (!term.InPeriod(agreed.AgreedAt)) return new([], "agreed outside the term's period");
        if (s.ExchangeCollapsed is { } collapsed) return new([], $"the exchange collapsed ({collapsed.Reason}); the ledger does not say which side failed");
        if (s.ExchangeCompleted is not { } completed) return new([], "the exchange is not completed");
        var findings = new List<Finding>();
        foreach (var party in new[] { agreed.PartyA, agreed.PartyB }.Where(term.PartiesBound.Contains))
        {
            var owed = completed.Counts.Where(c => c.ReleasingParty == party).Sum(c => c.Agreed);
            var received = completed.Counts.Where(c => c.ReleasingParty == party).Sum(c => c.ConfirmedReceived);
            findings.Add(received >= owed
                ? new Finding(party, Outcome.Honoured, completed.CompletedAt, $"{party} released {received} of {owed} agreed, confirmed by the receiving side ({completed.Outcome}, reciprocal: {completed.Reciprocal})")
                : new Finding(party, Outcome.Breach, completed.CompletedAt, $"{party} released {received} of {owed} agreed, confirmed by the receiving side ({completed.Outcome}, reciprocal: {completed.Reciprocal})"));
        }
        return new(findings, "the exchange does not involve this party");
    }

    private static Evaluation Pullback(Term term, Subject s)
    {
        if (s.Committed is not { } committed) return new([], "the commitment has not been seen here");
        if (term.CommitmentId is { } wanted && wanted != s.Id) return new([], "the term names another commitment");
        if (!term.PartiesBound.Contains(committed.Party)) return new([], $"committed by {committed.Party}, which the term does not bind");
        if (!term.InPeriod(committed.Deadline)) return new([], "due outside the term's period");
        if (s.PullbackViolations.Count > 0)
        {
            var first = s.PullbackViolations.MinBy(v => v.ObservedAt)!;
            return new([new Finding(committed.Party, Outcome.Violation, first.ObservedAt,
                $"{s.PullbackViolations.Count} observation(s) of withdrawn weapons inside the zone after the deadline: {string.Join(", ", s.PullbackViolations.Select(v => $"{v.WeaponClass} {v.ObservationId}"))}")], "");
        }
        if (s.PullbackVerified is { } verified) return new([new Finding(committed.Party, Outcome.Honoured, committed.Deadline, $"verified complete: {verified.Grounds}")], "");
        if (s.PullbackLapsed is { } lapsed) return new([new Finding(committed.Party, Outcome.Breach, committed.Deadline, $"lapsed at {lapsed.LapsedAt:u} without verification")], "");
        return new([], "not yet verified, violated or lapsed");
    }

    /// <summary>
    /// The determinations to record: a new revision wherever the outcome, time or response time changed, and a
    /// withdrawal ("none") for a party that had one and no longer has. Current: the latest revision per party.
    /// </summary>
    public static IReadOnlyList<TermEvaluated> Decide(string agreementId, Term term, Subject subject, Evaluation evaluation,
        IReadOnlyDictionary<string, TermEvaluated> current, DateTimeOffset now)
    {
        var decided = new List<TermEvaluated>();
        var inputs = subject.Inputs.ToArray();
        foreach (var f in evaluation.Findings.Where(f => f.Outcome != Outcome.None))
        {
            current.TryGetValue(f.Party, out var last);
            if (last is not null && last.Outcome == f.Outcome && last.OccurredAt == f.OccurredAt && last.ResponseSeconds == f.ResponseSeconds) continue;
            decided.Add(new TermEvaluated(DeterminationId(agreementId, term.TermId, subject.Id, f.Party), agreementId, term.TermId, term.Kind, subject.Id, subject.Kind,
                f.Party, (last?.Revision ?? 0) + 1, f.Outcome, last?.Outcome ?? Outcome.None, f.OccurredAt, f.ResponseSeconds, f.Grounds, inputs, now));
        }
        foreach (var (party, last) in current.Where(c => c.Value.Outcome != Outcome.None && evaluation.Findings.All(f => f.Party != c.Key || f.Outcome == Outcome.None)))
        {
            decided.Add(last with { Revision = last.Revision + 1, Outcome = Outcome.None, PreviousOutcome = last.Outcome, ResponseSeconds = null,
                Grounds = $"withdrawn: {evaluation.Otherwise}", Inputs = inputs, EvaluatedAt = now });
        }
        return decided;
    }

    private static double DistanceKm(double lat1, double lon1, double lat2, double lon2)
    {
        const double r = 6371.0088;
        double Rad(double d) => d * Math.PI / 180;
        var a = Math.Pow(Math.Sin(Rad(lat2 - lat1) / 2), 2) + Math.Cos(Rad(lat1)) * Math.Cos(Rad(lat2)) * Math.Pow(Math.Sin(Rad(lon2 - lon1) / 2), 2);
        return 2 * r * Math.Asin(Math.Sqrt(a));
    }
}
