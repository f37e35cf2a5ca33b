using Microsoft.AspNetCore.Mvc;
using Verification.Exchanges.Domain;
using Verification.ServiceDefaults;

namespace Verification.Exchanges.Checks;

public sealed record CheckPersonRequest(string PersonId, bool IdentityConfirmed, bool? WishToReturn = null, bool? FitToTravel = null, string? Note = null);
public sealed record FlagPersonRequest(string PersonId, PersonFlag Flag, string Reason);

/// <summary>The intermediary meets each person in private: identity, wish to return, fitness to travel. Flags record what else it finds.</summary>
public static class CheckPerson
{
    private static void Listed(Exchange x, string personId)
    {
        if (!x.Lists.Values.Any(l => l.Entries.Any(e => e.PersonId == personId)))
            throw Rejection.Unprocessable($"{personId} is on no list of exchange {x.Id}");
    }

    public static object[] Decide(Exchange x, CheckPersonRequest r, Actor actor, DateTimeOffset now)
    {
        Decisions.Open(x);
        new Validation().Check(r.Note is null || r.Note.Length <= 2000, "note", "at most 2000 characters").ThrowIfInvalid();
        Listed(x, r.PersonId);
        return [new PersonChecked(x.Id, r.PersonId, r.IdentityConfirmed, r.WishToReturn, r.FitToTravel, r.Note, actor.Subject, now)];
    }

    public static object[] Flag(Exchange x, FlagPersonRequest r, Actor actor, DateTimeOffset now)
    {
        Decisions.Open(x);
        new Validation().Check(Enum.IsDefined(r.Flag), "flag", "is not a known flag")
            .Check(!string.IsNullOrWhiteSpace(r.Reason) && r.Reason.Length <= 2000, "reason", "is required, at most 2000 characters").ThrowIfInvalid();
        Listed(x, r.PersonId);
        return [new PersonFlagged(x.Id, r.PersonId, r.Flag, r.Reason, actor.Subject, now)];
    }

    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/{id}/checks", (string id, CheckPersonRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (x, actor, _, now) => Decide(x, request, actor, now), clock)).RequireAuthorization(Roles.Intermediary);
        group.MapPost("/{id}/flags", (string id, FlagPersonRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (x, actor, _, now) => Flag(x, request, actor, now), clock)).RequireAuthorization(p => p.RequireRole(Roles.Intermediary, Roles.Verifier));
    }
}
