using System.Diagnostics;
using System.Security.Claims;
using Verification.EventStore;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents;

/// <summary>The one path every command on an existing incident takes: load, check If-Match, decide, append with publish.</summary>
internal static class Handling
{
    public static EventMetadata Metadata(ClaimsPrincipal user)
    {
        var actor = Actor.From(user);
        var trace = Activity.Current?.TraceId.ToString();
        return new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party, CorrelationId = trace, TraceId = trace };
    }

    /// <summary>If-Match as a stream version: <c>"3"</c> or <c>W/"3"</c>.</summary>
    public static long? IfMatch(HttpRequest request)
    {
        var value = request.Headers.IfMatch.ToString();
        if (string.IsNullOrWhiteSpace(value)) return null;
        var trimmed = value.Trim().TrimStart('W', '/').Trim('"');
        return long.TryParse(trimmed, System.Globalization.CultureInfo.InvariantCulture, out var version)
            ? version
            : throw Rejection.Invalid(new Dictionary<string, string[]> { ["If-Match"] = ["must be the incident's version as an ETag, e.g. \"3\""] });
    }

    public static async Task<(Incident Incident, long Version)> LoadAsync(EventStore.EventStore store, string id, CancellationToken cancellationToken)
    {
        var (incident, version) = await store.AggregateAsync<Incident>(id, Incident.Evolve, cancellationToken: cancellationToken);
        return incident is null ? throw Rejection.NotFound($"incident {id} does not exist") : (incident, version);
    }

    /// <summary>Runs a decision on the incident and appends its events (with the messages they cause) at the version read.</summary>
    public static async Task<IResult> ExecuteAsync(HttpContext http, EventStore.EventStore store, string id,
        Func<Incident, Actor, DateTimeOffset, object[]> decide, TimeProvider clock)
    {
        var (incident, version) = await LoadAsync(store, id, http.RequestAborted);
        if (IfMatch(http.Request) is { } expected && expected != version)
            throw new Rejection(412, "The incident has changed", $"incident {id} is at version {version}, not {expected}");
        var events = decide(incident, Actor.From(http.User), clock.GetUtcNow());
        var after = events.Aggregate(incident, (state, e) => Incident.Evolve(state, e)!);
        var session = store.OpenSession(Metadata(http.User)).Append(id, "incident", version, events);
        foreach (var message in Messages.For(incident, after, events)) session.Publish(message, id);
        var saved = await session.SaveChangesAsync(http.RequestAborted);
        http.Response.Headers.ETag = $"\"{saved[0].Version}\"";
        return TypedResults.Ok(new CommandResult(id, saved[0].Version));
    }
}

public sealed record CommandResult(string Id, long Version);
