using MassTransit;

namespace Verification.Contracts;

// Hotline messages. Kind is "incident" (an alert about an incident) or "preNotification" (a planned activity).

[MessageUrn("verification:hotline:alert-raised:v1", false)]
public sealed record AlertRaised(string AlertId, string Kind, string? IncidentId, string Addressee, string? FromParty, string Severity,
    bool ChannelSuspended, DateTimeOffset RaisedAt, DateTimeOffset DueAt);

[MessageUrn("verification:hotline:alert-acknowledged:v1", false)]
public sealed record AlertAcknowledged(string AlertId, string Kind, string? IncidentId, string Party, string Response, bool Late,
    double ResponseSeconds, DateTimeOffset AcknowledgedAt);

[MessageUrn("verification:hotline:alert-escalated:v1", false)]
public sealed record AlertEscalated(string AlertId, string Kind, string? IncidentId, string Addressee, int Step, string Level, DateTimeOffset EscalatedAt, DateTimeOffset DueAt);

[MessageUrn("verification:hotline:alert-expired-unacknowledged:v1", false)]
public sealed record AlertExpiredUnacknowledged(string AlertId, string Kind, string? IncidentId, string Addressee, DateTimeOffset RaisedAt,
    DateTimeOffset DueAt, DateTimeOffset ExpiredAt);

[MessageUrn("verification:hotline:pre-notification-sent:v1", false)]
public sealed record PreNotificationSent(string AlertId, string FromParty, string ToParty, string ActivityKind, double Latitude, double Longitude,
    double RadiusKm, string Region, DateTimeOffset WindowFrom, DateTimeOffset WindowTo, DateTimeOffset SentAt, DateTimeOffset DueAt);

[MessageUrn("verification:hotline:pre-notification-acknowledged:v1", false)]
public sealed record PreNotificationAcknowledged(string AlertId, string FromParty, string ToParty, string ActivityKind, double Latitude, double Longitude,
    double RadiusKm, string Region, DateTimeOffset WindowFrom, DateTimeOffset WindowTo, DateTimeOffset AcknowledgedAt);

[MessageUrn("verification:hotline:pre-notification-objected:v1", false)]
public sealed record PreNotificationObjected(string AlertId, string FromParty, string ToParty, string Reason, DateTimeOffset ObjectedAt);

[MessageUrn("verification:hotline:channel-status-changed:v1", false)]
public sealed record ChannelStatusChanged(string Party, string Status, string? Reason, DateTimeOffset ChangedAt);
