using MassTransit;

namespace Verification.Contracts;

// What other services need to know about incidents: ids, times, place, kind, attribution, severity.
// Names are stable wire names; enum-like values travel as lower-case strings.

/// <summary>Severity drives hotline deadlines: critical (deaths, medical, shelters), high (injuries, energy), routine.</summary>
public static class Severity
{
    public const string Critical = "critical";
    public const string High = "high";
    public const string Routine = "routine";
}

[MessageUrn("verification:incidents:incident-filed:v1", false)]
public sealed record IncidentFiled(
    string IncidentId, DateTimeOffset OccurredFrom, DateTimeOffset? OccurredTo, double Latitude, double Longitude, string Region,
    string Category, string[] TargetTypes, string? AllegedParty, string Severity, int KilledBest, int InjuredBest, DateTimeOffset FiledAt);

[MessageUrn("verification:incidents:incident-updated:v1", false)]
public sealed record IncidentUpdated(string IncidentId, int SourceCount, int KilledLow, int KilledBest, int KilledHigh,
    int InjuredLow, int InjuredBest, int InjuredHigh, string Severity, DateTimeOffset UpdatedAt);

[MessageUrn("verification:incidents:incident-graded:v1", false)]
public sealed record IncidentGraded(
    string IncidentId, int Revision, string Grade, string Attribution, string? AttributedParty, string? PreviousAttributedParty,
    DateTimeOffset OccurredFrom, double Latitude, double Longitude, string Region, string Category, string[] TargetTypes,
    string Severity, DateTimeOffset GradedAt);

[MessageUrn("verification:incidents:incident-disputed:v1", false)]
public sealed record IncidentDisputed(string IncidentId, string Party, string Position, DateTimeOffset RecordedAt);

[MessageUrn("verification:incidents:incident-retracted:v1", false)]
public sealed record IncidentRetracted(string IncidentId, string Reason, DateTimeOffset RetractedAt);
