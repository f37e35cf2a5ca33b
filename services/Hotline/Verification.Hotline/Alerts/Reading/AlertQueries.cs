using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Verification.EventStore;
using Verification.Hotline.Domain;
using Verification.ServiceDefaults;

namespace Verification.Hotline.Alerts.Reading;

/// <summary>An alert as an officer reads it: the recorded fields, and the text rendered in their party's language.</summary>
public sealed record AlertView(
    string Id, AlertKind Kind, string Addressee, string? FromParty, string Severity, AlertStatus Status, DateTimeOffset RaisedAt, DateTimeOffset DueAt,
    int EscalationStep, string? EscalationLevel, bool ChannelSuspended, AlertFields Fields, AlertAcknowledged? Acknowledgement, AlertObjected? Objection,
    string Language, string Text)
{
    public static AlertView From(Alert a, HotlineRules rules, string language) => new(a.Id, a.Raised.Kind, a.Raised.Addressee, a.Raised.FromParty,
        a.Raised.Severity, a.Status, a.Raised.RaisedAt, a.DueAt, a.Step, a.Escalations.Count > 0 ? a.Escalations[^1].Level : null, a.Raised.ChannelSuspended,
        a.Raised.Fields, a.Acknowledgement, a.Objection, language, rules.Render(a.Raised, language));
}

public sealed record AlertPage(IReadOnlyList<AlertView> Items, int Page, int PageSize);

/// <summary>Pushes new alerts and escalations to the connected officers of the addressed party only.</summary>
public sealed class AlertFeed
{
    private readonly Lock _gate = new();
    private readonly List<(string Party, Channel<Alert> Channel)> _subscribers = [];

    public void Publish(Alert alert)
    {
        lock (_gate)
        {
            foreach (var (party, channel) in _subscribers)
                if (party == alert.Raised.Addressee) channel.Writer.TryWrite(alert);
        }
    }

    public async IAsyncEnumerable<Alert> SubscribeAsync(string party, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var channel = Channel.CreateBounded<Alert>(new BoundedChannelOptions(1000) { FullMode = BoundedChannelFullMode.DropOldest });
        lock (_gate) _subscribers.Add((party, channel));
        try
        {
            await foreach (var alert in channel.Reader.ReadAllAsync(cancellationToken)) yield return alert;
        }
        finally
        {
            lock (_gate) _subscribers.RemoveAll(s => s.Channel == channel);
        }
    }
}

public static class AlertQueries
{
    public const string Projection = "alert_view";

    public static DocumentProjection<Alert> View() => DocumentProjection<Alert>.SingleStream(Projection, (doc, e) => Alert.Evolve(doc, e.Data))
        .Index("addressee_due", "data->'raised'->>'addressee'");

    public static void Map(RouteGroupBuilder group)
    {
        group.MapGet("/", List).RequireAuthorization(p => p.RequireRole(Roles.Liaison, Roles.Auditor, Roles.Admin));
        group.MapGet("/feed", Feed).RequireAuthorization(Roles.Liaison);
        group.MapGet("/{id}", Get).RequireAuthorization(p => p.RequireRole(Roles.Liaison, Roles.Auditor, Roles.Admin));
    }

    private static string LanguageOf(Actor actor, PartyDirectory parties) => parties.Find(actor.Party)?.Language ?? "en";

    /// <summary>A liaison officer sees their own party's alerts (and the pre-notifications it sent); auditors see all.</summary>
    private static async Task<Ok<AlertPage>> List(HttpContext http, [FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store,
        HotlineRules rules, PartyDirectory parties, string status = "open", string? party = null, int page = 1, int pageSize = 50)
    {
        new Validation()
            .Check(status is "open" or "acknowledged" or "objected" or "lapsed" or "all", "status", "must be open, acknowledged, objected, lapsed or all")
            .Check(page is >= 1 and <= 100_000, "page", "must be between 1 and 100000")
            .Check(pageSize is >= 1 and <= 200, "pageSize", "must be between 1 and 200")
            .Check(party is null || party.Length <= 20, "party", "is too long")
            .ThrowIfInvalid();
        var actor = Actor.From(http.User);
        if (actor.Role == Roles.Liaison)
        {
            if (party is not null && party != actor.Party) throw Rejection.Forbidden("a liaison officer reads only their own party's alerts");
            party = actor.Party ?? throw Rejection.Forbidden("the token names no party");
        }
        var alerts = await store.QueryDocumentsAsync<Alert>(Projection,
            "(@status = 'all' OR d.data->>'status' = @status) AND (@party::text IS NULL OR d.data->'raised'->>'addressee' = @party)",
            p =>
            {
                p.AddWithValue("status", status);
                p.Add(new Npgsql.NpgsqlParameter("party", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)party ?? DBNull.Value });
            },
            orderBy: "(d.data->>'dueAt')::timestamptz, d.id", limit: pageSize, offset: (page - 1) * pageSize, cancellationToken: http.RequestAborted);
        var language = LanguageOf(actor, parties);
        return TypedResults.Ok(new AlertPage(alerts.Select(a => AlertView.From(a, rules, language)).ToList(), page, pageSize));
    }

    private static async Task<Ok<AlertView>> Get(string id, HttpContext http, [FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store,
        HotlineRules rules, PartyDirectory parties)
    {
        var (alert, version) = await store.AggregateAsync<Alert>(id, Alert.Evolve, cancellationToken: http.RequestAborted);
        if (alert is null) throw Rejection.NotFound($"alert {id} does not exist");
        var actor = Actor.From(http.User);
        if (actor.Role == Roles.Liaison && actor.Party != alert.Raised.Addressee && actor.Party != alert.Raised.FromParty)
            throw Rejection.Forbidden($"alert {id} is addressed to another party");
        http.Response.Headers.ETag = $"\"{version}\"";
        return TypedResults.Ok(AlertView.From(alert, rules, LanguageOf(actor, parties)));
    }

    /// <summary>Server-Sent Events: each new alert or escalation for the officer's party, as it happens.</summary>
    private static async Task Feed(HttpContext http, AlertFeed feed, HotlineRules rules, PartyDirectory parties)
    {
        var actor = Actor.From(http.User);
        if (actor.Party is null) throw Rejection.Forbidden("the token names no party");
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        await http.Response.WriteAsync(": connected\n\n", http.RequestAborted);
        await http.Response.Body.FlushAsync(http.RequestAborted);
        var json = http.RequestServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
        var language = LanguageOf(actor, parties);
        try
        {
            await foreach (var alert in feed.SubscribeAsync(actor.Party, http.RequestAborted))
            {
                var view = AlertView.From(alert, rules, language);
                await http.Response.WriteAsync($"id: {view.Id}:{view.EscalationStep}:{view.Status}\nevent: alert\ndata: {JsonSerializer.Serialize(view, json)}\n\n", http.RequestAborted);
                await http.Response.Body.FlushAsync(http.RequestAborted);
            }
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // the officer disconnected
        }
    }
}
