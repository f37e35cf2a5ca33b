using Microsoft.AspNetCore.Mvc;
using Verification.Pullbacks.Domain;
using Verification.ServiceDefaults;

namespace Verification.Pullbacks.Reading;

/// <summary>A party's officers see their own commitments and the verdicts; the mission and auditors see all.</summary>
public static class PullbackQueries
{
    public static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id}", async (string id, HttpContext http, [FromKeyedServices(PullbacksModule.Name)] EventStore.EventStore store) =>
        {
            var (commitment, version) = await Handling.LoadAsync(store, id, http.RequestAborted);
            var actor = Actor.From(http.User);
            if (actor.Role == Roles.Liaison && actor.Party != commitment.Committed.Party) throw Rejection.Forbidden("a party reads its own commitments");
            http.Response.Headers.ETag = $"\"{version}\"";
            return TypedResults.Ok(commitment);
        });
}
