using Verification.EventStore;
using Verification.Hotline.Alerts.Reading;
using Verification.Hotline.Domain;

namespace Verification.Hotline.Alerts.Deadlines;

/// <summary>
/// Fires missed deadlines. Deadlines live in PostgreSQL (the open alerts' view, written with the alert's events),
/// so a restart loses none; one instance runs it (advisory lock); each firing appends at the alert's version,
/// so a deadline escalates exactly once even if two workers ever raced.
/// </summary>
public sealed partial class DeadlineWorker([FromKeyedServices(HotlineModule.Name)] EventStore.EventStore store, HotlineRules rules, TimeProvider clock,
    AlertFeed feed, ILogger<DeadlineWorker> logger) : BackgroundService
{
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
        var due = await store.QueryDocumentsAsync<Alert>(AlertQueries.Projection,
            "d.data->>'status' = 'open' AND (d.data->>'dueAt')::timestamptz <= @now", p => p.AddWithValue("now", now),
            orderBy: "(d.data->>'dueAt')::timestamptz", limit: 100, cancellationToken: cancellationToken);
        var fired = 0;
        foreach (var candidate in due)
        {
            var (alert, version) = await store.AggregateAsync<Alert>(candidate.Id, Alert.Evolve, cancellationToken: cancellationToken);
            var events = Alert.Expire(alert!, rules, now);
            if (events.Length == 0) continue;
            var after = events.Aggregate(alert!, (a, e) => Alert.Evolve(a, e)!);
            var session = store.OpenSession(new EventMetadata { ActorSub = "hotline-deadlines" }).Append(alert!.Id, "alert", version, events);
            foreach (var message in Messages.For(after, events)) session.Publish(message, alert.Id);
            try
            {
                await session.SaveChangesAsync(cancellationToken);
                feed.Publish(after, version + events.Length);
                fired++;
            }
            catch (ConcurrencyException)
            {
                // Acknowledged (or fired) meanwhile: the next pass sees the new state.
            }
        }
        return fired;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Hotline deadline worker failed; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
