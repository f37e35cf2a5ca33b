using Microsoft.AspNetCore.Mvc;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Sources;

public sealed record AddSourceReportRequest(SourceKind Kind, string Reporter, Figures Figures, DateTimeOffset ReportedAt, string? Party = null, string? Reference = null);

/// <summary>Another source's account of the incident: its own figures, kept beside every other source's.</summary>
public static class AddSourceReport
{
    public static object[] Decide(Incident incident, AddSourceReportRequest r, Actor actor, PartyDirectory parties, DateTimeOffset now)
    {
        new Validation()
            .Defined("kind", r.Kind)
            .Check(r.Kind != SourceKind.PartyStatement || parties.IsParty(r.Party), "party", "a party statement names the party (a known party code)")
            .Check(r.Party is null || parties.IsParty(r.Party), "party", "is not a party to the agreement")
            .Text("reporter", r.Reporter, required: true, Rules.MaxShortText)
            .Check(r.Figures is not null, "figures", "is required")
            .Figures("figures", r.Figures)
            .NotFuture("reportedAt", r.ReportedAt, now)
            .Text("reference", r.Reference, required: false, 2000)
            .ThrowIfInvalid();
        if (incident.Retracted) throw Rejection.Conflict($"incident {incident.Id} was retracted");
        var sourceId = $"s{incident.Sources.Count + 1}";
        return [new SourceReported(incident.Id, sourceId, r.Kind, r.Party, r.Reporter, r.Figures!, r.ReportedAt.ToUniversalTime(), r.Reference, actor.Subject, now)];
    }

    public static RouteHandlerBuilder Map(RouteGroupBuilder group) =>
        group.MapPost("/{id}/sources", (string id, AddSourceReportRequest request, HttpContext http,
                [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store, PartyDirectory parties, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (incident, actor, now) => Decide(incident, request, actor, parties, now), clock))
        .RequireAuthorization(p => p.RequireRole(Roles.Monitor, Roles.Verifier));
}
