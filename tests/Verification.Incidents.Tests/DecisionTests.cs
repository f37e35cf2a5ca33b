using Microsoft.Extensions.Configuration;
using Verification.Incidents.Disputes;
using Verification.Incidents.Domain;
using Verification.Incidents.Filing;
using Verification.Incidents.Grading;
using Verification.Incidents.Linking;
using Verification.Incidents.Retracting;
using Verification.Incidents.Sources;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Tests;

/// <summary>Given events, when a command, then events or a rejection: no database.</summary>
public sealed class DecisionTests
{
    private static readonly DateTimeOffset Now = new(2026, 2, 3, 6, 0, 0, TimeSpan.Zero);
    private static readonly Actor Monitor = new("monitor-1", Roles.Monitor, null);
    private static readonly Actor Verifier = new("verifier-1", Roles.Verifier, null);
    private static readonly PartyDirectory Parties = new(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Parties:0:Code"] = "UA", ["Parties:1:Code"] = "RU", ["Mediators:0:Code"] = "US",
    }).Build());

    public static FileIncidentRequest Barrage(int missiles = 29) => new(
        Now.AddHours(-3), TimePrecision.Exact, new Location(49.99, 36.23, "Kharkiv", LocationPrecision.Exact, "Kharkiv city", "UA"),
        Category.MissileStrike, [TargetType.Medical, TargetType.Residential], "Strike on a maternity hospital",
        Figures: new Figures(Missiles: new Estimate(missiles, missiles, missiles), Injured: new Estimate(19, 19, 30)),
        AllegedParty: "RU",
        Evidence: [new Evidence(new string('a', 64), "image/jpeg", 1024, Now.AddHours(-2), 49.99, 36.23)]);

    private static Incident Given(params object[] events) => events.Aggregate((Incident?)null, Incident.Evolve)!;
    private static Incident Filed(FileIncidentRequest? request = null) => Given(FileIncident.Decide("inc-1", request ?? Barrage(), Monitor, Parties, Now));

    private static Rejection Rejected(Action decide)
    {
        var rejection = Assert.Throws<Rejection>(decide);
        return rejection;
    }

    [Fact]
    public void Filing_records_the_report_and_the_monitors_own_figures_as_the_first_source()
    {
        var events = FileIncident.Decide("inc-1", Barrage(), Monitor, Parties, Now);
        var filed = Assert.IsType<IncidentFiled>(events[0]);
        var source = Assert.IsType<SourceReported>(events[1]);
        Assert.Equal(("inc-1", "monitor-1", Now), (filed.IncidentId, filed.FiledBy, filed.FiledAt));
        Assert.Equal(29, source.Figures.Missiles!.Best);
        Assert.Equal(SourceKind.MissionPatrol, source.Kind);
        Assert.Equal(Contracts.Severity.Critical, Given(events).Severity());
    }

    [Theory]
    [InlineData("occurredFrom")]
    [InlineData("location.latitude")]
    [InlineData("figures.injured")]
    [InlineData("narrative")]
    [InlineData("allegedParty")]
    [InlineData("evidence[0].sha256")]
    [InlineData("targetTypes")]
    public void Bad_reports_are_refused_naming_the_field(string field)
    {
        var r = Barrage();
        r = field switch
        {
            "occurredFrom" => r with { OccurredFrom = Now.AddDays(1) },
            "location.latitude" => r with { Location = r.Location with { Latitude = 91 } },
            "figures.injured" => r with { Figures = r.Figures! with { Injured = new Estimate(30, 19, 40) } },
            "narrative" => r with { Narrative = new string('x', Rules.MaxText + 1) },
            "allegedParty" => r with { AllegedParty = "XX" },
            "evidence[0].sha256" => r with { Evidence = [r.Evidence![0] with { Sha256 = "abc" }] },
            "targetTypes" => r with { TargetTypes = [] },
            _ => r,
        };
        var rejection = Rejected(() => FileIncident.Decide("inc-1", r, Monitor, Parties, Now));
        Assert.Equal(400, rejection.Status);
        Assert.Contains(field, rejection.Errors!.Keys);
    }

    [Fact]
    public void Negative_counts_and_undefined_enum_values_are_refused()
    {
        var r = Barrage() with { Figures = new Figures(Killed: new Estimate(-1, 0, 0)), Category = (Category)99 };
        var rejection = Rejected(() => FileIncident.Decide("inc-1", r, Monitor, Parties, Now));
        Assert.Contains("figures.killed", rejection.Errors!.Keys);
        Assert.Contains("category", rejection.Errors!.Keys);
    }

    [Fact]
    public void Every_source_is_kept_and_the_best_figure_is_the_most_conservative_unless_overridden()
    {
        var incident = Filed();
        var report = new AddSourceReportRequest(SourceKind.PartyStatement, "UA Air Force", new Figures(Missiles: new Estimate(60, 62, 65)), Now.AddHours(-1), "UA", "statement");
        incident = Given([.. FileIncident.Decide("inc-1", Barrage(), Monitor, Parties, Now), .. AddSourceReport.Decide(incident, report, Monitor, Parties, Now)]);
        Assert.Equal(2, incident.Sources.Count);
        Assert.Equal(new Estimate(29, 29, 65), incident.Range().Missiles);
        Assert.Equal(29, incident.Best().Missiles!.Best);

        var overridden = OverrideBestFigures.Decide(incident, new OverrideBestFiguresRequest(new Figures(Missiles: new Estimate(29, 45, 65)), "radar tracks"), Verifier, Now);
        var after = Incident.Evolve(incident, overridden[0])!;
        Assert.Equal(45, after.Best().Missiles!.Best);
        Assert.Equal(2, after.Sources.Count);
        Assert.Equal(29, after.Sources[0].Figures.Missiles!.Best);
    }

    [Fact]
    public void A_party_statement_must_name_its_party()
    {
        var rejection = Rejected(() => AddSourceReport.Decide(Filed(),
            new AddSourceReportRequest(SourceKind.PartyStatement, "General Staff", Figures.None, Now), Monitor, Parties, Now));
        Assert.Contains("party", rejection.Errors!.Keys);
    }

    [Fact]
    public void Grading_a_second_time_is_a_revision_that_needs_a_reason_and_keeps_the_first_finding()
    {
        var incident = Filed();
        var first = GradeIncident.Decide(incident, new GradeIncidentRequest(Grade.Fair, AttributionKind.Party, "two credible sources", "RU"), Verifier, Parties, Now);
        incident = Incident.Evolve(incident, first[0])!;
        Assert.Contains("reason", Rejected(() => GradeIncident.Decide(incident,
            new GradeIncidentRequest(Grade.Confirmed, AttributionKind.Party, "accepted", "RU"), Verifier, Parties, Now)).Errors!.Keys);

        var second = GradeIncident.Decide(incident, new GradeIncidentRequest(Grade.Contested, AttributionKind.Undetermined, "competing claims", Reason: "RU disputes"), Verifier, Parties, Now);
        incident = Incident.Evolve(incident, second[0])!;
        Assert.Equal([1, 2], incident.Findings.Select(f => f.Revision));
        Assert.Equal(Grade.Fair, incident.Findings[0].Grade);
        Assert.Equal(AttributionKind.Undetermined, incident.Finding!.Attribution.Kind);
    }

    [Fact]
    public void Attribution_to_a_party_names_a_known_party_and_only_then()
    {
        Assert.Contains("party", Rejected(() => GradeIncident.Decide(Filed(), new GradeIncidentRequest(Grade.Weak, AttributionKind.Party, "f", "US"), Verifier, Parties, Now)).Errors!.Keys);
        Assert.Contains("party", Rejected(() => GradeIncident.Decide(Filed(), new GradeIncidentRequest(Grade.Weak, AttributionKind.NotAttributable, "f", "RU"), Verifier, Parties, Now)).Errors!.Keys);
    }

    [Fact]
    public void A_liaison_officer_records_only_their_own_partys_position()
    {
        var ownParty = RecordPartyPosition.Decide(Filed(), new RecordPartyPositionRequest("RU", PartyPosition.Disputes, "not our strike"), new Actor("lo-ru", Roles.Liaison, "RU"), Parties, Now);
        Assert.IsType<PartyPositionRecorded>(ownParty[0]);
        Assert.Equal(403, Rejected(() => RecordPartyPosition.Decide(Filed(), new RecordPartyPositionRequest("RU", PartyPosition.AcceptsResponsibility, "x"),
            new Actor("lo-ua", Roles.Liaison, "UA"), Parties, Now)).Status);
    }

    [Fact]
    public void A_retracted_report_stays_but_takes_no_more_grading_or_sources()
    {
        var incident = Filed();
        Assert.Equal(403, Rejected(() => RetractIncident.Decide(incident, new RetractIncidentRequest("dup"), new Actor("monitor-2", Roles.Monitor, null), Now)).Status);
        incident = Incident.Evolve(incident, RetractIncident.Decide(incident, new RetractIncidentRequest("filed in error"), Monitor, Now)[0])!;
        Assert.True(incident.Retracted);
        Assert.Equal(409, Rejected(() => GradeIncident.Decide(incident, new GradeIncidentRequest(Grade.Weak, AttributionKind.Undetermined, "f"), Verifier, Parties, Now)).Status);
        Assert.Equal(409, Rejected(() => RetractIncident.Decide(incident, new RetractIncidentRequest("again"), Verifier, Now)).Status);
    }

    [Fact]
    public void Linking_refuses_itself_and_unknown_incidents()
    {
        var incident = Filed();
        Assert.Equal(422, Rejected(() => LinkIncident.Decide(incident, incident, new LinkIncidentRequest("inc-1"), Monitor, Now)).Status);
        Assert.Equal(422, Rejected(() => LinkIncident.Decide(incident, null, new LinkIncidentRequest("inc-9"), Monitor, Now)).Status);
        var other = Given(FileIncident.Decide("inc-2", Barrage(), Monitor, Parties, Now));
        Assert.IsType<IncidentLinked>(LinkIncident.Decide(incident, other, new LinkIncidentRequest("inc-2"), Monitor, Now)[0]);
    }

    [Fact]
    public void Distance_matches_a_known_value()
    {
        // Kyiv (50.4501, 30.5234) to Kharkiv (49.9935, 36.2304): about 410 km.
        Assert.InRange(Rules.DistanceKm(50.4501, 30.5234, 49.9935, 36.2304), 405, 415);
    }
}
