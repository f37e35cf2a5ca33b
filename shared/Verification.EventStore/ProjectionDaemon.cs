using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Verification.EventStore;

/// <summary>
/// A projection's place in the log, and how far a rebuild beside it has come. A live inline projection is at the head by
/// construction. <paramref name="Failure"/>: why the daemon is stopped at the checkpoint, if it is.
/// </summary>
public sealed record ProjectionStatus(string Name, int Generation, bool Live, LogPosition Checkpoint, long Processed, LogPosition Head, bool Inline = false,
    ProjectionFailure? Failure = null)
{
    public bool CaughtUp => Checkpoint == Head;
}

/// <summary>The event a generation could not apply, what the projection threw, since when and after how many attempts.</summary>
public sealed record ProjectionFailure(string Error, long Position, string? StreamId, string? EventType, DateTimeOffset Since, int Attempts);

/// <summary>
/// Runs the async projections: in commit order, each page applied in one transaction with its checkpoint
/// (effectively exactly once), one instance per projection at a time (advisory lock; another takes over
/// when the holder's connection dies), woken by LISTEN/NOTIFY with polling as the fallback.
/// A rebuild runs beside the live generation and is swapped in when both stand at the same place.
/// A projection that throws stops at the event it threw on, names it in its status and tries it again later; it never
/// skips one (a view is only worth trusting if it saw every event), and the other projections go on.
/// </summary>
public sealed partial class ProjectionDaemon(EventStore store, ILogger<ProjectionDaemon> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(store.Options.AsyncProjections.Select(p => Task.Run(() => RunAsync(p, stoppingToken), stoppingToken)));

    private async Task RunAsync(Projection projection, CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var lease = await Lease.TryAcquireAsync(store, "projection:" + projection.Name, stoppingToken);
                if (lease is null)
                {
                    await Task.Delay(store.Options.PollInterval * 2, stoppingToken);
                    continue;
                }
                LogLeading(logger, projection.Name);
                Retry liveRetry = new(), rebuildRetry = new();
                while (!stoppingToken.IsCancellationRequested)
                {
                    var wake = store.Signals.NextEvents;
                    var (progressed, rebuilding) = await TryStepAsync(projection, live: true, liveRetry, stoppingToken);
                    // Only while a rebuild generation exists: the live step's read says so, in the same round trip.
                    if (rebuilding)
                    {
                        var (rebuilt, swapped) = await StepRebuildAsync(projection, rebuildRetry, stoppingToken);
                        progressed |= rebuilt;
                        if (swapped) (liveRetry, rebuildRetry) = (new(), new());
                    }
                    // The lock lives as long as this connection: check it still does, then sleep until signalled.
                    if (!progressed)
                    {
                        await lease.EnsureHeldAsync(stoppingToken);
                        // Commits cannot help a generation waiting to try a failed event again: under load they would
                        // wake it for nothing a thousand times a second.
                        if (liveRetry.Waiting) await Task.Delay(store.Options.PollInterval, stoppingToken);
                        else await Signals.WaitAsync(wake, store.Options.PollInterval, stoppingToken);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, e, projection.Name);
                await Task.Delay(store.Options.PollInterval, stoppingToken);
            }
        }
    }

    /// <summary>
    /// How a generation goes on after its projection threw. The page that failed is applied again one event at a time, so
    /// what precedes the culprit is kept and the culprit is named; that one is tried again after a delay that doubles
    /// from the poll interval up to sixty of them, for the fault may be mended meanwhile (a deployment, a database that
    /// recovers).
    /// </summary>
    private sealed class Retry
    {
        /// <summary>Events still to apply one at a time: what is left of the page that failed.</summary>
        public int OneByOne;
        public int Attempts;
        public long DueAt;
        public bool Waiting => Environment.TickCount64 < DueAt;
    }

    /// <summary><see cref="StepAsync"/>, with a failure of the projection recorded and retried as <see cref="Retry"/> says.</summary>
    private async Task<(bool Progressed, bool Rebuilding)> TryStepAsync(Projection projection, bool live, Retry retry, CancellationToken cancellationToken)
    {
        if (retry.Waiting) return (false, true);
        try
        {
            var (applied, rebuilding) = await StepAsync(projection, live, retry.OneByOne > 0 ? 1 : null, cancellationToken);
            if (applied > 0) (retry.OneByOne, retry.Attempts) = (Math.Max(0, retry.OneByOne - applied), 0);
            return (applied > 0, rebuilding);
        }
        catch (ApplyFailed failed) when (failed.Attempted > 1)
        {
            retry.OneByOne = failed.Attempted;
            return (true, true);
        }
        catch (ApplyFailed failed)
        {
            retry.Attempts++;
            var delay = Failures.RetryDelay(store.Options.PollInterval, retry.Attempts);
            retry.DueAt = Environment.TickCount64 + (long)delay.TotalMilliseconds;
            await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
            await using var record = new NpgsqlCommand(
                $"UPDATE {store.Schema}.projections SET failure = @failure, failed_position = @position, failing_since = coalesce(failing_since, now()), " +
                "attempts = attempts + 1 WHERE name = @name AND generation = @generation", connection);
            record.Parameters.AddWithValue("failure", Storable.Error(failed.InnerException!));
            record.Parameters.AddWithValue("position", failed.Position);
            record.Parameters.AddWithValue("name", projection.Name);
            record.Parameters.AddWithValue("generation", failed.Generation);
            await record.ExecuteNonQueryAsync(cancellationToken);
            LogApplyFailed(logger, failed.InnerException!, projection.Name, failed.Generation, failed.Position, failed.EventType, failed.StreamId,
                retry.Attempts, delay);
            return (false, true);
        }
    }

    /// <summary>
    /// A step of <paramref name="attempted"/> events failed on their account (rolled back): the projection threw (its own
    /// code, or what it wrote; not a connection lost), or one of them could not be read. With one attempted, the event
    /// named is the culprit; with more, the step is taken again one event at a time to find it.
    /// </summary>
    private sealed class ApplyFailed(int generation, int attempted, long position, string streamId, string eventType, Exception inner)
        : Exception("a projection step failed", inner)
    {
        public int Generation => generation;
        public int Attempted => attempted;
        public long Position => position;
        public string StreamId => streamId;
        public string EventType => eventType;
    }

    /// <summary>
    /// Applies one page (or <paramref name="limit"/> events) to the live generation (or the one being rebuilt). Applied:
    /// how many, none when there was nothing to do. Rebuilding: whether a generation is being rebuilt beside the live
    /// one (true when it could not tell).
    /// </summary>
    private async Task<(int Applied, bool Rebuilding)> StepAsync(Projection projection, bool live, int? limit, CancellationToken cancellationToken)
    {
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        int generation;
        LogPosition checkpoint;
        bool rebuilding;
        await using (var read = new NpgsqlCommand(
            $"SELECT generation, last_xid::text, last_position, EXISTS (SELECT 1 FROM {store.Schema}.projections r WHERE r.name = @name AND NOT r.live) " +
            $"FROM {store.Schema}.projections WHERE name = @name AND live = @live ORDER BY generation DESC LIMIT 1 FOR UPDATE",
            connection, transaction))
        {
            read.Parameters.AddWithValue("name", projection.Name);
            read.Parameters.AddWithValue("live", live);
            await read.PrepareAsync(cancellationToken);   // every poll of every projection runs it
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken)) return (0, true);
            generation = reader.GetInt32(0);
            checkpoint = new LogPosition(ulong.Parse(reader.GetString(1), CultureInfo.InvariantCulture), reader.GetInt64(2));
            rebuilding = reader.GetBoolean(3);
        }
        var page = limit ?? (live ? store.Options.DaemonBatchSize : store.Options.RebuildBatchSize);
        IReadOnlyList<StoredEvent> events;
        try
        {
            events = await store.ReadAllAsync(connection, checkpoint, page, cancellationToken);
        }
        catch (UnreadableEventException e)
        {
            throw new ApplyFailed(generation, page, e.Position, e.StreamId, e.EventType, e);
        }
        if (events.Count == 0) return (0, rebuilding);
        try
        {
            await projection.ApplyAsync(events, new ProjectionWrite(connection, transaction, store.Schema, generation), cancellationToken);
        }
        // A connection lost or a deadlock is not the events' doing: the run starts again as after any other failure.
        catch (Exception e) when (!Failures.IsTransient(e))
        {
            throw new ApplyFailed(generation, events.Count, events[0].Position, events[0].StreamId, events[0].Type, e);
        }
        var last = events[^1];
        await using (var save = new NpgsqlCommand(
            $"UPDATE {store.Schema}.projections SET last_xid = @xid::text::xid8, last_position = @pos, processed = processed + @n, updated_at = now(), " +
            "failure = NULL, failed_position = NULL, failing_since = NULL, attempts = 0 WHERE name = @name AND generation = @generation", connection, transaction))
        {
            save.Parameters.AddWithValue("xid", last.TransactionId.ToString(CultureInfo.InvariantCulture));
            save.Parameters.AddWithValue("pos", last.Position);
            save.Parameters.AddWithValue("n", (long)events.Count);
            save.Parameters.AddWithValue("name", projection.Name);
            save.Parameters.AddWithValue("generation", generation);
            await save.PrepareAsync(cancellationToken);
            await save.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return (events.Count, rebuilding);
    }

    /// <summary>Advances a rebuild; once it stands where the live generation stands, swaps it in and drops the old one.</summary>
    private async Task<(bool Progressed, bool Swapped)> StepRebuildAsync(Projection projection, Retry retry, CancellationToken cancellationToken)
    {
        if ((await TryStepAsync(projection, live: false, retry, cancellationToken)).Progressed) return (true, false);
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        await using var swap = new NpgsqlCommand(
            $"""
            WITH old AS (SELECT generation, last_xid, last_position FROM {store.Schema}.projections WHERE name = @name AND live),
                 new AS (SELECT generation, last_xid, last_position FROM {store.Schema}.projections WHERE name = @name AND NOT live ORDER BY generation DESC LIMIT 1),
                 ready AS (SELECT old.generation AS old_gen, new.generation AS new_gen FROM old, new
                           WHERE (old.last_xid, old.last_position) = (new.last_xid, new.last_position)),
                 flip AS (UPDATE {store.Schema}.projections p SET live = (p.generation = ready.new_gen)
                          FROM ready WHERE p.name = @name AND p.generation IN (ready.old_gen, ready.new_gen) RETURNING p.generation),
                 gone AS (DELETE FROM {store.Schema}.documents d USING ready WHERE d.projection = @name AND d.generation = ready.old_gen)
            SELECT count(*) FROM flip
            """, connection);
        swap.Parameters.AddWithValue("name", projection.Name);
        if ((long)(await swap.ExecuteScalarAsync(cancellationToken))! == 0) return (false, false);
        await using var cleanup = new NpgsqlCommand($"DELETE FROM {store.Schema}.projections WHERE name = @name AND NOT live", connection);
        cleanup.Parameters.AddWithValue("name", projection.Name);
        await cleanup.ExecuteNonQueryAsync(cancellationToken);
        LogSwapped(logger, projection.Name);
        return (true, true);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Projection {Projection}: this instance is running it")]
    private static partial void LogLeading(ILogger logger, string projection);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Projection {Projection} failed; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception, string projection);

    [LoggerMessage(Level = LogLevel.Error,
        Message = "Projection {Projection} (generation {Generation}) failed on event {Position} ({EventType} of {StreamId}), attempt {Attempts}; stopped there, trying again in {Delay}")]
    private static partial void LogApplyFailed(ILogger logger, Exception exception, string projection, int generation, long position, string eventType, string streamId,
        int attempts, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Information, Message = "Projection {Projection}: rebuilt generation swapped in")]
    private static partial void LogSwapped(ILogger logger, string projection);
}
