using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Npgsql;
using Verification.EventStore;
using Verification.Incidents.Domain;
using Verification.ServiceDefaults;

namespace Verification.Incidents.Reading;

public sealed record IncidentSummary(
    string Id, DateTimeOffset OccurredFrom, DateTimeOffset? OccurredTo, TimePrecision OccurredPrecision, Location Location, Category Category,
    TargetType[] TargetTypes, string? AllegedParty, Grade? Grade, Attribution? Attribution, string Severity, Figures Best, Figures Range,
    int SourceCount, bool Retracted, string? SameEventAs, string FiledBy, DateTimeOffset FiledAt)
{
    public static IncidentSummary From(Incident i) => new(i.Id, i.Filed.OccurredFrom, i.Filed.OccurredTo, i.Filed.OccurredPrecision, i.Filed.Location,
        i.Filed.Category, i.Filed.TargetTypes, i.Filed.AllegedParty, i.Finding?.Grade, i.Finding?.Attribution, i.Severity(), i.Best(), i.Range(),
        i.Sources.Count, i.Retracted, i.SameEventAs, i.Filed.FiledBy, i.Filed.FiledAt);
}

public sealed record HistoryEntry(long Version, string Type, DateTimeOffset RecordedAt, string? ActorSub, string? ActorRole, string? ActorParty, object Data);

public sealed record IncidentDetails(
    IncidentSummary Summary, long Version, string Narrative, Evidence[] Evidence, IReadOnlyList<Source> Sources, IReadOnlyList<IncidentGraded> Findings,
    IReadOnlyList<Position> Positions, BestFiguresOverridden? Override, IncidentRetracted? Retraction, IReadOnlyList<HistoryEntry> History);

public sealed record IncidentPage(IReadOnlyList<IncidentSummary> Items, int Page, int PageSize);

/// <summary>Reads: one incident with its whole history (or as known at a recorded time), and filtered, paged lists.</summary>
public static class IncidentQueries
{
    public const string Projection = "incident_view";

    public static DocumentProjection<Incident> View() => DocumentProjection<Incident>.SingleStream(Projection, (doc, e) => Incident.Evolve(doc, e.Data))
        .Index("region", "data->'filed'->'location'->>'region'")
        .Index("category", "data->'filed'->>'category'")
        .Index("occurred", "data->'filed'->>'occurredFrom'");

    /// <summary>Query strings use the same camelCase names as the JSON bodies.</summary>
    private static bool Wire<T>(string value) where T : struct, Enum => Enum.GetValues<T>().Any(v => Messages.Wire(v) == value);

    public static void Map(RouteGroupBuilder group)
    {
        group.MapGet("/{id}", Get);
        group.MapGet("/", List);
    }

    private static async Task<Results<Ok<IncidentDetails>, NotFound<ProblemDetails>>> Get(string id, HttpContext http,
        [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store, DateTimeOffset? asOf = null)
    {
        var events = await store.ReadStreamAsync(id, recordedUpTo: asOf, cancellationToken: http.RequestAborted);
        var incident = events.Aggregate((Incident?)null, (state, e) => Incident.Evolve(state, e.Data));
        if (incident is null)
            return TypedResults.NotFound(new ProblemDetails { Status = 404, Title = "Not found", Detail = asOf is null ? $"incident {id} does not exist" : $"incident {id} was not known at {asOf:O}" });
        var version = events[^1].Version;
        http.Response.Headers.ETag = $"\"{version}\"";
        return TypedResults.Ok(new IncidentDetails(IncidentSummary.From(incident), version, incident.Filed.Narrative, incident.Filed.Evidence, incident.Sources,
            incident.Findings, incident.Positions, incident.Override, incident.Retraction,
            events.Select(e => new HistoryEntry(e.Version, e.Type, e.RecordedAt, e.Metadata.ActorSub, e.Metadata.ActorRole, e.Metadata.ActorParty, e.Data)).ToList()));
    }

    private static async Task<Ok<IncidentPage>> List(HttpContext http, [FromKeyedServices(IncidentsModule.Name)] EventStore.EventStore store,
        DateTimeOffset? from = null, DateTimeOffset? to = null, string? region = null, string? category = null, string? targetType = null,
        string? grade = null, string? party = null, string? bbox = null, bool includeRetracted = false, int page = 1, int pageSize = 50)
    {
        var v = new Validation()
            .Check(page is >= 1 and <= 100_000, "page", "must be between 1 and 100000")
            .Check(pageSize is >= 1 and <= 200, "pageSize", "must be between 1 and 200")
            .Check(region is null || region.Length <= Rules.MaxShortText, "region", "is too long")
            .Check(party is null || party.Length <= 20, "party", "is too long")
            .Check(category is null || Wire<Category>(category), "category", "is not a known category")
            .Check(targetType is null || Wire<TargetType>(targetType), "targetType", "is not a known target type")
            .Check(grade is null || Wire<Grade>(grade), "grade", "is not a known grade");
        double[]? box = null;
        if (bbox is not null)
        {
            var parts = bbox.Split(',');
            box = parts.Length == 4 && parts.All(p => double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
                ? parts.Select(p => double.Parse(p, CultureInfo.InvariantCulture)).ToArray() : null;
            v.Check(box is not null && box[0] <= box[2] && box[1] <= box[3] && box[0] >= -180 && box[2] <= 180 && box[1] >= -90 && box[3] <= 90,
                "bbox", "must be minLon,minLat,maxLon,maxLat in degrees");
        }
        v.ThrowIfInvalid();

        var where = new List<string> { "true" };
        void Add(string clause) => where.Add(clause);
        if (!includeRetracted) Add("NOT (d.data->>'retracted')::boolean");
        if (from is not null) Add("(d.data->'filed'->>'occurredFrom')::timestamptz >= @from");
        if (to is not null) Add("(d.data->'filed'->>'occurredFrom')::timestamptz <= @to");
        if (region is not null) Add("d.data->'filed'->'location'->>'region' = @region");
        if (category is not null) Add("d.data->'filed'->>'category' = @category");
        if (targetType is not null) Add("d.data->'filed'->'targetTypes' ? @targetType");
        if (grade is not null) Add("d.data->'finding'->>'grade' = @grade");
        if (party is not null) Add("(d.data->'filed'->>'allegedParty' = @party OR d.data->'finding'->'attribution'->>'party' = @party)");
        if (box is not null)
            Add("(d.data->'filed'->'location'->>'longitude')::float8 BETWEEN @minLon AND @maxLon AND (d.data->'filed'->'location'->>'latitude')::float8 BETWEEN @minLat AND @maxLat");

        var found = await store.QueryDocumentsAsync<Incident>(Projection, string.Join(" AND ", where), p =>
        {
            void Set(string name, object? value) { if (value is not null) p.AddWithValue(name, value); }
            Set("from", from);
            Set("to", to);
            Set("region", region);
            Set("category", category);
            Set("targetType", targetType);
            Set("grade", grade);
            Set("party", party);
            if (box is not null) { Set("minLon", box[0]); Set("minLat", box[1]); Set("maxLon", box[2]); Set("maxLat", box[3]); }
        }, orderBy: "d.data->'filed'->>'occurredFrom' DESC, d.id", limit: pageSize, offset: (page - 1) * pageSize, cancellationToken: http.RequestAborted);
        return TypedResults.Ok(new IncidentPage(found.Select(IncidentSummary.From).ToList(), page, pageSize));
    }
}
