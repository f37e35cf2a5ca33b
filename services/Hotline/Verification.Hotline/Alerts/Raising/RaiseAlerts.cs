using MassTransit;
using Verification.EventStore;
using Verification.Hotline.Alerts.Reading;
using Verification.Hotline.Domain;
using Verification.ServiceDefaults;
using Contract = Verification.Contracts;

namespace Verification.Hotline.Alerts.Raising;

/// <summary>
/// An incident concerns a party (alleged, or attributed by a finding): its liaison officers and the mediators get
/// an alert. One alert per incident per addressee (the alert id is derived from both), however often the message comes.
/// </summary>
public static class RaiseAlerts
{
    public static string AlertId(string incidentId, string addressee) => $"alert-{incidentId}-{addressee}";

    public static IReadOnlyList<AlertRaised> Decide(string incidentId, string? concernedParty, string severity, AlertFields fields,
        PartyDirectory parties, IReadOnlySet<string> suspended, IReadOnlySet<string> alreadyAlerted, HotlineRules rules, DateTimeOffset now)
    {
        var addressees = new List<string>();
        if (parties.IsParty(concernedParty)) addressees.Add(concernedParty!);
        addressees.AddRange(parties.Mediators.Select(m => m.Code));
        return addressees.Where(a => !alreadyAlerted.Contains(a))
            .Select(a => new AlertRaised(AlertId(incidentId, a), AlertKind.Incident, a, null, severity, fields, suspended.Contains(a), "hotline", now, now + rules.DeadlineFor(severity)))
            .ToList();
    }

    /// <summary>Appends the decided alerts that do not exist yet, with the inbox mark of the message that caused them.</summary>
    internal static async Task RaiseAsync(EventStore.EventStore store, AlertFeed feed, string consumer, Guid messageId,
        Func<IReadOnlySet<string>, IReadOnlySet<string>, IReadOnlyList<AlertRaised>> decide, CancellationToken cancellationToken)
    {
        // A concurrent delivery (of this or another message about the same incident) may raise some alerts first:
        // then look again, so this message still gets its inbox mark and raises only what is missing.
        for (var attempt = 1; ; attempt++)
        {
            var suspended = await Channels.ChangeChannelStatus.SuspendedAsync(store, cancellationToken);
            var alerted = new HashSet<string>();
            foreach (var candidate in decide(suspended, alerted))
            {
                if (await store.StreamVersionAsync(candidate.AlertId, cancellationToken) > 0) alerted.Add(candidate.Addressee);
            }
            var raised = decide(suspended, alerted);
            try
            {
                var handled = await store.HandleOnceAsync(consumer, messageId, new EventMetadata { ActorSub = "hotline", CausationId = messageId.ToString() }, session =>
                {
                    foreach (var alert in raised)
                    {
                        session.Append(alert.AlertId, "alert", ExpectedVersion.NoStream, alert);
                        foreach (var message in Messages.For(Alert.Evolve(null, alert)!, [alert])) session.Publish(message, alert.AlertId);
                    }
                    return Task.CompletedTask;
                }, cancellationToken);
                if (handled) foreach (var alert in raised) feed.Publish(Alert.Evolve(null, alert)!, 1);
                return;
            }
            catch (Verification.EventStore.ConcurrencyException) when (attempt < 3)
            {
            }
        }
    }

    internal static AlertFields Fields(string incidentId, string category, string[] targetTypes, string region, double latitude, double longitude,
        DateTimeOffset occurredFrom, int killed, int injured) =>
        new(incidentId, category, targetTypes, region, latitude, longitude, occurredFrom, killed, injured);
}

public sealed class IncidentFiledConsumer([FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store, AlertFeed feed, PartyDirectory parties,
    HotlineRules rules, TimeProvider clock) : IConsumer<Contract.IncidentFiled>
{
    public Task Consume(ConsumeContext<Contract.IncidentFiled> context)
    {
        var m = context.Message;
        var fields = RaiseAlerts.Fields(m.IncidentId, m.Category, m.TargetTypes, m.Region, m.Latitude, m.Longitude, m.OccurredFrom, m.KilledBest, m.InjuredBest);
        return RaiseAlerts.RaiseAsync(store, feed, "hotline-incident-filed", context.MessageId ?? Guid.Empty,
            (suspended, seen) => RaiseAlerts.Decide(m.IncidentId, m.AllegedParty, m.Severity, fields, parties, suspended, seen, rules, clock.GetUtcNow()),
            context.CancellationToken);
    }
}

/// <summary>A finding that attributes the incident to a party not yet alerted raises an alert for that party.</summary>
public sealed class IncidentGradedConsumer([FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store, AlertFeed feed, PartyDirectory parties,
    HotlineRules rules, TimeProvider clock) : IConsumer<Contract.IncidentGraded>
{
    public Task Consume(ConsumeContext<Contract.IncidentGraded> context)
    {
        var m = context.Message;
        if (m.AttributedParty is null || m.AttributedParty == m.PreviousAttributedParty) return Task.CompletedTask;
        var fields = RaiseAlerts.Fields(m.IncidentId, m.Category, m.TargetTypes, m.Region, m.Latitude, m.Longitude, m.OccurredFrom, 0, 0);
        return RaiseAlerts.RaiseAsync(store, feed, "hotline-incident-graded", context.MessageId ?? Guid.Empty,
            (suspended, seen) => RaiseAlerts.Decide(m.IncidentId, m.AttributedParty, m.Severity, fields, parties, suspended, seen, rules, clock.GetUtcNow())
                .Where(a => a.Addressee == m.AttributedParty).ToList(),
            context.CancellationToken);
    }
}
