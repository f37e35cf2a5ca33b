using Verification.ServiceDefaults;

namespace Verification.Pullbacks.Domain;

public enum WeaponClass { ArtilleryOver100mm, Mlrs, HeavyMlrs, TacticalMissile, Tank, Mortar, Other }
public enum Sensor { Patrol, FixedCamera, Drone, SatelliteImagery }
public enum SiteFinding { SerialsMatching, CountMatchingSerialsUnchecked, Missing, AccessDenied }
public enum CommitmentStatus { Pending, InProgress, VerifiedComplete, Violated, Lapsed }

/// <summary>Either a polygon the weapons must leave, or a line of contact with a distance to keep (Minsk: 50/70/140 km by class).</summary>
public sealed record Zone(double[][]? Polygon = null, double[][]? Line = null, double? DistanceKm = null);

public sealed record HoldingSite(string SiteId, string Name, double Latitude, double Longitude, WeaponClass WeaponClass, int DeclaredCount, string[]? Serials = null);

public sealed record SiteCheck(WeaponClass WeaponClass, SiteFinding Finding, int CountSeen, string[]? SerialsSeen = null);

// Events of a commitment stream ("pb-…").
public sealed record PullbackCommitted(string CommitmentId, string Party, WeaponClass[] WeaponClasses, Zone Zone, DateTimeOffset Deadline,
    HoldingSite[] HoldingSites, int RequiredClearDays, double CoverageThreshold, int VerificationWindowDays, string By, DateTimeOffset CommittedAt);
public sealed record ObservationRecorded(string CommitmentId, string ObservationId, DateTimeOffset ObservedAt, Sensor Sensor, double Latitude, double Longitude,
    WeaponClass WeaponClass, int Count, string[] Serials, double Confidence, string[] EvidenceSha256, bool InsideZone, string By, DateTimeOffset RecordedAt);
public sealed record ZoneObservedClear(string CommitmentId, DateOnly Day, double Coverage, Sensor Sensor, string By, DateTimeOffset RecordedAt);
public sealed record HoldingSiteVisited(string CommitmentId, string SiteId, DateTimeOffset VisitedAt, SiteCheck[] Checks, string By, DateTimeOffset RecordedAt);
public sealed record ViolationDetected(string CommitmentId, string ObservationId, string Grounds, DateTimeOffset DetectedAt);
public sealed record HoldingSiteDiscrepancyFound(string CommitmentId, string SiteId, string Kind, string Detail, DateTimeOffset FoundAt);
public sealed record CommitmentStatusChanged(string CommitmentId, CommitmentStatus Status, string Grounds, string By, DateTimeOffset ChangedAt);

public sealed record Commitment(PullbackCommitted Committed, CommitmentStatus Status, IReadOnlyList<ObservationRecorded> Observations,
    IReadOnlyList<ZoneObservedClear> ClearDays, IReadOnlyDictionary<string, HoldingSiteVisited> LastVisits, IReadOnlyList<ViolationDetected> Violations,
    IReadOnlyList<HoldingSiteDiscrepancyFound> Discrepancies)
{
    public string Id => Committed.CommitmentId;
    public bool Decided => Status is CommitmentStatus.VerifiedComplete or CommitmentStatus.Violated or CommitmentStatus.Lapsed;

    public static Commitment? Evolve(Commitment? state, object e) => (state, e) switch
    {
        (null, PullbackCommitted c) => new Commitment(c, CommitmentStatus.Pending, [], [], new Dictionary<string, HoldingSiteVisited>(), [], []),
        (not null, ObservationRecorded o) => state with { Observations = [.. state.Observations, o], Status = Started(state) },
        (not null, ZoneObservedClear z) => state with { ClearDays = [.. state.ClearDays, z], Status = Started(state) },
        (not null, HoldingSiteVisited v) => state with { LastVisits = new Dictionary<string, HoldingSiteVisited>(state.LastVisits) { [v.SiteId] = v }, Status = Started(state) },
        (not null, ViolationDetected v) => state with { Violations = [.. state.Violations, v] },
        (not null, HoldingSiteDiscrepancyFound d) => state with { Discrepancies = [.. state.Discrepancies, d] },
        (not null, CommitmentStatusChanged s) => state with { Status = s.Status },
        _ => state,
    };

    private static CommitmentStatus Started(Commitment c) => c.Status == CommitmentStatus.Pending ? CommitmentStatus.InProgress : c.Status;
}

/// <summary>Default withdrawal distances by weapon class under the Minsk measures; a commitment may set its own.</summary>
public static class Withdrawal
{
    public static double DefaultDistanceKm(IEnumerable<WeaponClass> classes) => classes.Max(c => c switch
    {
        WeaponClass.HeavyMlrs or WeaponClass.TacticalMissile => 140,
        WeaponClass.Mlrs => 70,
        _ => 50,
    });

