using Verification.EventStore;
using Verification.Exchanges.Domain;
using Verification.ServiceDefaults;
using Contract = Verification.Contracts;

namespace Verification.Exchanges;

public sealed record CommandResult(string Id, long Version, ExchangeStatus Status);

/// <summary>Every command on an exchange: load, decide, append at the version read, publish what other services need.</summary>
internal static class Handling
{
    public static async Task<(Exchange Exchange, long Version)> LoadAsync(EventStore.EventStore store, string id, CancellationToken cancellationToken)
    {
        var (exchange, version) = await store.AggregateAsync<Exchange>(id, Exchange.Evolve, cancellationToken: cancellationToken);
        return exchange is null ? throw Rejection.NotFound($"exchange {id} does not exist") : (exchange, version);
    }

    /// <summary>People of this exchange already released in an earlier one (person id → that exchange).</summary>
    public static async Task<IReadOnlyDictionary<string, string>> ReleasedBeforeAsync(EventStore.EventStore store, Exchange x, CancellationToken cancellationToken)
    {
        var ids = x.Lists.Values.SelectMany(l => l.Entries).Select(e => e.PersonId).Distinct().ToArray();
        if (ids.Length == 0) return new Dictionary<string, string>();
        var released = await store.QueryDocumentsAsync<Released>(ReleasedPersons.Name, "d.id = ANY(@ids) AND d.data->>'exchangeId' <> @x",
            p => { p.AddWithValue("ids", ids); p.AddWithValue("x", x.Id); }, limit: ids.Length, cancellationToken: cancellationToken);
        return released.ToDictionary(r => r.PersonId, r => r.ExchangeId);
    }

    public static async Task<IResult> ExecuteAsync(HttpContext http, EventStore.EventStore store, string id,
        Func<Exchange, Actor, IReadOnlyDictionary<string, string>, DateTimeOffset, object[]> decide, TimeProvider clock)
    {
        var (exchange, version) = await LoadAsync(store, id, http.RequestAborted);
        var releasedBefore = await ReleasedBeforeAsync(store, exchange, http.RequestAborted);
        var actor = Actor.From(http.User);
        var events = decide(exchange, actor, releasedBefore, clock.GetUtcNow());
        var after = events.Aggregate(exchange, (x, e) => Exchange.Evolve(x, e)!);
        var session = store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party })
            .Append(id, "exchange", version, events);
        foreach (var message in Messages(after, events, releasedBefore)) session.Publish(message, id);
        var saved = await session.SaveChangesAsync(http.RequestAborted);
        return TypedResults.Ok(new CommandResult(id, saved[0].Version, after.Status));
    }

    public static IEnumerable<object> Messages(Exchange x, IEnumerable<object> events, IReadOnlyDictionary<string, string> releasedBefore)
    {
        foreach (var e in events)
        {
            switch (e)
            {
                case ExchangeAgreed a:
                    yield return new Contract.ExchangeAgreed(a.ExchangeId, a.PartyA, a.PartyB, a.Mediator, a.Intermediary,
                        a.Counts.Select(c => new Contract.SideCounts(c.ReleasingParty, Ledger.Wire(c.Category), c.Count, 0, 0, 0, 0)).ToArray(), a.Place, a.PlannedDate, a.AgreedAt);
                    break;
                case ListSubmitted l:
                    yield return new Contract.ExchangeListSubmitted(l.ExchangeId, l.Party, Ledger.Wire(l.Kind), l.Version, l.Entries.Length, l.SubmittedAt);
                    break;
                case HandoverRecorded h:
                    yield return new Contract.HandoverRecorded(h.ExchangeId, h.ReleasingParty, h.PersonIds.Length, h.RecordedAt);
                    break;
                case HandoverConfirmed c:
                    yield return new Contract.HandoverConfirmed(c.ExchangeId, c.ReceivingParty, c.PersonIds.Length, c.ConfirmedAt);
                    break;
                case ExchangeClosed { Outcome: ExchangeStatus.Collapsed } c:
                    yield return new Contract.ExchangeCollapsed(c.ExchangeId, c.Reason ?? "", c.ClosedAt);
                    break;
                case ExchangeClosed c:
                    var reconciliation = Ledger.Reconcile(x, releasedBefore);
                    foreach (var d in reconciliation.Discrepancies)
                        yield return new Contract.ExchangeDiscrepancyFound(c.ExchangeId, d.Kind, d.Party, d.PersonId, d.Detail, c.ClosedAt);
                    yield return new Contract.ExchangeCompleted(c.ExchangeId, Ledger.Wire(c.Outcome), reconciliation.Reciprocal, [.. reconciliation.Counts], c.ClosedAt);
                    break;
            }
        }
    }
}

public sealed record Released(string PersonId, string ExchangeId, string ReleasingParty);

/// <summary>Everyone whose handover the receiving party confirmed, across exchanges: how "already released" is known.</summary>
public sealed class ReleasedPersons() : Projection(Name)
{
    public new const string Name = "released_persons";

    public override async Task ApplyAsync(IReadOnlyList<StoredEvent> events, ProjectionWrite write, CancellationToken cancellationToken)
    {
        var rows = events.Select(e => e.Data).OfType<HandoverConfirmed>()
            .SelectMany(c => c.PersonIds.Select(p => new Released(p, c.ExchangeId, "")))
            .ToList();
        if (rows.Count == 0) return;
        var generation = write.Generation != 0 ? write.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture)
            : $"(SELECT generation FROM {write.Schema}.projections WHERE name = '{Name}' AND live)";
        await using var command = new Npgsql.NpgsqlCommand(
            $"INSERT INTO {write.Schema}.documents (projection, generation, id, data, version) " +
            $"SELECT '{Name}', {generation}, u.id, u.data::jsonb, 0 FROM unnest(@ids, @data) AS u(id, data) ON CONFLICT DO NOTHING",
            write.Connection, write.Transaction);
        command.Parameters.AddWithValue("ids", rows.Select(r => r.PersonId).ToArray());
        command.Parameters.AddWithValue("data", rows.Select(r => System.Text.Json.JsonSerializer.Serialize(r, EventTypes.Json)).ToArray());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
