using Microsoft.AspNetCore.Mvc;
using Verification.Pullbacks.Domain;
using Verification.ServiceDefaults;

namespace Verification.Pullbacks.Observing;

public sealed record ObservationRequest(DateTimeOffset ObservedAt, Sensor Sensor, double Latitude, double Longitude, WeaponClass WeaponClass, int Count,
    double Confidence = 1, string[]? Serials = null, string[]? EvidenceSha256 = null);
public sealed record ClearDayRequest(DateOnly Day, double Coverage, Sensor Sensor);
public sealed record SiteVisitRequest(string SiteId, DateTimeOffset VisitedAt, SiteCheck[] Checks);

/// <summary>Monitors record what they see: weapons (and where), zones seen clear, holding-site revisits.</summary>
public static class Observe
{
    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/{id}/observations", (string id, ObservationRequest r, HttpContext http, [FromKeyedServices(PullbacksModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (c, actor, now) => Rules.Observe(c!, new ObservationRecorded(id, "obs-" + Guid.CreateVersion7().ToString("N"), r.ObservedAt,
                r.Sensor, r.Latitude, r.Longitude, r.WeaponClass, r.Count, r.Serials ?? [], r.Confidence, r.EvidenceSha256 ?? [], false, actor.Subject, now)), clock))
            .RequireAuthorization(Roles.Monitor);
        group.MapPost("/{id}/clear-days", (string id, ClearDayRequest r, HttpContext http, [FromKeyedServices(PullbacksModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (c, actor, now) =>
            {
                new Validation().Check(r.Coverage is >= 0 and <= 1, "coverage", "must be between 0 and 1").Check(Enum.IsDefined(r.Sensor), "sensor", "is not a known sensor")
                    .Check(r.Day <= DateOnly.FromDateTime(now.UtcDateTime), "day", "cannot be in the future").ThrowIfInvalid();
                if (c!.Decided) throw Rejection.Conflict($"commitment {id} is already {c.Status}");
                return [new ZoneObservedClear(id, r.Day, r.Coverage, r.Sensor, actor.Subject, now)];
            }, clock))
            .RequireAuthorization(Roles.Monitor);
        group.MapPost("/{id}/site-visits", (string id, SiteVisitRequest r, HttpContext http, [FromKeyedServices(PullbacksModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (c, actor, now) => Rules.Visit(c!, new HoldingSiteVisited(id, r.SiteId, r.VisitedAt, r.Checks ?? [], actor.Subject, now)), clock))
            .RequireAuthorization(Roles.Monitor);
    }
}
