using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Verification.EventStore;

/// <summary>A projection's place in the log, and how far a rebuild beside it has come. A live inline projection is at the head by construction.</summary>
public sealed record ProjectionStatus(string Name, int Generation, bool Live, LogPosition Checkpoint, long Processed, LogPosition Head, bool Inline = false)
{
    public bool CaughtUp => Checkpoint == Head;
}

/// <summary>
/// Runs the async projections: in commit order, each page applied in one transaction with its checkpoint
/// (effectively exactly once), one instance per projection at a time (advisory lock; another takes over
/// when the holder's connection dies), woken by LISTEN/NOTIFY with polling as the fallback.
/// A rebuild runs beside the live generation and is swapped in when both stand at the same place.
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
                while (!stoppingToken.IsCancellationRequested)
                {
                    var wake = store.Signals.NextEvents;
                    var (progressed, rebuilding) = await StepAsync(projection, live: true, stoppingToken);
                    // Only while a rebuild generation exists: the live step's read says so, in the same round trip.
                    if (rebuilding) progressed |= await StepRebuildAsync(projection, stoppingToken);
                    // The lock lives as long as this connection: check it still does, then sleep until signalled.
                    if (!progressed)
                    {
                        await lease.EnsureHeldAsync(stoppingToken);
                        await Signals.WaitAsync(wake, store.Options.PollInterval, stoppingToken);
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
    /// Applies one page to the live generation (or the one being rebuilt). Progressed: false when there was nothing to do.
    /// Rebuilding: whether a generation is being rebuilt beside the live one (true when it could not tell).
    /// </summary>
    private async Task<(bool Progressed, bool Rebuilding)> StepAsync(Projection projection, bool live, CancellationToken cancellationToken)
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
            if (!await reader.ReadAsync(cancellationToken)) return (false, true);
            generation = reader.GetInt32(0);
            checkpoint = new LogPosition(ulong.Parse(reader.GetString(1), CultureInfo.InvariantCulture), reader.GetInt64(2));
            rebuilding = reader.GetBoolean(3);
        }
        var events = await store.ReadAllAsync(connection, checkpoint, live ? store.Options.DaemonBatchSize : store.Options.RebuildBatchSize, cancellationToken);
        if (events.Count == 0) return (false, rebuilding);
        await projection.ApplyAsync(events, new ProjectionWrite(connection, transaction, store.Schema, generation), cancellationToken);
        var last = events[^1];
        await using (var save = new NpgsqlCommand(
            $"UPDATE {store.Schema}.projections SET last_xid = @xid::text::xid8, last_position = @pos, processed = processed + @n, updated_at = now() " +
            "WHERE name = @name AND generation = @generation", connection, transaction))
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
        return (true, rebuilding);
    }

    /// <summary>Advances a rebuild; once it stands where the live generation stands, swaps it in and drops the old one.</summary>
    private async Task<bool> StepRebuildAsync(Projection projection, CancellationToken cancellationToken)
    {
        if ((await StepAsync(projection, live: false, cancellationToken)).Progressed) return true;
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
        if ((long)(await swap.ExecuteScalarAsync(cancellationToken))! == 0) return false;
        await using var cleanup = new NpgsqlCommand($"DELETE FROM {store.Schema}.projections WHERE name = @name AND NOT live", connection);
        cleanup.Parameters.AddWithValue("name", projection.Name);
        await cleanup.ExecuteNonQueryAsync(cancellationToken);
        LogSwapped(logger, projection.Name);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Projection {Projection}: this instance is running it")]
    private static partial void LogLeading(ILogger logger, string projection);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Projection {Projection} failed; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception, string projection);

    [LoggerMessage(Level = LogLevel.Information, Message = "Projection {Projection}: rebuilt generation swapped in")]
    private static partial void LogSwapped(ILogger logger, string projection);
}
