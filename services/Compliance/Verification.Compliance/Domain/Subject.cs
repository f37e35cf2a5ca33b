using Contract = Verification.Contracts;

namespace Verification.Compliance.Domain;

public enum SubjectKind { Incident, Alert, Exchange, Pullback, PreNotification }

/// <summary>A message this service based a determination on: which service sent it, its type and id, and where it is kept here.</summary>
public sealed record Input(string Service, string MessageType, Guid MessageId, string SubjectId, long FactVersion);

/// <summary>
/// Everything known about one incident, alert, exchange, pullback commitment or pre-notification: the other services'
/// messages, kept as they came (each one an event of the subject's stream here) and folded into this state.
/// </summary>
public sealed record Subject(string Id, SubjectKind Kind, IReadOnlyList<Input> Inputs)
{
    public Contract.IncidentFiled? Filed { get; init; }
    public Contract.IncidentGraded? Graded { get; init; }
    public Contract.IncidentRetracted? Retracted { get; init; }
    public Contract.AlertRaised? Raised { get; init; }
    public Contract.AlertAcknowledged? Acknowledged { get; init; }
    public Contract.AlertExpiredUnacknowledged? Expired { get; init; }
    public Contract.ExchangeAgreed? ExchangeAgreed { get; init; }
    public Contract.ExchangeCompleted? ExchangeCompleted { get; init; }
    public Contract.ExchangeCollapsed? ExchangeCollapsed { get; init; }
    public Contract.PullbackCommitted? Committed { get; init; }
    public IReadOnlyList<Contract.PullbackViolationDetected> PullbackViolations { get; init; } = [];
    public Contract.PullbackVerified? PullbackVerified { get; init; }
    public Contract.PullbackLapsed? PullbackLapsed { get; init; }
    public Contract.PreNotificationAcknowledged? RepairWindow { get; init; }

    /// <summary>The subject a message is about, or null for messages this service does not judge.</summary>
    public static (SubjectKind Kind, string Id)? Of(object message) => message switch
    {
        Contract.IncidentFiled m => (SubjectKind.Incident, m.IncidentId),
        Contract.IncidentGraded m => (SubjectKind.Incident, m.IncidentId),
        Contract.IncidentRetracted m => (SubjectKind.Incident, m.IncidentId),
        Contract.AlertRaised { Kind: "incident" } m => (SubjectKind.Alert, m.AlertId),
        Contract.AlertAcknowledged { Kind: "incident" } m => (SubjectKind.Alert, m.AlertId),
        Contract.AlertExpiredUnacknowledged { Kind: "incident" } m => (SubjectKind.Alert, m.AlertId),
        Contract.ExchangeAgreed m => (SubjectKind.Exchange, m.ExchangeId),
        Contract.ExchangeCompleted m => (SubjectKind.Exchange, m.ExchangeId),
        Contract.ExchangeCollapsed m => (SubjectKind.Exchange, m.ExchangeId),
        Contract.PullbackCommitted m => (SubjectKind.Pullback, m.CommitmentId),
        Contract.PullbackViolationDetected m => (SubjectKind.Pullback, m.CommitmentId),
        Contract.PullbackVerified m => (SubjectKind.Pullback, m.CommitmentId),
        Contract.PullbackLapsed m => (SubjectKind.Pullback, m.CommitmentId),
        Contract.PreNotificationAcknowledged m => (SubjectKind.PreNotification, m.AlertId),
        _ => null,
    };

    public static string StreamId(SubjectKind kind, string id) => $"subject-{kind.ToString().ToLowerInvariant()}-{id}";

    /// <summary>Folds one recorded message. Later gradings replace earlier ones; a violation seen twice counts once.</summary>
    public static Subject Evolve(Subject? state, object message, Input input)
    {
        var (kind, id) = Of(message) ?? throw new ArgumentException($"not a message about a subject: {message.GetType().Name}", nameof(message));
        var s = (state ?? new Subject(id, kind, [])) with { Inputs = [.. state?.Inputs ?? [], input] };
        return message switch
        {
            Contract.IncidentFiled m => s with { Filed = m },
            Contract.IncidentGraded m => s with { Graded = s.Graded is { } g && g.Revision > m.Revision ? g : m },
            Contract.IncidentRetracted m => s with { Retracted = m },
            Contract.AlertRaised m => s with { Raised = m },
            Contract.AlertAcknowledged m => s with { Acknowledged = m },
            Contract.AlertExpiredUnacknowledged m => s with { Expired = m },
            Contract.ExchangeAgreed m => s with { ExchangeAgreed = m },
            Contract.ExchangeCompleted m => s with { ExchangeCompleted = m },
            Contract.ExchangeCollapsed m => s with { ExchangeCollapsed = m },
            Contract.PullbackCommitted m => s with { Committed = m },
            Contract.PullbackViolationDetected m when s.PullbackViolations.All(v => v.ObservationId != m.ObservationId) => s with { PullbackViolations = [.. s.PullbackViolations, m] },
            Contract.PullbackVerified m => s with { PullbackVerified = m },
            Contract.PullbackLapsed m => s with { PullbackLapsed = m },
            Contract.PreNotificationAcknowledged m => s with { RepairWindow = m },
            _ => s,
        };
    }
}
