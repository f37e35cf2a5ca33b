using Microsoft.AspNetCore.Mvc;
using Verification.Exchanges.Domain;
using Verification.ServiceDefaults;

namespace Verification.Exchanges.Closing;

public sealed record CloseRequest(string? Reason = null);

/// <summary>The mission closes the exchange: completed if reciprocal as agreed, partly completed otherwise, or collapsed with a reason.</summary>
public static class CloseExchange
{
    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/{id}/completion", (string id, CloseRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (x, actor, released, now) => Decisions.Close(x, actor, false, request.Reason, released, now), clock))
            .RequireAuthorization(p => p.RequireRole(Roles.Verifier, Roles.Admin));
        group.MapPost("/{id}/collapse", (string id, CloseRequest request, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, id, (x, actor, released, now) => Decisions.Close(x, actor, true, request.Reason, released, now), clock))
            .RequireAuthorization(p => p.RequireRole(Roles.Verifier, Roles.Admin));
    }
}
