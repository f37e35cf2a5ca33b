using Microsoft.AspNetCore.Mvc;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Retracting;

public sealed record RetractIncidentRequest(string Reason);

/// <summary>A report filed in error is retracted by its monitor or a verifier: a correction event; nothing is deleted.</summary>
public static class RetractIncident
{
    public static object[] Decide(Incident incident, RetractIncidentRequest r, Actor actor, DateTimeOffset now)
    {
        new Validation().Text("reason", r.Reason, required: true).ThrowIfInvalid();
        if (actor.Role == Roles.Monitor && actor.Subject != incident.Filed.FiledBy)
            throw Rejection.Forbidden("a monitor retracts only their own reports");
        if (incident.Retracted) throw Rejection.Conflict($"incident {incident.Id} was already retracted");
        return [new IncidentRetracted(incident.Id, r.Reason, actor.Subject, now)];
    }

    public static RouteHandlerBuilder Map(RouteGroupBuilder group) =>
        group.MapPost("/{id}/retraction", (string id, RetractIncidentRequest request, HttpContext http,
                [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (incident, actor, now) => Decide(incident, request, actor, now), clock))
        .RequireAuthorization(p => p.RequireRole(Roles.Monitor, Roles.Verifier));
}
