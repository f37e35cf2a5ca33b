using Microsoft.AspNetCore.Mvc;
using Verification.Exchanges.Domain;
using Verification.ServiceDefaults;

namespace Verification.Exchanges.Handovers;

public sealed record PersonsRequest(string[] PersonIds);

/// <summary>Double entry: the releasing party records a handover, the receiving party confirms it, the intermediary may witness.</summary>
public static class Handover
{
    public static object[] Witness(Exchange x, string[] personIds, Actor actor, DateTimeOffset now)
    {
        Decisions.Open(x);
        var unknown = personIds.Where(p => !x.HandedOverBy.ContainsKey(p) && !x.ConfirmedBy.ContainsKey(p)).ToList();
        if (personIds.Length == 0 || unknown.Count > 0) throw Rejection.Unprocessable($"no handover to witness for {string.Join(", ", unknown.Take(5))}");
        return [new HandoverWitnessed(x.Id, personIds, actor.Subject, now)];
    }

    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/{id}/handovers", (string id, PersonsRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (x, actor, _, now) => Decisions.RecordHandover(x, actor, request.PersonIds ?? [], now), clock)).RequireAuthorization(Roles.Liaison);
        group.MapPost("/{id}/confirmations", (string id, PersonsRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (x, actor, _, now) => Decisions.ConfirmReceipt(x, actor, request.PersonIds ?? [], now), clock)).RequireAuthorization(Roles.Liaison);
        group.MapPost("/{id}/witnessed", (string id, PersonsRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (x, actor, _, now) => Witness(x, request.PersonIds ?? [], actor, now), clock)).RequireAuthorization(Roles.Intermediary);
    }
}
