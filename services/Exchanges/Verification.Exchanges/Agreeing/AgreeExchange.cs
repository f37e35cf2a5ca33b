using Microsoft.AspNetCore.Mvc;
using Verification.EventStore;
using Verification.Exchanges.Domain;
using Verification.ServiceDefaults;

namespace Verification.Exchanges.Agreeing;

public sealed record AgreeExchangeRequest(string PartyA, string PartyB, AgreedCount[] Counts, string Place, DateOnly PlannedDate,
    string? Mediator = null, string? Intermediary = null, int? TotalPerSide = null);

/// <summary>The mission records an exchange agreement: parties, intermediary, counts per side and category, place and date.</summary>
public static class AgreeExchange
{
    public static object[] Decide(string id, AgreeExchangeRequest r, Actor actor, PartyDirectory parties, DateTimeOffset now)
    {
        var v = new Validation()
            .Check(parties.IsParty(r.PartyA), "partyA", "is not a party to the agreement")
            .Check(parties.IsParty(r.PartyB) && r.PartyB != r.PartyA, "partyB", "must be the other party")
            .Check(r.Mediator is null || parties.IsMediator(r.Mediator), "mediator", "is not a known mediator")
            .Check(r.Counts is { Length: > 0 and <= 20 }, "counts", "give 1 to 20 agreed counts")
            .Check(!string.IsNullOrWhiteSpace(r.Place) && r.Place.Length <= 500, "place", "is required, at most 500 characters")
            .Check(r.Intermediary is null || r.Intermediary.Length <= 100, "intermediary", "at most 100 characters");
        foreach (var (c, i) in (r.Counts ?? []).Select((c, i) => (c, i)))
        {
            v.Check(c.ReleasingParty == r.PartyA || c.ReleasingParty == r.PartyB, $"counts[{i}].releasingParty", "must be one of the two parties")
             .Check(Enum.IsDefined(c.Category), $"counts[{i}].category", "is not a known category")
             .Check(c.Count is > 0 and <= 100_000, $"counts[{i}].count", "must be between 1 and 100000");
        }
        v.Check((r.Counts ?? []).GroupBy(c => (c.ReleasingParty, c.Category)).All(g => g.Count() == 1), "counts", "one count per side and category");
        if (r.TotalPerSide is { } total)
            foreach (var side in new[] { r.PartyA, r.PartyB })
                v.Check((r.Counts ?? []).Where(c => c.ReleasingParty == side).Sum(c => c.Count) == total, "totalPerSide", $"the counts of {side} do not add up to {total}");
        v.ThrowIfInvalid();
        return [new ExchangeAgreed(id, r.PartyA, r.PartyB, r.Mediator, r.Intermediary, r.Counts!, r.Place, r.PlannedDate, actor.Subject, now)];
    }

    public static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (AgreeExchangeRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store,
            PartyDirectory parties, TimeProvider clock) =>
        {
            var actor = Actor.From(http.User);
            var id = "exch-" + Guid.CreateVersion7().ToString("N");
            var events = Decide(id, request, actor, parties, clock.GetUtcNow());
            var exchange = Exchange.Evolve(null, events[0])!;
            var session = store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party })
                .Append(id, "exchange", ExpectedVersion.NoStream, events);
            foreach (var message in Handling.Messages(exchange, events, new Dictionary<string, string>())) session.Publish(message, id);
            await session.SaveChangesAsync(http.RequestAborted);
            return TypedResults.Created($"/exchanges/{id}", new CommandResult(id, 1, exchange.Status));
        }).RequireAuthorization(p => p.RequireRole(Roles.Verifier, Roles.Admin));
}
