using Microsoft.AspNetCore.Mvc;
using Verification.EventStore;
using Verification.Hotline.Alerts.Reading;
using Verification.Hotline.Domain;
using Verification.ServiceDefaults;

namespace Verification.Hotline.Alerts.Acknowledging;

public sealed record AcknowledgeRequest(AcknowledgementResponse Response = AcknowledgementResponse.Received, string? Text = null);
public sealed record ObjectRequest(string Reason);
public sealed record AlertCommandResult(string Id, long Version, AlertStatus Status);

/// <summary>The addressed party's liaison officer acknowledges (or, for a pre-notification, objects). The first answer wins.</summary>
public static class Acknowledge
{
    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/{id}/acknowledgement", (string id, AcknowledgeRequest request, HttpContext http, [FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store,
                TimeProvider clock, AlertFeed feed) =>
            ExecuteAsync(http, store, feed, id, (alert, actor, now) => Alert.Acknowledge(alert, actor, request.Response, request.Text, now), clock))
            .RequireAuthorization(Roles.Liaison);
        group.MapPost("/{id}/objection", (string id, ObjectRequest request, HttpContext http, [FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store,
                TimeProvider clock, AlertFeed feed) =>
            ExecuteAsync(http, store, feed, id, (alert, actor, now) => Alert.Object(alert, actor, request.Reason, now), clock))
            .RequireAuthorization(Roles.Liaison);
    }

    private static async Task<IResult> ExecuteAsync(HttpContext http, EventStore.EventStore store, AlertFeed feed, string id,
        Func<Alert, Actor, DateTimeOffset, object[]> decide, TimeProvider clock)
    {
        var (alert, version) = await store.AggregateAsync<Alert>(id, Alert.Evolve, cancellationToken: http.RequestAborted);
        if (alert is null) throw Rejection.NotFound($"alert {id} does not exist");
        var actor = Actor.From(http.User);
        var events = decide(alert, actor, clock.GetUtcNow());
        var after = events.Aggregate(alert, (a, e) => Alert.Evolve(a, e)!);
        var session = store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party });
        session.Append(id, "alert", version, events);
        foreach (var message in Messages.For(after, events)) session.Publish(message, id);
        // Two officers racing: the stream version lets exactly one through; the other gets 409.
        var saved = await session.SaveChangesAsync(http.RequestAborted);
        feed.Publish(after, saved[0].Version);
        return TypedResults.Ok(new AlertCommandResult(id, saved[0].Version, after.Status));
    }
}
