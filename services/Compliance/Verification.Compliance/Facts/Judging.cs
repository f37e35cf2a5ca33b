using MassTransit;
using Verification.Compliance.Domain;
using Verification.EventStore;
using Contract = Verification.Contracts;

namespace Verification.Compliance.Facts;

/// <summary>
/// Facts in, determinations out. Each message from another service is kept in its subject's stream here (the event id
/// derived from the message id, the message id as causation), and every term that concerns the subject is evaluated
/// again in the same transaction, with the inbox mark: a redelivered message changes nothing.
/// </summary>
public static class Judging
{
    public const string Consumer = "compliance-facts";
    public const string TermsLock = "terms";

    public static async Task<(Subject? Subject, long Version)> LoadSubjectAsync(EventStore.EventStore store, string streamId, CancellationToken cancellationToken)
    {
        Subject? subject = null;
        var events = await store.ReadStreamAsync(streamId, cancellationToken: cancellationToken);
        foreach (var e in events) subject = Subject.Evolve(subject, e.Data, InputOf(e));
        return (subject, events.Count == 0 ? 0 : events[^1].Version);
    }

    public static Input InputOf(StoredEvent e) =>
        new(e.Type.Split('.')[1], e.Type, Guid.TryParse(e.Metadata.CausationId, out var id) ? id : Guid.Empty, (Subject.Of(e.Data) ?? default).Id, e.Version);

    public static async Task RecordAsync(EventStore.EventStore store, object message, Guid messageId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (Subject.Of(message) is not var (kind, id)) return;
        var streamId = Subject.StreamId(kind, id);
        // Facts share the terms lock, a change of terms takes it alone: a fact and a new term never miss each other.
        await using var termsLock = await Lease.AcquireAsync(store, TermsLock, shared: true, cancellationToken);
        for (var attempt = 1; ; attempt++)
        {
            var (before, version) = await LoadSubjectAsync(store, streamId, cancellationToken);
            var type = store.Types.NameOf(message.GetType()).Name;
            var after = Subject.Evolve(before, message, new Input(type.Split('.')[1], type, messageId, id, version + 1));
            var agreements = await AgreementsAsync(store, cancellationToken);
            var terms = agreements.SelectMany(a => a.Terms.Where(t => t.Applies == kind).Select(t => (a.AgreementId, Term: t))).ToList();
            var windows = terms.Any(t => t.Term.Kind == TermKind.RepairWindows) ? await RepairWindowsAsync(store, cancellationToken) : [];
            var current = await CurrentAsync(store, id, cancellationToken);
            var rejudge = after.RepairWindow is not null && before?.RepairWindow is null
                ? await StrikesInWindowAsync(store, agreements, after, cancellationToken)
                : null;
            try
            {
                await store.HandleOnceAsync(Consumer, messageId, new EventMetadata { ActorSub = "compliance", CausationId = messageId.ToString(), CorrelationId = messageId.ToString() }, session =>
                {
                    session.Append(streamId, "subject", version, [new NewEvent(Idempotency.DeriveId("fact", messageId.ToString()), message)]);
                    foreach (var (agreementId, term) in terms) AppendDeterminations(session, agreementId, term, after, windows, current, now);
                    if (rejudge is { } r)
                        foreach (var (agreementId, term) in r.Terms)
                            foreach (var strike in r.Strikes) AppendDeterminations(session, agreementId, term, strike, r.Windows, r.Current.GetValueOrDefault(strike.Id, []), now);
                    return Task.CompletedTask;
                }, cancellationToken);
                return;
            }
            catch (Verification.EventStore.ConcurrencyException) when (attempt < 5)
            {
                // Another message about the same subject, or a new term, got there first: read again and re-decide.
            }
        }
    }

    private sealed record Rejudging(List<(string AgreementId, Term Term)> Terms, IReadOnlyList<Subject> Strikes, IReadOnlyList<Subject> Windows,
        Dictionary<string, List<TermEvaluated>> Current);