    /// <summary>Inside the zone: within the polygon, or nearer to the line than the distance the commitment keeps.</summary>
    public static bool Inside(Zone zone, IEnumerable<WeaponClass> classes, double latitude, double longitude)
    {
        if (zone.Polygon is { } ring) return Geometry.Contains(Geometry.Polygon(ring).Polygon!, latitude, longitude);
        return Geometry.DistanceKm(Geometry.Line(zone.Line!).Line!, latitude, longitude) < (zone.DistanceKm ?? DefaultDistanceKm(classes));
    }
}

/// <summary>The verification rules, configurable per commitment; pure, with time passed in.</summary>
public static class Rules
{
    public static object[] Commit(string id, string party, WeaponClass[] classes, Zone zone, DateTimeOffset deadline, HoldingSite[] sites, int requiredClearDays,
        double coverageThreshold, int verificationWindowDays, Actor actor, PartyDirectory parties, DateTimeOffset now)
    {
        var v = new Validation()
            .Check(parties.IsParty(party), "party", "is not a party to the agreement")
            .Check(classes is { Length: > 0 and <= 7 } && classes.All(Enum.IsDefined), "weaponClasses", "name 1 to 7 known weapon classes")
            .Check(deadline > now, "deadline", "cannot be in the past")
            .Check(requiredClearDays is >= 1 and <= 90, "requiredClearDays", "must be 1 to 90")
            .Check(coverageThreshold is > 0 and <= 1, "coverageThreshold", "must be above 0 and at most 1")
            .Check(verificationWindowDays >= requiredClearDays && verificationWindowDays <= 365, "verificationWindowDays", "must be at least requiredClearDays and at most 365")
            .Check(sites is { Length: <= 200 }, "holdingSites", "at most 200 sites")
            .Check((zone.Polygon is null) != (zone.Line is null), "zone", "give either a polygon or a line");
        if (zone.Polygon is { } ring) v.Check(Geometry.Polygon(ring).Problem is null, "zone.polygon", Geometry.Polygon(ring).Problem ?? "");
        if (zone.Line is { } line)
            v.Check(Geometry.Line(line).Problem is null, "zone.line", Geometry.Line(line).Problem ?? "")
             .Check(zone.DistanceKm is null or (> 0 and <= 1000), "zone.distanceKm", "must be above 0 and at most 1000");
        foreach (var (s, i) in (sites ?? []).Select((s, i) => (s, i)))
            v.Check(s.Latitude is >= -90 and <= 90 && s.Longitude is >= -180 and <= 180, $"holdingSites[{i}]", "coordinates out of range")
             .Check(Enum.IsDefined(s.WeaponClass) && s.DeclaredCount is >= 0 and <= 100_000, $"holdingSites[{i}]", "a known class and a count of 0 to 100000")
             .Check(!string.IsNullOrWhiteSpace(s.SiteId) && s.SiteId.Length <= 100, $"holdingSites[{i}].siteId", "is required");
        v.ThrowIfInvalid();
        return [new PullbackCommitted(id, party, classes.Distinct().ToArray(), zone, deadline, sites ?? [], requiredClearDays, coverageThreshold, verificationWindowDays, actor.Subject, now)];
    }

    /// <summary>A prohibited class inside the zone after the deadline is a violation candidate naming the observation.</summary>
    public static object[] Observe(Commitment c, ObservationRecorded o)
    {
        new Validation()
            .Check(o.Latitude is >= -90 and <= 90 && double.IsFinite(o.Latitude), "latitude", "must be between -90 and 90")
            .Check(o.Longitude is >= -180 and <= 180 && double.IsFinite(o.Longitude), "longitude", "must be between -180 and 180")
            .Check(Enum.IsDefined(o.WeaponClass), "weaponClass", "is not a known weapon class")
            .Check(Enum.IsDefined(o.Sensor), "sensor", "is not a known sensor")
            .Check(o.Count is >= 0 and <= 10_000, "count", "must be 0 to 10000")
            .Check(o.Confidence is >= 0 and <= 1, "confidence", "must be between 0 and 1")
            .Check(o.ObservedAt <= o.RecordedAt.AddMinutes(5), "observedAt", "cannot be in the future")
            .Check(o.EvidenceSha256.All(h => h.Length == 64 && h.All(Uri.IsHexDigit)), "evidenceSha256", "each a SHA-256 in hex")
            .ThrowIfInvalid();
        if (c.Decided) throw Rejection.Conflict($"commitment {c.Id} is already {c.Status}");
        var inside = Withdrawal.Inside(c.Committed.Zone, c.Committed.WeaponClasses, o.Latitude, o.Longitude);
        var recorded = o with { InsideZone = inside };
        if (inside && o.Count > 0 && o.ObservedAt > c.Committed.Deadline && c.Committed.WeaponClasses.Contains(o.WeaponClass))
            return [recorded, new ViolationDetected(c.Id, o.ObservationId, $"{o.Count} {o.WeaponClass} inside the zone after the deadline", o.RecordedAt)];
        return [recorded];
    }

