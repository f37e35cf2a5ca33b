using MassTransit;

namespace Verification.Contracts;

[MessageUrn("verification:pullbacks:pullback-committed:v1", false)]
public sealed record PullbackCommitted(string CommitmentId, string Party, string[] WeaponClasses, DateTimeOffset Deadline, DateTimeOffset CommittedAt);

[MessageUrn("verification:pullbacks:pullback-observation-recorded:v1", false)]
public sealed record PullbackObservationRecorded(string CommitmentId, string ObservationId, string WeaponClass, int Count, bool InsideZone, DateTimeOffset ObservedAt);

[MessageUrn("verification:pullbacks:pullback-violation-detected:v1", false)]
public sealed record PullbackViolationDetected(string CommitmentId, string Party, string ObservationId, string WeaponClass, double Latitude, double Longitude,
    DateTimeOffset ObservedAt, DateTimeOffset DetectedAt);

[MessageUrn("verification:pullbacks:pullback-verified:v1", false)]
public sealed record PullbackVerified(string CommitmentId, string Party, string Grounds, DateTimeOffset VerifiedAt);

[MessageUrn("verification:pullbacks:pullback-lapsed:v1", false)]
public sealed record PullbackLapsed(string CommitmentId, string Party, DateTimeOffset Deadline, DateTimeOffset LapsedAt);

[MessageUrn("verification:pullbacks:holding-site-discrepancy:v1", false)]
public sealed record HoldingSiteDiscrepancy(string CommitmentId, string Party, string SiteId, string Kind, string Detail, DateTimeOffset FoundAt);
