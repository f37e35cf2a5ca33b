using Microsoft.AspNetCore.Mvc;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Disputes;

public sealed record RecordPartyPositionRequest(string Party, PartyPosition Position, string Statement);

/// <summary>A party disputes the incident or accepts responsibility: recorded by a verifier, or by that party's own liaison officer.</summary>
public static class RecordPartyPosition
{
    public static object[] Decide(Incident incident, RecordPartyPositionRequest r, Actor actor, PartyDirectory parties, DateTimeOffset now)
    {
        new Validation()
            .Check(parties.IsParty(r.Party), "party", "is not a party to the agreement")
            .Defined("position", r.Position)
            .Text("statement", r.Statement, required: true)
            .ThrowIfInvalid();
        if (actor.Role == Roles.Liaison && actor.Party != r.Party)
            throw Rejection.Forbidden("a liaison officer records only their own party's position");
        if (incident.Retracted) throw Rejection.Conflict($"incident {incident.Id} was retracted");
        return [new PartyPositionRecorded(incident.Id, r.Party, r.Position, r.Statement, actor.Subject, now)];
    }

    public static RouteHandlerBuilder Map(RouteGroupBuilder group) =>
        group.MapPost("/{id}/positions", (string id, RecordPartyPositionRequest request, HttpContext http,
                [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store, PartyDirectory parties, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (incident, actor, now) => Decide(incident, request, actor, parties, now), clock))
        .RequireAuthorization(p => p.RequireRole(Roles.Verifier, Roles.Liaison));
}
