using Verification.EventStore;
using Verification.Hotline.Alerts.Reading;
using Verification.Hotline.Domain;

namespace Verification.Hotline.Alerts.Deadlines;

/// <summary>
/// Fires missed deadlines. Deadlines live in PostgreSQL (the open alerts' view, written with the alert's events),
/// so a restart loses none; one instance runs it (advisory lock); each firing appends at the alert's version,
/// so a deadline escalates exactly once even if two workers ever raced. An alert whose firing fails on its own
/// account (its stream refuses the append, its history cannot be read) is set aside and tried again later, with a
/// delay doubling from the worker interval up to sixty of them: it must not keep every other alert's silence from
/// being recorded.
/// </summary>
public sealed partial class DeadlineWorker([FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store, HotlineRules rules, TimeProvider clock,
    AlertFeed feed, ILogger<DeadlineWorker> logger) : BackgroundService
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (int Attempts, DateTimeOffset RetryAt)> _setAside = new(StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var lease = await Lease.TryAcquireAsync(store, "hotline-deadlines", stoppingToken);
                if (lease is null)
                {
                    await Task.Delay(rules.WorkerInterval * 2, stoppingToken);
                    continue;
                }
                while (!stoppingToken.IsCancellationRequested)
                {
                    await lease.EnsureHeldAsync(stoppingToken);
                    if (await FireDueAsync(stoppingToken) == 0) await Task.Delay(rules.WorkerInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, e);
                await Task.Delay(rules.WorkerInterval, stoppingToken);
            }
        }
    }

    /// <summary>Fires every open alert whose deadline has passed; returns how many alerts changed.</summary>
    public async Task<int> FireDueAsync(CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var waiting = _setAside.Where(a => a.Value.RetryAt > now).Select(a => a.Key).ToArray();
        var due = await store.QueryDocumentsAsync<Alert>(AlertQueries.Projection,
            "d.data->>'status' = 'open' AND (d.data->>'dueAt')::timestamptz <= @now AND d.id <> ALL(@waiting)",
            p => { p.AddWithValue("now", now); p.AddWithValue("waiting", waiting); },
            orderBy: "(d.data->>'dueAt')::timestamptz", limit: 100, cancellationToken: cancellationToken);
        var fired = 0;
        foreach (var candidate in due)
        {
            try
            {
                if (await FireAsync(candidate.Id, now, cancellationToken)) fired++;
                _setAside.TryRemove(candidate.Id, out _);
            }
            catch (ConcurrencyException)
            {
                // Acknowledged (or fired) meanwhile: the next pass sees the new state.
            }
            // The database gone, or busy, or the worker stopping, is everyone's failure, not this alert's: the pass ends.
            catch (Exception e) when (!Failures.IsTransient(e))
            {
                var attempts = _setAside.TryGetValue(candidate.Id, out var before) ? before.Attempts + 1 : 1;
                var delay = Failures.RetryDelay(rules.WorkerInterval, attempts);
                _setAside[candidate.Id] = (attempts, now + delay);
                LogSetAside(logger, e, candidate.Id, attempts, delay);
            }
        }
        return fired;
    }

    /// <summary>Records what the alert's missed deadline means, if anything yet; true if it changed.</summary>
    private async Task<bool> FireAsync(string alertId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var (alert, version) = await store.AggregateAsync<Alert>(alertId, Alert.Evolve, cancellationToken: cancellationToken);
        var events = Alert.Expire(alert ?? throw new InvalidOperationException($"alert {alertId} is in the open alerts' view but has no events"), rules, now);
        if (events.Length == 0) return false;
        var after = events.Aggregate(alert, (a, e) => Alert.Evolve(a, e)!);
        var session = store.OpenSession(new EventMetadata { ActorSub = "hotline-deadlines" }).Append(alert.Id, "alert", version, events);
        foreach (var message in Messages.For(after, events)) session.Publish(message, alert.Id);
        await session.SaveChangesAsync(cancellationToken);
        feed.Publish(after, version + events.Length);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Error,
        Message = "Alert {AlertId}: its missed deadline could not be recorded (attempt {Attempts}); the other alerts go on, it is tried again in {Delay}")]
    private static partial void LogSetAside(ILogger logger, Exception exception, string alertId, int attempts, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Hotline deadline worker failed; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
