using Microsoft.AspNetCore.Mvc;
using Verification.Pullbacks.Domain;
using Verification.ServiceDefaults;

namespace Verification.Pullbacks.Deciding;

/// <summary>A verifier asks for the verdict; the rules give it with its grounds, or say why it cannot be given yet.</summary>
public static class Decide
{
    public static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id}/verdict", (string id, HttpContext http, [FromKeyedServices(PullbacksModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (c, actor, now) => Rules.Decide(c!, actor, now), clock))
        .RequireAuthorization(Roles.Verifier);
}
