using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Verification.EventStore;
using Verification.Hotline.Domain;
using Verification.ServiceDefaults;

namespace Verification.Hotline.Channels;

public sealed record ChangeChannelStatusRequest(ChannelStatus Status, string? Reason = null);
public sealed record ChannelState(string Party, ChannelStatus Status, string? Reason, DateTimeOffset ChangedAt);

/// <summary>A party declares its channel active or suspended. Alerts to a suspended channel are still raised, recorded and counted.</summary>
public static class ChangeChannelStatus
{
    public const string Projection = "channel_view";

    public static DocumentProjection<ChannelState> View() => new(Projection,
        e => e.Data is ChannelStatusChanged c ? c.Party : null,
        (state, e) => e.Data is ChannelStatusChanged c ? new ChannelState(c.Party, c.Status, c.Reason, c.ChangedAt) : state);

    public static async Task<IReadOnlySet<string>> SuspendedAsync(EventStore.EventStore store, CancellationToken cancellationToken) =>
        (await store.QueryDocumentsAsync<ChannelState>(Projection, "d.data->>'status' = 'suspended'", null, cancellationToken: cancellationToken))
            .Select(c => c.Party).ToHashSet();

    public static object[] Decide(string party, ChangeChannelStatusRequest r, Actor officer, PartyDirectory parties, ChannelState? current, DateTimeOffset now)
    {
        new Validation().Check(Enum.IsDefined(r.Status), "status", "must be active or suspended")
            .Check(r.Reason is null || r.Reason.Length <= 2000, "reason", "must be at most 2000 characters").ThrowIfInvalid();
        if (parties.Find(party) is null) throw Rejection.NotFound($"no party or mediator {party}");
        if (officer.Party != party) throw Rejection.Forbidden("a party declares only its own channel's status");
        if ((current?.Status ?? ChannelStatus.Active) == r.Status) throw Rejection.Conflict($"the channel of {party} is already {r.Status.ToString().ToLowerInvariant()}");
        return [new ChannelStatusChanged(party, r.Status, r.Reason, officer.Subject, now)];
    }

    public static void Map(RouteGroupBuilder group)
    {
        group.MapPut("/{party}", async (string party, ChangeChannelStatusRequest request, HttpContext http,
            [FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store, PartyDirectory parties, TimeProvider clock) =>
        {
            var actor = Actor.From(http.User);
            var stream = $"channel-{party}";
            var version = await store.StreamVersionAsync(stream, http.RequestAborted);
            var current = await store.LoadDocumentAsync<ChannelState>(Projection, party, http.RequestAborted);
            var events = Decide(party, request, actor, parties, current, clock.GetUtcNow());
            var changed = (ChannelStatusChanged)events[0];
            await store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party })
                .Append(stream, "channel", version, events)
                .Publish(new Contracts.ChannelStatusChanged(party, Messages.Wire(changed.Status), changed.Reason, changed.ChangedAt), stream)
                .SaveChangesAsync(http.RequestAborted);
            return TypedResults.Ok(new ChannelState(party, changed.Status, changed.Reason, changed.ChangedAt));
        }).RequireAuthorization(Roles.Liaison);

        group.MapGet("/", async Task<Ok<IReadOnlyList<ChannelState>>> ([FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store, PartyDirectory parties, HttpContext http) =>
        {
            var declared = (await store.QueryDocumentsAsync<ChannelState>(Projection, "true", null, cancellationToken: http.RequestAborted)).ToDictionary(c => c.Party);
            return TypedResults.Ok<IReadOnlyList<ChannelState>>(parties.All
                .Select(p => declared.TryGetValue(p.Code, out var c) ? c : new ChannelState(p.Code, ChannelStatus.Active, null, DateTimeOffset.MinValue)).ToList());
        });
    }
}