    /// <summary>A revisit: weapons missing (or access denied) are flagged; weapons missing before and present again are recorded.</summary>
    public static object[] Visit(Commitment c, HoldingSiteVisited visit)
    {
        var site = c.Committed.HoldingSites.FirstOrDefault(s => s.SiteId == visit.SiteId) ?? throw Rejection.Unprocessable($"no holding site {visit.SiteId} in commitment {c.Id}");
        if (c.Decided) throw Rejection.Conflict($"commitment {c.Id} is already {c.Status}");
        new Validation().Check(visit.Checks is { Length: > 0 }, "checks", "at least one check")
            .Check(visit.Checks.All(k => Enum.IsDefined(k.Finding) && k.CountSeen >= 0), "checks", "known findings, counts not negative").ThrowIfInvalid();
        var events = new List<object> { visit };
        foreach (var check in visit.Checks)
        {
            var previous = c.LastVisits.GetValueOrDefault(site.SiteId)?.Checks.FirstOrDefault(k => k.WeaponClass == check.WeaponClass);
            if (check.Finding == SiteFinding.AccessDenied)
                events.Add(new HoldingSiteDiscrepancyFound(c.Id, site.SiteId, "accessDenied", "monitors were denied access to the holding site", visit.RecordedAt));
            else if (check.Finding == SiteFinding.Missing || check.CountSeen < site.DeclaredCount)
                events.Add(new HoldingSiteDiscrepancyFound(c.Id, site.SiteId, "missing", $"{site.DeclaredCount - check.CountSeen} of {site.DeclaredCount} {check.WeaponClass} missing", visit.RecordedAt));
            else if (previous is not null && (previous.Finding == SiteFinding.Missing || previous.CountSeen < site.DeclaredCount))
                events.Add(new HoldingSiteDiscrepancyFound(c.Id, site.SiteId, "reappeared", $"{check.WeaponClass} missing at the last visit are present again", visit.RecordedAt));
        }
        return [.. events];
    }

    /// <summary>
    /// The verdict: violated if a violation was detected; verified complete after N consecutive clear days (after the
    /// deadline, coverage at or above the threshold) with every declared weapon accounted for at its site; lapsed when
    /// the verification window after the deadline has passed without that; otherwise not yet decidable.
    /// </summary>
    public static object[] Decide(Commitment c, Actor verifier, DateTimeOffset now)
    {
        if (c.Decided) throw Rejection.Conflict($"commitment {c.Id} is already {c.Status}");
        CommitmentStatusChanged Change(CommitmentStatus s, string grounds) => new(c.Id, s, grounds, verifier.Subject, now);
        if (c.Violations.Count > 0)
            return [Change(CommitmentStatus.Violated, $"violations: {string.Join(", ", c.Violations.Select(v => v.ObservationId))}")];
        var deadlineDay = DateOnly.FromDateTime(c.Committed.Deadline.UtcDateTime);
        var clear = c.ClearDays.Where(d => d.Day > deadlineDay && d.Coverage >= c.Committed.CoverageThreshold).Select(d => d.Day).ToHashSet();
        var streak = clear.Count == 0 ? 0 : clear.Max(end => Enumerable.Range(0, c.Committed.RequiredClearDays).TakeWhile(k => clear.Contains(end.AddDays(-k))).Count());
        var unaccounted = c.Committed.HoldingSites.Where(s => c.LastVisits.GetValueOrDefault(s.SiteId)?.Checks.Any(k =>
            k.WeaponClass == s.WeaponClass && k.Finding is SiteFinding.SerialsMatching or SiteFinding.CountMatchingSerialsUnchecked && k.CountSeen >= s.DeclaredCount) != true).ToList();
        if (streak >= c.Committed.RequiredClearDays && unaccounted.Count == 0)
            return [Change(CommitmentStatus.VerifiedComplete, $"{streak} consecutive clear days; all {c.Committed.HoldingSites.Length} holding sites accounted for")];
        if (now > c.Committed.Deadline.AddDays(c.Committed.VerificationWindowDays))
            return [Change(CommitmentStatus.Lapsed, $"deadline passed without verification: {streak} clear days, {unaccounted.Count} sites unaccounted for")];
        throw Rejection.Conflict($"not yet decidable: {streak} of {c.Committed.RequiredClearDays} clear days, {unaccounted.Count} sites unaccounted for");
    }
}
