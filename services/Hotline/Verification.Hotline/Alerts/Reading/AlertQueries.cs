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

/// <summary>
/// Pushes new alerts and escalations to this process's connected officers of the addressed party only. The code that
/// changes an alert publishes it at once; the log's tail (<see cref="AlertFeedTail"/>) publishes it again when it
/// settles, which brings other replicas' alerts too. Each version goes out once, in order: a second arrival, or an
/// older version after a newer one, is dropped.
/// </summary>
public sealed class AlertFeed
{
    private const int Remembered = 10_000;
    private readonly Lock _gate = new();
    private readonly List<(string Party, Channel<Alert> Channel)> _subscribers = [];
    private readonly Dictionary<string, long> _versions = [];
    private readonly Queue<string> _order = new();

    /// <summary>Sends the alert as of its stream <paramref name="version"/>, unless that version or a later one went out.</summary>
    public void Publish(Alert alert, long version)
    {
        lock (_gate)
        {
            if (_versions.TryGetValue(alert.Id, out var sent))
            {
                if (version <= sent) return;
            }
            else
            {
                _order.Enqueue(alert.Id);
                if (_order.Count > Remembered) _versions.Remove(_order.Dequeue());
            }
            _versions[alert.Id] = version;
            foreach (var (party, channel) in _subscribers)
                if (party == alert.Raised.Addressee) channel.Writer.TryWrite(alert);
        }
    }

    /// <summary>The newest version of the alert sent here (0: none this process remembers).</summary>
    public long SentVersion(string alertId)
    {
        lock (_gate) return _versions.GetValueOrDefault(alertId);
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

/// <summary>
/// Follows the hotline's log from the moment the service starts, in commit order, and pushes each alert's state as of
/// its newest event to the feed: alerts written by other replicas reach this one's officers. Woken by commits here
/// and, through NOTIFY, by other replicas'.
/// </summary>
public sealed partial class AlertFeedTail([FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store, AlertFeed feed, ILogger<AlertFeedTail> logger)
    : BackgroundService
{
    private static readonly TimeSpan Coalesce = TimeSpan.FromMilliseconds(100);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        LogPosition? position = null;
        // An event this code cannot read (a newer replica's, in a rolling deployment): the tail reads up to it one event at
        // a time, then passes over it. A push is not a projection: GET /alerts lists that alert from the view its writer kept.
        LogPosition? unreadable = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                position ??= await store.HeadAsync(stoppingToken);   // live only: what committed before start is in GET /alerts
                var wake = store.NextCommit;
                var limit = unreadable?.CompareTo(position.Value) > 0 ? 1 : 500;
                IReadOnlyList<StoredEvent> page;
                try
                {
                    page = await store.ReadAllAsync(position.Value, limit, stoppingToken);
                }
                catch (UnreadableEventException e) when (e.At.CompareTo(position.Value) > 0)
                {
                    if (unreadable != e.At)
                    {
                        unreadable = e.At;
                        continue;
                    }
                    LogPassedOver(logger, e.Position, e.EventType, e.StreamId, e.InnerException?.Message);
                    position = e.At;
                    continue;
                }
                if (page.Count == 0)
                {
                    try { await wake.WaitAsync(store.Options.PollInterval, stoppingToken); }
                    catch (TimeoutException) { /* poll */ }
                    continue;
                }
                foreach (var newest in page.Where(e => e.Data is AlertRaised or AlertAcknowledged or AlertObjected or AlertExpiredUnacknowledged or AlertEscalated or AlertLapsed)
                             .GroupBy(e => e.StreamId).Select(g => g.MaxBy(e => e.Version)!))
                {
                    // Written by this replica, which sent it at once: nothing to read.
                    if (feed.SentVersion(newest.StreamId) >= newest.Version) continue;
                    try
                    {
                        var (alert, version) = await store.AggregateAsync<Alert>(newest.StreamId, Alert.Evolve, toVersion: newest.Version, cancellationToken: stoppingToken);
                        if (alert is not null) feed.Publish(alert, version);
                    }
                    catch (UnreadableEventException e)
                    {
                        LogPassedOver(logger, e.Position, e.EventType, e.StreamId, e.InnerException?.Message);   // that alert alone
                    }
                }
                position = new LogPosition(page[^1].TransactionId, page[^1].Position);
                // This replica's own alerts went out already; others' may wait a moment: one read per interval, not per commit.
                // A full page (one event, while reading up to an unreadable one) means more is waiting: no pause.
                if (page.Count < limit) await Task.Delay(Coalesce, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, e);
                await Task.Delay(store.Options.PollInterval, stoppingToken);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "The alert feed passes over event {Position} ({EventType} of {StreamId}), which this code cannot read ({Reason}); officers still find it in GET /alerts")]
    private static partial void LogPassedOver(ILogger logger, long position, string eventType, string streamId, string? reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The alert feed could not read the log; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
