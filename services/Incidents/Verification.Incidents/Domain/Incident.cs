namespace Verification.Incidents.Domain;

public enum TimePrecision { Exact, Day, Window }
public enum LocationPrecision { Exact, Approximate, Region }
public enum Category { DroneStrike, MissileStrike, GuidedBomb, ArtilleryShelling, SmallArms, GroundAssault, FreedomOfMovementRestriction, Other }
public enum TargetType { EnergySubstation, EnergySwitchyard, EnergyThermalPlant, EnergyOther, Residential, Medical, Transport, Shelter, Military, Other }
public enum SourceKind { MissionPatrol, FixedCamera, Drone, PartyStatement, Media, Ngo }
public enum Grade { Confirmed, Fair, Weak, Contested, Discounted }
public enum AttributionKind { Party, NotAttributable, Undetermined }
public enum PartyPosition { Disputes, AcceptsResponsibility }

/// <summary>A figure as UCDP gives it: low, best and high estimates.</summary>
public sealed record Estimate(int Low, int Best, int High);

/// <summary>What a source counted and what followed. Every field is optional: a source reports what it saw.</summary>
public sealed record Figures(
    Estimate? Drones = null, Estimate? Missiles = null, Estimate? Explosions = null,
    Estimate? Killed = null, Estimate? Injured = null, Estimate? Missing = null,
    Estimate? CustomersWithoutPower = null, Estimate? BuildingsWithoutHeating = null)
{
    public static readonly Figures None = new();

    public IEnumerable<(string Name, Estimate? Value)> All() =>
    [
        ("drones", Drones), ("missiles", Missiles), ("explosions", Explosions), ("killed", Killed), ("injured", Injured),
        ("missing", Missing), ("customersWithoutPower", CustomersWithoutPower), ("buildingsWithoutHeating", BuildingsWithoutHeating),
    ];
}

public sealed record Location(double Latitude, double Longitude, string Region, LocationPrecision Precision, string? AdminArea = null, string? ControlledBy = null);

/// <summary>Evidence by reference: its SHA-256 fixes it; the file may live elsewhere.</summary>
public sealed record Evidence(string Sha256, string MediaType, long SizeBytes, DateTimeOffset? CapturedAt = null, double? Latitude = null, double? Longitude = null, string? Uri = null);

public sealed record Attribution(AttributionKind Kind, string? Party);

// Events: past tense, carrying the stream id and their times.
public sealed record IncidentFiled(
    string IncidentId, DateTimeOffset OccurredFrom, DateTimeOffset? OccurredTo, TimePrecision OccurredPrecision, Location Location,
    Category Category, TargetType[] TargetTypes, string Narrative, string? AllegedParty, Evidence[] Evidence, string FiledBy, DateTimeOffset FiledAt);

public sealed record SourceReported(
    string IncidentId, string SourceId, SourceKind Kind, string? Party, string Reporter, Figures Figures, DateTimeOffset ReportedAt,
    string? Reference, string RecordedBy, DateTimeOffset RecordedAt);

public sealed record BestFiguresOverridden(string IncidentId, Figures Figures, string Reason, string By, DateTimeOffset OverriddenAt);

public sealed record IncidentGraded(string IncidentId, int Revision, Grade Grade, Attribution Attribution, string Finding, string? Reason, string By, DateTimeOffset GradedAt);

public sealed record PartyPositionRecorded(string IncidentId, string Party, PartyPosition Position, string Statement, string By, DateTimeOffset RecordedAt);

public sealed record IncidentLinked(string IncidentId, string SameEventAs, string By, DateTimeOffset LinkedAt);

public sealed record IncidentRetracted(string IncidentId, string Reason, string By, DateTimeOffset RetractedAt);

public sealed record Source(string SourceId, SourceKind Kind, string? Party, string Reporter, Figures Figures, DateTimeOffset ReportedAt, string? Reference);
public sealed record Position(string Party, PartyPosition Stance, string Statement, DateTimeOffset RecordedAt);

/// <summary>An incident as its events make it. Every source and every finding revision is kept.</summary>
public sealed record Incident(
    IncidentFiled Filed,
    IReadOnlyList<Source> Sources,
    IReadOnlyList<IncidentGraded> Findings,
    IReadOnlyList<Position> Positions,
    BestFiguresOverridden? Override,
    string? SameEventAs,
    IncidentRetracted? Retraction)
{
    public string Id => Filed.IncidentId;
    public IncidentGraded? Finding => Findings.Count > 0 ? Findings[^1] : null;
    public bool Retracted => Retraction is not null;

    public static Incident? Evolve(Incident? state, object e) => (state, e) switch
    {
        (null, IncidentFiled filed) => new Incident(filed, [], [], [], null, null, null),
        (not null, SourceReported s) => state with { Sources = [.. state.Sources, new Source(s.SourceId, s.Kind, s.Party, s.Reporter, s.Figures, s.ReportedAt, s.Reference)] },
        (not null, BestFiguresOverridden o) => state with { Override = o },
        (not null, IncidentGraded g) => state with { Findings = [.. state.Findings, g] },
        (not null, PartyPositionRecorded p) => state with { Positions = [.. state.Positions, new Position(p.Party, p.Position, p.Statement, p.RecordedAt)] },
        (not null, IncidentLinked l) => state with { SameEventAs = l.SameEventAs },
        (not null, IncidentRetracted r) => state with { Retraction = r },
        _ => state,
    };

    /// <summary>
    /// The range over all sources (lowest low, highest high) and the best figure by the documented rule:
    /// the most conservative (lowest) best estimate any source gives, as ACLED codes disputed fatalities,
    /// unless a verifier has overridden it with a reason.
    /// </summary>
    public Figures Range() => Combine(Sources.Select(s => s.Figures).ToList(), conservativeBest: true);

    public Figures Best() => Override?.Figures ?? Range();

    private static Figures Combine(IReadOnlyList<Figures> all, bool conservativeBest)
    {
        Estimate? Pick(Func<Figures, Estimate?> field)
        {
            var values = all.Select(field).OfType<Estimate>().ToList();
            return values.Count == 0 ? null : new Estimate(values.Min(v => v.Low), conservativeBest ? values.Min(v => v.Best) : values.Max(v => v.Best), values.Max(v => v.High));
        }
        return new Figures(Pick(f => f.Drones), Pick(f => f.Missiles), Pick(f => f.Explosions), Pick(f => f.Killed), Pick(f => f.Injured),
            Pick(f => f.Missing), Pick(f => f.CustomersWithoutPower), Pick(f => f.BuildingsWithoutHeating));
    }

    /// <summary>Critical: deaths, or a medical site or shelter hit. High: injuries or energy infrastructure. Otherwise routine.</summary>
    public string Severity()
    {
        var best = Best();
        if ((best.Killed?.High ?? 0) > 0 || Filed.TargetTypes.Any(t => t is TargetType.Medical or TargetType.Shelter)) return Contracts.Severity.Critical;
        if ((best.Injured?.High ?? 0) > 0 || Filed.TargetTypes.Any(IsEnergy)) return Contracts.Severity.High;
        return Contracts.Severity.Routine;
    }

    public static bool IsEnergy(TargetType t) => t is TargetType.EnergySubstation or TargetType.EnergySwitchyard or TargetType.EnergyThermalPlant or TargetType.EnergyOther;
}
