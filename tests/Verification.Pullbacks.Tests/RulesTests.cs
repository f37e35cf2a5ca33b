using Microsoft.Extensions.Configuration;
using Verification.Pullbacks.Domain;
using Verification.ServiceDefaults;

namespace Verification.Pullbacks.Tests;

public sealed class RulesTests
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly Actor Verifier = new("verifier-1", Roles.Verifier, null);
    private static readonly PartyDirectory Parties = new(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        { ["Parties:0:Code"] = "UA", ["Parties:1:Code"] = "RU" }).Build());

    /// <summary>A line of contact along the 48th parallel from 37°E to 39°E.</summary>
    public static readonly double[][] LineOfContact = [[37.0, 48.0], [39.0, 48.0]];

    [Theory]
    [InlineData(48.9, 38.0, 100.08)]    // 0.9° of latitude north of the line: 0.9 × 111.195 km
    [InlineData(47.5, 38.0, 55.60)]     // half a degree south
    [InlineData(48.0, 40.0, 74.40)]     // one degree of longitude east of the line's end, at 48°N (cos 48° × 111.195 km, to 0.1 %)
    public void Distances_to_the_line_match_great_circle_values(double latitude, double longitude, double expectedKm)
    {
        var line = Geometry.Line(LineOfContact).Line!;
        Assert.InRange(Geometry.DistanceKm(line, latitude, longitude), expectedKm * 0.995, expectedKm * 1.005);
    }

    [Fact]
    public void Polygons_are_validated_and_contain_what_they_should()
    {
        var (square, problem) = Geometry.Polygon([[37, 47], [38, 47], [38, 48], [37, 48], [37, 47]]);
        Assert.Null(problem);
        Assert.True(Geometry.Contains(square!, 47.5, 37.5));
        Assert.False(Geometry.Contains(square!, 48.5, 37.5));
        Assert.Contains("invalid polygon", Geometry.Polygon([[37, 47], [38, 48], [38, 47], [37, 48], [37, 47]]).Problem);   // a bow tie
        Assert.NotNull(Geometry.Polygon([[37, 47], [38, 47], [38, 48], [37, 48]]).Problem);                                 // not closed
        Assert.NotNull(Geometry.Polygon([[200, 47], [38, 47], [38, 48], [200, 47]]).Problem);                              // out of range
    }

    public static Commitment MlrsCommitment(int requiredClearDays = 3) =>
        (Commitment)Rules.Commit("pb-1", "RU", [WeaponClass.Mlrs], new Zone(Line: LineOfContact), Now.AddDays(14),
            [new HoldingSite("site-1", "Depot North", 49.5, 38.0, WeaponClass.Mlrs, 12)], requiredClearDays, 0.8, 30, Verifier, Parties, Now)
        .Aggregate((Commitment?)null, Commitment.Evolve)!;

    private static ObservationRecorded Seen(double lat, double lon, WeaponClass weapon, int count, DateTimeOffset at) =>
        new("pb-1", "obs-" + Guid.NewGuid().ToString("N")[..6], at, Sensor.Drone, lat, lon, weapon, count, [], 0.9, [], false, "monitor-1", at);

    [Fact]
    public void A_prohibited_class_inside_70_km_after_the_deadline_is_a_violation_and_nothing_else_is()
    {
        var c = MlrsCommitment();
        var afterDeadline = Now.AddDays(15);
        Assert.IsType<ViolationDetected>(Rules.Observe(c, Seen(48.5, 38.0, WeaponClass.Mlrs, 4, afterDeadline))[1]);            // 55.6 km from the line
        Assert.Single(Rules.Observe(c, Seen(48.5, 38.0, WeaponClass.Mlrs, 4, Now.AddDays(3))));                                 // before the deadline
        Assert.Single(Rules.Observe(c, Seen(48.9, 38.0, WeaponClass.Mlrs, 4, afterDeadline)));                                  // 100 km: outside
        Assert.Single(Rules.Observe(c, Seen(48.5, 38.0, WeaponClass.Tank, 4, afterDeadline)));                                  // not a committed class
        Assert.True(((ObservationRecorded)Rules.Observe(c, Seen(48.5, 38.0, WeaponClass.Tank, 4, afterDeadline))[0]).InsideZone);
        Assert.Contains("latitude", Assert.Throws<Rejection>(() => Rules.Observe(c, Seen(95, 38.0, WeaponClass.Mlrs, 1, afterDeadline))).Errors!.Keys);
    }

    [Fact]
    public void Missing_weapons_are_flagged_access_denial_is_recorded_and_reappearance_noted()
    {
        var c = MlrsCommitment();
        var missing = Rules.Visit(c, new HoldingSiteVisited("pb-1", "site-1", Now.AddDays(16), [new SiteCheck(WeaponClass.Mlrs, SiteFinding.CountMatchingSerialsUnchecked, 9)], "m", Now.AddDays(16)));
        Assert.Equal("missing", ((HoldingSiteDiscrepancyFound)missing[1]).Kind);
        c = missing.Aggregate(c, (s, e) => Commitment.Evolve(s, e)!);
        var back = Rules.Visit(c, new HoldingSiteVisited("pb-1", "site-1", Now.AddDays(17), [new SiteCheck(WeaponClass.Mlrs, SiteFinding.SerialsMatching, 12)], "m", Now.AddDays(17)));
        Assert.Equal("reappeared", ((HoldingSiteDiscrepancyFound)back[1]).Kind);
        var denied = Rules.Visit(c, new HoldingSiteVisited("pb-1", "site-1", Now.AddDays(17), [new SiteCheck(WeaponClass.Mlrs, SiteFinding.AccessDenied, 0)], "m", Now.AddDays(17)));
        Assert.Equal("accessDenied", ((HoldingSiteDiscrepancyFound)denied[1]).Kind);
        Assert.Equal(422, Assert.Throws<Rejection>(() => Rules.Visit(c, new HoldingSiteVisited("pb-1", "site-9", Now, [new SiteCheck(WeaponClass.Mlrs, SiteFinding.Missing, 0)], "m", Now))).Status);
    }

    [Fact]
    public void Verified_complete_needs_consecutive_clear_days_and_every_declared_weapon_at_its_site()
    {
        var c = MlrsCommitment(requiredClearDays: 3);
        var deadline = DateOnly.FromDateTime(Now.AddDays(14).UtcDateTime);
        object[] clear = [new ZoneObservedClear("pb-1", deadline.AddDays(1), 0.9, Sensor.Drone, "m", Now), new ZoneObservedClear("pb-1", deadline.AddDays(2), 0.5, Sensor.Drone, "m", Now),
            new ZoneObservedClear("pb-1", deadline.AddDays(3), 0.9, Sensor.Drone, "m", Now), new ZoneObservedClear("pb-1", deadline.AddDays(4), 0.85, Sensor.Patrol, "m", Now)];
        c = clear.Aggregate(c, (s, e) => Commitment.Evolve(s, e)!);
        // Day 2's coverage is below the threshold: the streak is 2, not 4.
        Assert.Equal(409, Assert.Throws<Rejection>(() => Rules.Decide(c, Verifier, Now.AddDays(19))).Status);
        c = Commitment.Evolve(c, new ZoneObservedClear("pb-1", deadline.AddDays(5), 0.95, Sensor.SatelliteImagery, "m", Now))!;
        Assert.Contains("1 sites unaccounted", Assert.Throws<Rejection>(() => Rules.Decide(c, Verifier, Now.AddDays(19))).Message, StringComparison.Ordinal);
        c = Rules.Visit(c, new HoldingSiteVisited("pb-1", "site-1", Now.AddDays(18), [new SiteCheck(WeaponClass.Mlrs, SiteFinding.SerialsMatching, 12)], "m", Now.AddDays(18)))
            .Aggregate(c, (s, e) => Commitment.Evolve(s, e)!);
        var verdict = (CommitmentStatusChanged)Rules.Decide(c, Verifier, Now.AddDays(19))[0];
        Assert.Equal(CommitmentStatus.VerifiedComplete, verdict.Status);
    }

    [Fact]
    public void A_violation_decides_violated_and_silence_past_the_deadline_decides_lapsed()
    {
        var c = MlrsCommitment();
        c = Rules.Observe(c, Seen(48.5, 38.0, WeaponClass.Mlrs, 2, Now.AddDays(15))).Aggregate(c, (s, e) => Commitment.Evolve(s, e)!);
        Assert.Equal(CommitmentStatus.Violated, ((CommitmentStatusChanged)Rules.Decide(c, Verifier, Now.AddDays(15))[0]).Status);
        Assert.Equal(CommitmentStatus.Lapsed, ((CommitmentStatusChanged)Rules.Decide(MlrsCommitment(), Verifier, Now.AddDays(45))[0]).Status);
        Assert.Equal(409, Assert.Throws<Rejection>(() => Rules.Decide(MlrsCommitment(), Verifier, Now.AddDays(2))).Status);
    }

    [Fact]
    public void Commitments_refuse_past_deadlines_unknown_classes_and_bad_zones()
    {
        Rejection Refused(Action a) => Assert.Throws<Rejection>(a);
        Assert.Contains("deadline", Refused(() => Rules.Commit("x", "RU", [WeaponClass.Mlrs], new Zone(Line: LineOfContact), Now.AddDays(-1), [], 7, 0.8, 30, Verifier, Parties, Now)).Errors!.Keys);
        Assert.Contains("weaponClasses", Refused(() => Rules.Commit("x", "RU", [(WeaponClass)42], new Zone(Line: LineOfContact), Now.AddDays(1), [], 7, 0.8, 30, Verifier, Parties, Now)).Errors!.Keys);
        Assert.Contains("zone.polygon", Refused(() => Rules.Commit("x", "RU", [WeaponClass.Mlrs], new Zone(Polygon: [[37, 47], [38, 48], [38, 47], [37, 48], [37, 47]]), Now.AddDays(1), [], 7, 0.8, 30, Verifier, Parties, Now)).Errors!.Keys);
        Assert.Contains("zone", Refused(() => Rules.Commit("x", "RU", [WeaponClass.Mlrs], new Zone(), Now.AddDays(1), [], 7, 0.8, 30, Verifier, Parties, Now)).Errors!.Keys);
        Assert.Contains("party", Refused(() => Rules.Commit("x", "XX", [WeaponClass.Mlrs], new Zone(Line: LineOfContact), Now.AddDays(1), [], 7, 0.8, 30, Verifier, Parties, Now)).Errors!.Keys);
    }
}
