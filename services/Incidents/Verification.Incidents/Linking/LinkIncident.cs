using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Verification.Incidents.Domain;
using Verification.Incidents.Reading;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Linking;

public sealed record LinkIncidentRequest(string SameEventAs);

/// <summary>Two monitors filed the same event: the later report is linked to the earlier one (both stay in the record).</summary>
public static class LinkIncident
{
    public static object[] Decide(Incident incident, Incident? other, LinkIncidentRequest r, Actor actor, DateTimeOffset now)
    {
        new Validation().Text("sameEventAs", r.SameEventAs, required: true, 100).ThrowIfInvalid();
        if (r.SameEventAs == incident.Id) throw Rejection.Unprocessable("an incident cannot be linked to itself");
        if (other is null) throw Rejection.Unprocessable($"incident {r.SameEventAs} does not exist");
        if (other.SameEventAs == incident.Id) throw Rejection.Unprocessable($"{other.Id} is already linked to {incident.Id}");
        if (incident.Retracted || other.Retracted) throw Rejection.Conflict("a retracted incident cannot be linked");
        if (incident.SameEventAs == r.SameEventAs) throw Rejection.Conflict($"already linked to {r.SameEventAs}");
        return [new IncidentLinked(incident.Id, r.SameEventAs, actor.Subject, now)];
    }

    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/{id}/link", async (string id, LinkIncidentRequest request, HttpContext http,
                [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            {
                var (other, _) = string.IsNullOrWhiteSpace(request.SameEventAs) || request.SameEventAs.Length > 100
                    ? (null, 0)
                    : await store.AggregateAsync<Incident>(request.SameEventAs, Incident.Evolve, cancellationToken: http.RequestAborted);
                return await Handling.ExecuteAsync(http, store, id, (incident, actor, now) => Decide(incident, other, request, actor, now), clock);
            })
            .RequireAuthorization(p => p.RequireRole(Roles.Monitor, Roles.Verifier));

        group.MapGet("/{id}/candidates", Candidates);
    }

    /// <summary>Reports that may describe the same event: same category, within a distance and a time window.</summary>
    private static async Task<Ok<IncidentSummary[]>> Candidates(string id, [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store,
        HttpContext http, double radiusKm = 10, double windowHours = 6)
    {
        new Validation()
            .Check(radiusKm is > 0 and <= 500, "radiusKm", "must be above 0 and at most 500")
            .Check(windowHours is > 0 and <= 24 * 14, "windowHours", "must be above 0 and at most 336")
            .ThrowIfInvalid();
        var (incident, _) = await Handling.LoadAsync(store, id, http.RequestAborted);
        var filed = incident.Filed;
        var degrees = radiusKm / 111.0;
        var found = await store.QueryDocumentsAsync<Incident>(IncidentQueries.Projection,
            "d.id <> @id AND d.data->'filed'->>'category' = @category AND NOT (d.data->>'retracted')::boolean " +
            "AND (d.data->'filed'->>'occurredFrom')::timestamptz BETWEEN @from AND @to " +
            "AND (d.data->'filed'->'location'->>'latitude')::float8 BETWEEN @minLat AND @maxLat",
            p =>
            {
                p.AddWithValue("id", id);
                p.AddWithValue("category", Messages.Wire(filed.Category));
                p.AddWithValue("from", filed.OccurredFrom.AddHours(-windowHours));
                p.AddWithValue("to", (filed.OccurredTo ?? filed.OccurredFrom).AddHours(windowHours));
                p.AddWithValue("minLat", filed.Location.Latitude - degrees);
                p.AddWithValue("maxLat", filed.Location.Latitude + degrees);
            }, limit: 200, cancellationToken: http.RequestAborted);
        return TypedResults.Ok(found
            .Select(c => (c, km: Rules.DistanceKm(filed.Location.Latitude, filed.Location.Longitude, c.Filed.Location.Latitude, c.Filed.Location.Longitude)))
            .Where(x => x.km <= radiusKm).OrderBy(x => x.km).Select(x => IncidentSummary.From(x.c)).ToArray());
    }
}
