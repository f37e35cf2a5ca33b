using Microsoft.AspNetCore.Mvc;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Grading;

public sealed record OverrideBestFiguresRequest(Figures Figures, string Reason);

/// <summary>A verifier replaces the rule's "best" figures with their own, giving a reason; sources stay untouched.</summary>
public static class OverrideBestFigures
{
    public static object[] Decide(Incident incident, OverrideBestFiguresRequest r, Actor verifier, DateTimeOffset now)
    {
        new Validation()
            .Check(r.Figures is not null, "figures", "is required")
            .Figures("figures", r.Figures)
            .Text("reason", r.Reason, required: true)
            .ThrowIfInvalid();
        if (incident.Retracted) throw Rejection.Conflict($"incident {incident.Id} was retracted");
        return [new BestFiguresOverridden(incident.Id, r.Figures!, r.Reason, verifier.Subject, now)];
    }

    public static RouteHandlerBuilder Map(RouteGroupBuilder group) =>
        group.MapPut("/{id}/best-figures", (string id, OverrideBestFiguresRequest request, HttpContext http,
                [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (incident, actor, now) => Decide(incident, request, actor, now), clock))
        .RequireAuthorization(Roles.Verifier);
}
