using Verification.Compliance.Domain;
using Contract = Verification.Contracts;

namespace Verification.Compliance.Tests;

/// <summary>Given the facts about a subject, when a term is applied, then these determinations (pure, no database).</summary>
public sealed class EvaluationTests
{
    private static readonly DateTimeOffset T1 = new(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset T2 = new(2026, 11, 15, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset Now = new(2026, 11, 20, 12, 0, 0, TimeSpan.Zero);

    private static readonly Term EnergyTruce = new("energy", TermKind.NoStrikes, "No strikes on energy infrastructure", ["UA", "RU"], T1, T2,
        TargetTypes: ["energy"], Regions: ["Kharkiv", "Kyiv"]);

    private static int _messages;

    private static Subject Facts(params object[] messages) =>
        messages.Aggregate((Subject?)null, (s, m) => Subject.Evolve(s, m, new Input("test", m.GetType().Name, Guid.NewGuid(), Subject.Of(m)!.Value.Id, ++_messages)))!;

    private static Contract.IncidentFiled Filed(DateTimeOffset at, string region = "Kharkiv", string target = "energySubstation") =>
        new("inc-1", at, null, 49.99, 36.23, region, "missileStrike", [target], "RU", "high", 0, 0, at.AddHours(1));

    private static Contract.IncidentGraded Graded(int revision, string grade, string? party, DateTimeOffset at, string region = "Kharkiv", string target = "energySubstation") =>
        new("inc-1", revision, grade, party is null ? "undetermined" : "party", party, null, at, 49.99, 36.23, region, "missileStrike", [target], "high", at.AddDays(1));

    private static IReadOnlyList<TermEvaluated> Decide(Term term, Subject subject, params TermEvaluated[] current) =>
        Evaluator.Decide("geneva", term, subject, Evaluator.Evaluate(term, subject, []), current.ToDictionary(c => c.Party), Now);

    [Fact]
    public void A_confirmed_strike_on_energy_inside_the_scope_is_a_violation_by_the_attributed_party_naming_its_inputs()
    {
        var at = T1.AddDays(3);
        var subject = Facts(Filed(at), Graded(1, "confirmed", "RU", at));
        var d = Assert.Single(Decide(EnergyTruce, subject));
        Assert.Equal(("RU", Outcome.Violation, 1, at), (d.Party, d.Outcome, d.Revision, d.OccurredAt));
        Assert.Equal("det-geneva-energy-inc-1-RU", d.DeterminationId);
        Assert.Equal(2, d.Inputs.Length);
        Assert.Contains("breaks \"No strikes on energy infrastructure\"", d.Grounds, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("before the period", -1, "Kharkiv", "energySubstation", "confirmed", "RU")]
    [InlineData("after the period", 20, "Kharkiv", "energySubstation", "confirmed", "RU")]
    [InlineData("outside the regions", 3, "Odesa", "energySubstation", "confirmed", "RU")]
    [InlineData("not an energy target", 3, "Kharkiv", "residential", "confirmed", "RU")]
    [InlineData("graded weak", 3, "Kharkiv", "energySubstation", "weak", "RU")]
    [InlineData("not attributed", 3, "Kharkiv", "energySubstation", "confirmed", null)]
    [InlineData("a party the term does not bind", 3, "Kharkiv", "energySubstation", "confirmed", "XX")]
    public void Outside_the_scope_or_below_the_grade_there_is_no_determination(string why, int day, string region, string target, string grade, string? party)
    {
        var at = T1.AddDays(day);
        var subject = Facts(Filed(at, region, target), Graded(1, grade, party, at, region, target));
        Assert.True(Decide(EnergyTruce, subject).Count == 0, why);
    }

    [Fact]
    public void The_area_box_bounds_the_scope_in_space()
    {
        var at = T1.AddDays(3);
        var subject = Facts(Filed(at), Graded(1, "fair", "RU", at));
        Assert.Single(Decide(EnergyTruce with { Area = [36.0, 49.8, 36.5, 50.2] }, subject));
        Assert.Empty(Decide(EnergyTruce with { Area = [30.0, 50.0, 31.0, 51.0] }, subject));
    }

    [Fact]
    public void Regrading_revises_the_determination_and_keeps_the_first_in_history()
    {
        var at = T1.AddDays(3);
        var first = Assert.Single(Decide(EnergyTruce, Facts(Filed(at), Graded(1, "confirmed", "RU", at))));

        var weak = Decide(EnergyTruce, Facts(Filed(at), Graded(1, "confirmed", "RU", at), Graded(2, "weak", "RU", at)), first);
        var withdrawn = Assert.Single(weak);
        Assert.Equal((Outcome.None, Outcome.Violation, 2), (withdrawn.Outcome, withdrawn.PreviousOutcome, withdrawn.Revision));
        Assert.StartsWith("withdrawn: graded weak", withdrawn.Grounds, StringComparison.Ordinal);

        // Re-attributed to the other party: RU's determination is withdrawn, UA gets its own.
        var moved = Decide(EnergyTruce, Facts(Filed(at), Graded(1, "confirmed", "RU", at), Graded(2, "confirmed", "UA", at)), first);
        Assert.Equal(2, moved.Count);
        Assert.Contains(moved, d => d is { Party: "UA", Outcome: Outcome.Violation, Revision: 1 });
        Assert.Contains(moved, d => d is { Party: "RU", Outcome: Outcome.None, Revision: 2 });

        // The same facts again change nothing; an older grading arriving late does not undo a newer one.
        Assert.Empty(Decide(EnergyTruce, Facts(Filed(at), Graded(1, "confirmed", "RU", at)), first));
        Assert.Single(Decide(EnergyTruce, Facts(Filed(at), Graded(2, "weak", "RU", at), Graded(1, "confirmed", "RU", at)), first), d => d.Outcome == Outcome.None);
    }

    [Fact]
    public void A_retracted_report_withdraws_the_violation()
    {
        var at = T1.AddDays(3);
        var first = Assert.Single(Decide(EnergyTruce, Facts(Filed(at), Graded(1, "confirmed", "RU", at))));
        var after = Decide(EnergyTruce, Facts(Filed(at), Graded(1, "confirmed", "RU", at), new Contract.IncidentRetracted("inc-1", "filed in error", Now)), first);
        Assert.Contains("retracted: filed in error", Assert.Single(after).Grounds, StringComparison.Ordinal);
    }

    [Fact]
    public void A_strike_inside_an_acknowledged_repair_window_breaks_the_repair_window_term()
    {
        var at = T1.AddDays(3);
        var window = Facts(new Contract.PreNotificationAcknowledged("pn-1", "UA", "RU", "repairCrew", 50.0, 36.25, 5, "Kharkiv", at.AddHours(-2), at.AddHours(4), at.AddHours(-3)));
        var term = new Term("repairs", TermKind.RepairWindows, "Repair crews are not targeted", ["RU", "UA"], T1, T2);
        var subject = Facts(Filed(at), Graded(1, "confirmed", "RU", at));
        var d = Assert.Single(Evaluator.Decide("geneva", term, subject, Evaluator.Evaluate(term, subject, [window]), new Dictionary<string, TermEvaluated>(), Now));
        Assert.Contains("pn-1", d.Grounds, StringComparison.Ordinal);
        var elsewhere = Facts(new Contract.PreNotificationAcknowledged("pn-2", "UA", "RU", "repairCrew", 50.45, 30.52, 5, "Kyiv", at.AddHours(-2), at.AddHours(4), at));
        Assert.Empty(Evaluator.Evaluate(term, subject, [elsewhere]).Findings);
    }

    [Fact]
    public void An_alert_left_unacknowledged_is_a_breach_and_a_timely_acknowledgement_is_honoured()
    {
        var term = new Term("hotline", TermKind.HotlineAcknowledgement, "Acknowledge alerts", ["UA", "RU"], T1);
        var raised = new Contract.AlertRaised("alert-1", "incident", "inc-1", "RU", null, "critical", false, T1.AddDays(2), T1.AddDays(2).AddMinutes(15));
        Assert.Empty(Decide(term, Facts(raised)));
        var breach = Assert.Single(Decide(term, Facts(raised, new Contract.AlertExpiredUnacknowledged("alert-1", "incident", "inc-1", "RU", raised.RaisedAt, raised.DueAt, raised.DueAt))));
        Assert.Equal(("RU", Outcome.Breach), (breach.Party, breach.Outcome));
        var honoured = Assert.Single(Decide(term, Facts(raised, new Contract.AlertAcknowledged("alert-1", "incident", "inc-1", "RU", "investigating", false, 300, raised.RaisedAt.AddMinutes(5)))));
        Assert.Equal((Outcome.Honoured, 300.0), (honoured.Outcome, honoured.ResponseSeconds));
        var mediator = raised with { AlertId = "alert-2", Addressee = "US" };
        Assert.Empty(Decide(term, Facts(mediator, new Contract.AlertExpiredUnacknowledged("alert-2", "incident", "inc-1", "US", raised.RaisedAt, raised.DueAt, raised.DueAt))));
    }

    [Fact]
    public void An_exchange_is_judged_per_side_without_assuming_symmetry()
    {
        var term = new Term("exchange", TermKind.Exchange, "Exchange 157 for 157", ["UA", "RU"], T1, ExchangeId: "ex-1");
        var agreed = new Contract.ExchangeAgreed("ex-1", "UA", "RU", "AE", "ICRC", [], "border", DateOnly.FromDateTime(T1.AddDays(5).UtcDateTime), T1.AddDays(1));
        var completed = new Contract.ExchangeCompleted("ex-1", "partlyCompleted", false,
            [new Contract.SideCounts("UA", "prisonersOfWar", 157, 157, 157, 157, 157), new Contract.SideCounts("RU", "prisonersOfWar", 157, 157, 156, 156, 155)], T1.AddDays(5));
        var found = Decide(term, Facts(agreed, completed));
        Assert.Contains(found, d => d is { Party: "UA", Outcome: Outcome.Honoured });
        var ru = Assert.Single(found, d => d.Party == "RU");
        Assert.Equal(Outcome.Breach, ru.Outcome);
        Assert.Contains("155 of 157", ru.Grounds, StringComparison.Ordinal);
        Assert.Empty(Decide(term with { ExchangeId = "ex-2" }, Facts(agreed, completed)));
    }

    [Fact]
    public void A_pullback_violation_outweighs_later_verification_and_a_lapse_is_a_breach()
    {
        var term = new Term("pullback", TermKind.Pullback, "Pull back MLRS 70 km", ["RU"], T1);
        var committed = new Contract.PullbackCommitted("pb-1", "RU", ["mlrs"], T1.AddDays(14), T1);
        var violation = new Contract.PullbackViolationDetected("pb-1", "RU", "obs-1", "mlrs", 48.5, 38.0, T1.AddDays(15), T1.AddDays(15));
        Assert.Equal(Outcome.Violation, Assert.Single(Decide(term, Facts(committed, violation, new Contract.PullbackVerified("pb-1", "RU", "clear", T1.AddDays(30))))).Outcome);
        Assert.Equal(Outcome.Breach, Assert.Single(Decide(term, Facts(committed, new Contract.PullbackLapsed("pb-1", "RU", committed.Deadline, T1.AddDays(44))))).Outcome);
        Assert.Equal(Outcome.Honoured, Assert.Single(Decide(term, Facts(committed, new Contract.PullbackVerified("pb-1", "RU", "clear 7 days", T1.AddDays(21))))).Outcome);
    }
}
