using Verification.EventStore;
using Verification.Pullbacks.Domain;
using Verification.ServiceDefaults;
using Contract = Verification.Contracts;

namespace Verification.Pullbacks;

public sealed record CommandResult(string Id, long Version, CommitmentStatus Status);

internal static class Handling
{
    public static async Task<(Commitment Commitment, long Version)> LoadAsync(EventStore.EventStore store, string id, CancellationToken cancellationToken)
    {
        var (commitment, version) = await store.AggregateAsync<Commitment>(id, Commitment.Evolve, cancellationToken: cancellationToken);
        return commitment is null ? throw Rejection.NotFound($"commitment {id} does not exist") : (commitment, version);
    }

    public static async Task<IResult> ExecuteAsync(HttpContext http, EventStore.EventStore store, string? id, Func<Commitment?, Actor, DateTimeOffset, object[]> decide, TimeProvider clock)
    {
        var actor = Actor.From(http.User);
        Commitment? before = null;
        long version = 0;
        if (id is not null) (before, version) = await LoadAsync(store, id, http.RequestAborted);
        var events = decide(before, actor, clock.GetUtcNow());
        var after = events.Aggregate(before, Commitment.Evolve)!;
        var session = store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party })
            .Append(after.Id, "pullback", version, events);
        foreach (var message in Messages(after, events)) session.Publish(message, after.Id);
        var saved = await session.SaveChangesAsync(http.RequestAborted);
        var result = new CommandResult(after.Id, saved[0].Version, after.Status);
        return id is null ? TypedResults.Created($"/pullbacks/{after.Id}", result) : TypedResults.Ok(result);
    }

    private static string Wire<T>(T value) where T : struct, Enum => System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(value.ToString());

    public static IEnumerable<object> Messages(Commitment c, IEnumerable<object> events)
    {
        var party = c.Committed.Party;
        foreach (var e in events)
        {
            switch (e)
            {
                case PullbackCommitted p:
                    yield return new Contract.PullbackCommitted(p.CommitmentId, p.Party, p.WeaponClasses.Select(Wire).ToArray(), p.Deadline, p.CommittedAt);
                    break;
                case ObservationRecorded o:
                    yield return new Contract.PullbackObservationRecorded(o.CommitmentId, o.ObservationId, Wire(o.WeaponClass), o.Count, o.InsideZone, o.ObservedAt);
                    break;
                case ViolationDetected v:
                    var seen = c.Observations.First(o => o.ObservationId == v.ObservationId);
                    yield return new Contract.PullbackViolationDetected(v.CommitmentId, party, v.ObservationId, Wire(seen.WeaponClass), seen.Latitude, seen.Longitude, seen.ObservedAt, v.DetectedAt);
                    break;
                case HoldingSiteDiscrepancyFound d:
                    yield return new Contract.HoldingSiteDiscrepancy(d.CommitmentId, party, d.SiteId, d.Kind, d.Detail, d.FoundAt);
                    break;
                case CommitmentStatusChanged { Status: CommitmentStatus.VerifiedComplete } s:
                    yield return new Contract.PullbackVerified(s.CommitmentId, party, s.Grounds, s.ChangedAt);
                    break;
                case CommitmentStatusChanged { Status: CommitmentStatus.Lapsed } s:
                    yield return new Contract.PullbackLapsed(s.CommitmentId, party, c.Committed.Deadline, s.ChangedAt);
                    break;
            }
        }
    }
}
