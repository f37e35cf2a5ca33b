using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Verification.EventStore;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Filing;

/// <summary>Parameters with defaults are optional in the JSON; the others are required.</summary>
public sealed record FileIncidentRequest(
    DateTimeOffset OccurredFrom, TimePrecision OccurredPrecision, Location Location, Category Category, TargetType[] TargetTypes, string Narrative,
    DateTimeOffset? OccurredTo = null, Figures? Figures = null, string? AllegedParty = null, Evidence[]? Evidence = null);

public sealed record FiledResponse(string Id, long Version);

/// <summary>A monitor files an incident report; their own figures become its first source.</summary>
public static class FileIncident
{
    public static object[] Decide(string incidentId, FileIncidentRequest r, Actor monitor, PartyDirectory parties, DateTimeOffset now)
    {
        var v = new Validation()
            .Defined("occurredPrecision", r.OccurredPrecision)
            .NotFuture("occurredFrom", r.OccurredFrom, now)
            .NotFuture("occurredTo", r.OccurredTo, now)
            .Check(r.OccurredTo is null || r.OccurredTo >= r.OccurredFrom, "occurredTo", "must not be before occurredFrom")
            .Check(r.OccurredPrecision != TimePrecision.Window || r.OccurredTo is not null, "occurredTo", "is required when occurredPrecision is window")
            .Check(r.Location is not null, "location", "is required")
            .Defined("category", r.Category)
            .Check(r.TargetTypes is { Length: > 0 and <= 10 }, "targetTypes", "must name 1 to 10 target types")
            .Figures("figures", r.Figures)
            .Text("narrative", r.Narrative, required: true)
            .Check(r.AllegedParty is null || parties.IsParty(r.AllegedParty), "allegedParty", "is not a party to the agreement")
            .Check((r.Evidence?.Length ?? 0) <= Rules.MaxEvidence, "evidence", $"at most {Rules.MaxEvidence} items");
        foreach (var (t, i) in (r.TargetTypes ?? []).Select((t, i) => (t, i))) v.Defined($"targetTypes[{i}]", t);
        if (r.Location is { } l)
        {
            v.Coordinates("location", l.Latitude, l.Longitude).Text("location.region", l.Region, required: true, Rules.MaxShortText)
             .Text("location.adminArea", l.AdminArea, required: false, Rules.MaxShortText).Defined("location.precision", l.Precision)
             .Check(l.ControlledBy is null || parties.IsParty(l.ControlledBy), "location.controlledBy", "is not a party to the agreement");
        }
        foreach (var (e, i) in (r.Evidence ?? []).Select((e, i) => (e, i)))
        {
            var path = $"evidence[{i}]";
            v.Check(e.Sha256 is { Length: 64 } && e.Sha256.All(Uri.IsHexDigit), path + ".sha256", "must be 64 hexadecimal characters")
             .Text(path + ".mediaType", e.MediaType, required: true, 200).Check(e.SizeBytes >= 0, path + ".sizeBytes", "cannot be negative")
             .NotFuture(path + ".capturedAt", e.CapturedAt, now).Coordinates(path, e.Latitude, e.Longitude)
             .Text(path + ".uri", e.Uri, required: false, 2000);
        }
        v.ThrowIfInvalid();

        var filed = new IncidentFiled(incidentId, r.OccurredFrom.ToUniversalTime(), r.OccurredTo?.ToUniversalTime(), r.OccurredPrecision, r.Location!,
            r.Category, r.TargetTypes!.Distinct().ToArray(), r.Narrative, r.AllegedParty,
            (r.Evidence ?? []).Select(e => e with { Sha256 = e.Sha256.ToLowerInvariant() }).ToArray(), monitor.Subject, now);
        var ownCount = new SourceReported(incidentId, "s1", SourceKind.MissionPatrol, null, monitor.Subject, r.Figures ?? Figures.None, now, null, monitor.Subject, now);
        return [filed, ownCount];
    }

    public static RouteHandlerBuilder Map(RouteGroupBuilder group) =>
        group.MapPost("/", Handle).RequireAuthorization(Roles.Monitor).WithName("FileIncident");

    private static async Task<Results<Created<FiledResponse>, Ok<FiledResponse>>> Handle(
        FileIncidentRequest request, HttpContext http, [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store,
        PartyDirectory parties, TimeProvider clock, [FromHeader(Name = "Idempotency-Key")] string? idempotencyKey)
    {
        var actor = Actor.From(http.User);
        var key = string.IsNullOrWhiteSpace(idempotencyKey) ? null : idempotencyKey;
        if (key?.Length > 200) throw Rejection.Invalid(new Dictionary<string, string[]> { ["Idempotency-Key"] = ["must be at most 200 characters"] });
        var scope = "file-incident:" + actor.Subject;
        // Ids derive from the key, so a request retried after a crash files the same incident once.
        var id = "inc-" + (key is not null ? Idempotency.DeriveId(scope, key) : Guid.CreateVersion7()).ToString("N");
        // Decided before the key is claimed: a request refused as invalid leaves its key free for the corrected one.
        var events = Decide(id, request, actor, parties, clock.GetUtcNow());
        Guid[]? eventIds = null;
        if (key is not null)
        {
            var (outcome, stored) = await store.ClaimAsync(scope, key, JsonSerializer.Serialize(request, EventTypes.Json), http.RequestAborted);
            if (outcome == IdempotencyOutcome.DifferentRequest)
                throw new Rejection(422, "Idempotency-Key reused", "this Idempotency-Key was used for a different request");
            if (stored is not null) return TypedResults.Ok(JsonSerializer.Deserialize<FiledResponse>(stored, EventTypes.Json)!);
            eventIds = [Idempotency.DeriveId(scope, key, 1), Idempotency.DeriveId(scope, key, 2)];
        }

        var incident = events.Aggregate((Incident?)null, Incident.Evolve)!;
        var session = store.OpenSession(Handling.Metadata(http.User));
        if (eventIds is null) session.Append(id, "incident", ExpectedVersion.NoStream, events);
        else session.Append(id, "incident", ExpectedVersion.NoStream, events.Select((e, i) => new NewEvent(eventIds[i], e)).ToArray());
        foreach (var message in Messages.For(null, incident, events)) session.Publish(message, id);
        var saved = await session.SaveChangesAsync(http.RequestAborted);

        var response = new FiledResponse(id, saved[0].Version);
        if (key is not null) await store.CompleteAsync(scope, key, JsonSerializer.Serialize(response, EventTypes.Json), http.RequestAborted);
        http.Response.Headers.ETag = $"\"{response.Version}\"";
        return TypedResults.Created($"/incidents/{id}", response);
    }
}
