using Microsoft.AspNetCore.Mvc;
using Verification.Pullbacks.Domain;
using Verification.ServiceDefaults;

namespace Verification.Pullbacks.Committing;

public sealed record CommitRequest(string Party, WeaponClass[] WeaponClasses, Zone Zone, DateTimeOffset Deadline, HoldingSite[]? HoldingSites = null,
    int RequiredClearDays = 7, double CoverageThreshold = 0.8, int VerificationWindowDays = 30);

/// <summary>The mission records a pullback commitment: who withdraws what, from which zone, by when, to which holding sites.</summary>
public static class Commit
{
    public static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", (CommitRequest r, HttpContext http, [FromKeyedServices(PullbacksModule.Name)] EventStore.EventStore store, PartyDirectory parties, TimeProvider clock) =>
            Handling.ExecuteAsync(http, store, null, (_, actor, now) => Rules.Commit("pb-" + Guid.CreateVersion7().ToString("N"), r.Party, r.WeaponClasses ?? [], r.Zone ?? new Zone(),
                r.Deadline, r.HoldingSites ?? [], r.RequiredClearDays, r.CoverageThreshold, r.VerificationWindowDays, actor, parties, now), clock))
        .RequireAuthorization(p => p.RequireRole(Roles.Verifier, Roles.Admin));
}
