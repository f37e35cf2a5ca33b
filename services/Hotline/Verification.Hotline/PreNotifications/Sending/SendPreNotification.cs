using Microsoft.AspNetCore.Mvc;
using Verification.EventStore;
using Verification.Hotline.Alerts.Reading;
using Verification.Hotline.Domain;
using Verification.ServiceDefaults;

namespace Verification.Hotline.PreNotifications.Sending;

public sealed record SendPreNotificationRequest(
    string ToParty, ActivityKind Activity, double Latitude, double Longitude, double RadiusKm, string Region,
    DateTimeOffset WindowFrom, DateTimeOffset WindowTo, string Details);

public sealed record SentResponse(string Id, DateTimeOffset DueAt);

/// <summary>A party's liaison officer notifies a planned activity (a repair crew, a pullback movement, a convoy) to the other party.</summary>
public static class SendPreNotification
{
    public static AlertRaised Decide(string id, SendPreNotificationRequest r, Actor officer, PartyDirectory parties, HotlineRules rules, bool suspended, DateTimeOffset now)
    {
        new Validation()
            .Check(parties.IsParty(officer.Party), "party", "the sender's token must name a party to the agreement")
            .Check(parties.IsParty(r.ToParty) && r.ToParty != officer.Party, "toParty", "must be the other party to the agreement")
            .Check(Enum.IsDefined(r.Activity), "activity", "is not a known activity")
            .Check(r.Latitude is >= -90 and <= 90, "latitude", "must be between -90 and 90")
            .Check(r.Longitude is >= -180 and <= 180, "longitude", "must be between -180 and 180")
            .Check(r.RadiusKm is > 0 and <= 500, "radiusKm", "must be above 0 and at most 500")
            .Check(!string.IsNullOrWhiteSpace(r.Region) && r.Region.Length <= 500, "region", "is required, at most 500 characters")
            .Check(r.WindowTo > r.WindowFrom, "windowTo", "must be after windowFrom")
            .Check(r.WindowTo - r.WindowFrom <= TimeSpan.FromDays(31), "windowTo", "a window is at most 31 days")
            .Check(r.WindowTo > now, "windowTo", "the window has already ended")
            .Check(!string.IsNullOrWhiteSpace(r.Details) && r.Details.Length <= 4000, "details", "is required, at most 4000 characters")
            .ThrowIfInvalid();
        var fields = new AlertFields(Region: r.Region, Latitude: r.Latitude, Longitude: r.Longitude, Activity: r.Activity, RadiusKm: r.RadiusKm,
            WindowFrom: r.WindowFrom.ToUniversalTime(), WindowTo: r.WindowTo.ToUniversalTime(), Details: r.Details);
        return new AlertRaised(id, AlertKind.PreNotification, r.ToParty, officer.Party, "preNotification", fields, suspended, officer.Subject, now,
            now + rules.Deadlines["preNotification"]);
    }

    public static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (SendPreNotificationRequest request, HttpContext http, [FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store,
            PartyDirectory parties, HotlineRules rules, TimeProvider clock, AlertFeed feed) =>
        {
            var actor = Actor.From(http.User);
            var suspended = await Channels.ChangeChannelStatus.SuspendedAsync(store, http.RequestAborted);
            var raised = Decide("alert-pn-" + Guid.CreateVersion7().ToString("N"), request, actor, parties, rules, suspended.Contains(request.ToParty), clock.GetUtcNow());
            var alert = Alert.Evolve(null, raised)!;
            var session = store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party })
                .Append(raised.AlertId, "alert", ExpectedVersion.NoStream, raised);
            foreach (var message in Messages.For(alert, [raised])) session.Publish(message, raised.AlertId);
            await session.SaveChangesAsync(http.RequestAborted);
            feed.Publish(alert, 1);
            return TypedResults.Created($"/alerts/{raised.AlertId}", new SentResponse(raised.AlertId, raised.DueAt));
        }).RequireAuthorization(Roles.Liaison);
}
