using MassTransit;

namespace Verification.Contracts;

/// <summary>A side's figures in an exchange: what it releases, per category and in total.</summary>
public sealed record SideCounts(string ReleasingParty, string Category, int Agreed, int Listed, int Verified, int HandedOver, int ConfirmedReceived);

[MessageUrn("verification:exchanges:exchange-agreed:v1", false)]
public sealed record ExchangeAgreed(string ExchangeId, string PartyA, string PartyB, string? Mediator, string? Intermediary, SideCounts[] Agreed,
    string Place, DateOnly PlannedDate, DateTimeOffset AgreedAt);

[MessageUrn("verification:exchanges:exchange-list-submitted:v1", false)]
public sealed record ExchangeListSubmitted(string ExchangeId, string Party, string ListKind, int Version, int Entries, DateTimeOffset SubmittedAt);

[MessageUrn("verification:exchanges:handover-recorded:v1", false)]
public sealed record HandoverRecorded(string ExchangeId, string ReleasingParty, int Persons, DateTimeOffset RecordedAt);

[MessageUrn("verification:exchanges:handover-confirmed:v1", false)]
public sealed record HandoverConfirmed(string ExchangeId, string ReceivingParty, int Persons, DateTimeOffset ConfirmedAt);

[MessageUrn("verification:exchanges:exchange-discrepancy-found:v1", false)]
public sealed record ExchangeDiscrepancyFound(string ExchangeId, string Kind, string? Party, string? PersonId, string Detail, DateTimeOffset FoundAt);

[MessageUrn("verification:exchanges:exchange-completed:v1", false)]
public sealed record ExchangeCompleted(string ExchangeId, string Outcome, bool Reciprocal, SideCounts[] Counts, DateTimeOffset CompletedAt);

[MessageUrn("verification:exchanges:exchange-collapsed:v1", false)]
public sealed record ExchangeCollapsed(string ExchangeId, string Reason, DateTimeOffset CollapsedAt);