    /// <summary>
    /// A repair window acknowledged after strikes inside it were already judged: those incidents are judged again
    /// under the repair-window terms, in the window's own transaction, so the order the facts arrived in does not matter.
    /// </summary>
    private static async Task<Rejudging?> StrikesInWindowAsync(EventStore.EventStore store, IReadOnlyList<Agreement> agreements, Subject window,
        CancellationToken cancellationToken)
    {
        var terms = agreements.SelectMany(a => a.Terms.Where(t => t.Kind == TermKind.RepairWindows).Select(t => (a.AgreementId, Term: t))).ToList();
        if (terms.Count == 0) return null;
        var w = window.RepairWindow!;
        var strikes = await store.QueryDocumentsAsync<Subject>(ComplianceModule.SubjectsView,
            "d.data->>'kind' = 'incident' AND (d.data->'filed'->>'occurredFrom')::timestamptz BETWEEN @from AND @to",
            p => { p.AddWithValue("from", w.WindowFrom); p.AddWithValue("to", w.WindowTo); }, limit: 100_000, cancellationToken: cancellationToken);
        if (strikes.Count == 0) return null;
        var windows = (await RepairWindowsAsync(store, cancellationToken)).Where(s => s.Id != window.Id).Append(window).ToList();
        var ids = strikes.Select(s => s.Id).ToArray();
        var current = (await store.QueryDocumentsAsync<TermEvaluated>(ComplianceModule.DeterminationsView, "d.data->>'subjectId' = ANY(@ids)",
            p => p.AddWithValue("ids", ids), limit: 100_000, cancellationToken: cancellationToken)).GroupBy(d => d.SubjectId).ToDictionary(g => g.Key, g => g.ToList());
        return new Rejudging(terms, strikes, windows, current);
    }

    internal static void AppendDeterminations(EventSession session, string agreementId, Term term, Subject subject, IReadOnlyList<Subject> windows,
        IReadOnlyList<TermEvaluated> current, DateTimeOffset now)
    {
        var mine = current.Where(c => c.AgreementId == agreementId && c.TermId == term.TermId).ToDictionary(c => c.Party);
        foreach (var d in Evaluator.Decide(agreementId, term, subject, Evaluator.Evaluate(term, subject, windows), mine, now))
            session.Append(d.DeterminationId, "determination", d.Revision - 1, d);
    }

    public static async Task<IReadOnlyList<Agreement>> AgreementsAsync(EventStore.EventStore store, CancellationToken cancellationToken) =>
        await store.QueryDocumentsAsync<Agreement>(ComplianceModule.AgreementsView, "true", null, limit: 10_000, cancellationToken: cancellationToken);

    public static async Task<IReadOnlyList<Subject>> RepairWindowsAsync(EventStore.EventStore store, CancellationToken cancellationToken) =>
        await store.QueryDocumentsAsync<Subject>(ComplianceModule.SubjectsView, "d.data->>'kind' = 'preNotification' AND d.data ? 'repairWindow' AND d.data->'repairWindow' <> 'null'",
            null, limit: 100_000, cancellationToken: cancellationToken);

    public static async Task<IReadOnlyList<TermEvaluated>> CurrentAsync(EventStore.EventStore store, string subjectId, CancellationToken cancellationToken) =>
        await store.QueryDocumentsAsync<TermEvaluated>(ComplianceModule.DeterminationsView, "d.data->>'subjectId' = @s", p => p.AddWithValue("s", subjectId),
            limit: 10_000, cancellationToken: cancellationToken);
}

/// <summary>One queue for every fact this service judges; transport settings (retry, queues) come from the defaults.</summary>
public sealed class FactsConsumer([FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, TimeProvider clock) :
    IConsumer<Contract.IncidentFiled>, IConsumer<Contract.IncidentGraded>, IConsumer<Contract.IncidentRetracted>,
    IConsumer<Contract.AlertRaised>, IConsumer<Contract.AlertAcknowledged>, IConsumer<Contract.AlertExpiredUnacknowledged>,
    IConsumer<Contract.PreNotificationAcknowledged>,
    IConsumer<Contract.ExchangeAgreed>, IConsumer<Contract.ExchangeCompleted>, IConsumer<Contract.ExchangeCollapsed>,
    IConsumer<Contract.PullbackCommitted>, IConsumer<Contract.PullbackViolationDetected>, IConsumer<Contract.PullbackVerified>, IConsumer<Contract.PullbackLapsed>
{
    private Task Record<T>(ConsumeContext<T> context) where T : class =>
        Judging.RecordAsync(store, context.Message, context.MessageId ?? throw new InvalidOperationException("a message without an id cannot be recorded once"),
            clock.GetUtcNow(), context.CancellationToken);

    public Task Consume(ConsumeContext<Contract.IncidentFiled> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.IncidentGraded> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.IncidentRetracted> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.AlertRaised> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.AlertAcknowledged> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.AlertExpiredUnacknowledged> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.PreNotificationAcknowledged> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.ExchangeAgreed> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.ExchangeCompleted> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.ExchangeCollapsed> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.PullbackCommitted> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.PullbackViolationDetected> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.PullbackVerified> context) => Record(context);
    public Task Consume(ConsumeContext<Contract.PullbackLapsed> context) => Record(context);
}
