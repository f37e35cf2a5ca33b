using Microsoft.AspNetCore.Mvc;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Grading;

public sealed record GradeIncidentRequest(Grade Grade, AttributionKind Attribution, string Finding, string? Party = null, string? Reason = null);

/// <summary>A verifier grades the incident (Airwars' scale) and attributes it; a revision needs a reason and keeps the old finding.</summary>
public static class GradeIncident
{
    public static object[] Decide(Incident incident, GradeIncidentRequest r, Actor verifier, PartyDirectory parties, DateTimeOffset now)
    {
        new Validation()
            .Defined("grade", r.Grade)
            .Defined("attribution", r.Attribution)
            .Check(r.Attribution != AttributionKind.Party || parties.IsParty(r.Party), "party", "attribution to a party names a known party code")
            .Check(r.Attribution == AttributionKind.Party || r.Party is null, "party", "only an attribution to a party names one")
            .Text("finding", r.Finding, required: true)
            .Check(incident.Finding is null || !string.IsNullOrWhiteSpace(r.Reason), "reason", "a revision of an earlier finding needs a reason")
            .Text("reason", r.Reason, required: false)
            .ThrowIfInvalid();
        if (incident.Retracted) throw Rejection.Conflict($"incident {incident.Id} was retracted");
        return [new IncidentGraded(incident.Id, incident.Findings.Count + 1, r.Grade, new Attribution(r.Attribution, r.Party), r.Finding, r.Reason, verifier.Subject, now)];
    }

    public static RouteHandlerBuilder Map(RouteGroupBuilder group) =>
        group.MapPost("/{id}/grades", (string id, GradeIncidentRequest request, HttpContext http,
                [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store, PartyDirectory parties, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (incident, actor, now) => Decide(incident, request, actor, parties, now), clock))
        .RequireAuthorization(Roles.Verifier);
}
