using System.Globalization;
using Npgsql;

namespace Verification.EventStore;

/// <summary>Rebuilds, status and comparison of projections: what operators and auditors ask of them.</summary>
public static class Projections
{
    /// <summary>Starts a rebuild from position zero beside the live generation; the daemon swaps it in when caught up.</summary>
    public static async Task<int> RequestRebuildAsync(this EventStore store, string projection, CancellationToken cancellationToken = default)
    {
        await using var command = store.DataSource.CreateCommand(
            $"""
            INSERT INTO {store.Schema}.projections (name, generation, live)
            SELECT @name, max(generation) + 1, false FROM {store.Schema}.projections WHERE name = @name
            HAVING NOT bool_or(NOT live)
            RETURNING generation
            """);
        command.Parameters.AddWithValue("name", projection);
        if (await command.ExecuteScalarAsync(cancellationToken) is not int generation)
            throw new InvalidOperationException($"projection '{projection}' is unknown or already rebuilding");
        // Wake the daemon that runs it, here or in another instance (NOTIFY), as a commit would: an idle daemon would
        // otherwise start the rebuild only at its next poll.
        store.Signals.Committed(events: true, outbox: false);
        return generation;
    }

    public static async Task<IReadOnlyList<ProjectionStatus>> ProjectionStatusAsync(this EventStore store, string projection, CancellationToken cancellationToken = default)
    {
        var head = await store.HeadAsync(cancellationToken);
        await using var command = store.DataSource.CreateCommand(
            "SELECT p.generation, p.live, p.last_xid::text, p.last_position, p.processed, " +
            "p.failure, p.failed_position, e.stream_id, e.type, p.failing_since, p.attempts " +
            $"FROM {store.Schema}.projections p LEFT JOIN {store.Schema}.events e ON e.position = p.failed_position " +
            "WHERE p.name = @name ORDER BY p.generation");
        command.Parameters.AddWithValue("name", projection);
        var inline = store.Options.InlineProjections.Any(p => p.Name == projection);
        var status = new List<ProjectionStatus>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var live = reader.GetBoolean(1);
            // An inline projection's live generation is written with the events; its stored checkpoint is where its last rebuild ended.
            var checkpoint = inline && live ? head : new LogPosition(ulong.Parse(reader.GetString(2), CultureInfo.InvariantCulture), reader.GetInt64(3));
            var failure = reader.IsDBNull(5) ? null : new ProjectionFailure(reader.GetString(5), reader.GetInt64(6),
                reader.IsDBNull(7) ? null : reader.GetString(7), reader.IsDBNull(8) ? null : reader.GetString(8),
                reader.GetFieldValue<DateTimeOffset>(9), reader.GetInt32(10));
            status.Add(new ProjectionStatus(projection, reader.GetInt32(0), live, checkpoint, reader.GetInt64(4), head, inline, failure));
        }
        return status;
    }

    /// <summary>
    /// Builds the projection from zero into a scratch generation up to the live one's checkpoint (the head, for
    /// inline projections), compares document by document, then discards it. Empty means equal.
    /// </summary>
    public static async Task<IReadOnlyList<string>> RebuildAndCompareAsync(this EventStore store, Projection projection, CancellationToken cancellationToken = default)
    {
        // A scratch generation of its own (negative: never a real one), so comparisons running at once do not mix.
        var scratch = -Random.Shared.Next(1, int.MaxValue);
        var inline = store.Options.InlineProjections.Contains(projection);
        var live = (await store.ProjectionStatusAsync(projection.Name, cancellationToken)).Single(s => s.Live);
        // Inline views reflect every commit: compare up to the newest one, waiting for older transactions
        // (in any database of the cluster) to settle so the read stays in commit order.
        var until = inline ? await store.HeadAsync(cancellationToken, settledOnly: false) : live.Checkpoint;
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        await using (var stale = new NpgsqlCommand(   // what comparisons cut off by a crash left behind
            $"DELETE FROM {store.Schema}.documents WHERE projection = @name AND generation < 0 AND updated_at < now() - interval '1 day'", connection))
        {
            stale.Parameters.AddWithValue("name", projection.Name);
            await stale.ExecuteNonQueryAsync(cancellationToken);
        }
        var position = LogPosition.Start;
        try
        {
            while (true)
            {
                List<StoredEvent> page;
                try
                {
                    page = (await store.ReadAllAsync(connection, position, store.Options.DaemonBatchSize, cancellationToken))
                        .Where(e => (e.TransactionId, e.Position).CompareTo((until.TransactionId, until.Position)) <= 0).ToList();
                }
                catch (UnreadableEventException e)
                {
                    throw new RebuildFailedException(projection.Name, e.Position, e.StreamId, e.EventType, e);
                }
                if (page.Count == 0)
                {
                    if (position.CompareTo(until) >= 0) break;
                    await Task.Delay(50, cancellationToken);
                    continue;
                }
                await ApplyNamingCulpritAsync(connection, store.Schema, projection, page, scratch, cancellationToken);
                position = new LogPosition(page[^1].TransactionId, page[^1].Position);
            }
        }
        // A projection that throws, or a caller that gave up: the scratch documents go now, not a day later (unless the
        // connection itself failed: then the sweep above takes them).
        catch (Exception e) when (e is not NpgsqlException || e is PostgresException)
        {
            await DeleteGenerationAsync(connection, store.Schema, projection.Name, scratch, CancellationToken.None);
            throw;
        }
        await using var compare = new NpgsqlCommand(
            $"""
            SELECT coalesce(a.id, b.id), a.data::text, b.data::text
            FROM (SELECT id, data FROM {store.Schema}.documents WHERE projection = @name AND generation = @live) a
            FULL JOIN (SELECT id, data FROM {store.Schema}.documents WHERE projection = @name AND generation = @scratch) b ON a.id = b.id
            WHERE a.data::text IS DISTINCT FROM b.data::text ORDER BY 1
            """, connection);
        compare.Parameters.AddWithValue("name", projection.Name);
        compare.Parameters.AddWithValue("live", live.Generation);
        compare.Parameters.AddWithValue("scratch", scratch);
        var differences = new List<string>();
        await using (var reader = await compare.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
                differences.Add($"{reader.GetString(0)}: live {(reader.IsDBNull(1) ? "(missing)" : reader.GetString(1))} rebuilt {(reader.IsDBNull(2) ? "(missing)" : reader.GetString(2))}");
        }
        await DeleteGenerationAsync(connection, store.Schema, projection.Name, scratch, cancellationToken);
        return differences;
    }

    /// <summary>
    /// A page in a transaction; one the projection throws on is rolled back and taken again one event at a time, so the
    /// failure names the event (as the daemon's status does), not just the page.
    /// </summary>
    private static async Task ApplyNamingCulpritAsync(NpgsqlConnection connection, string schema, Projection projection, List<StoredEvent> page,
        int generation, CancellationToken cancellationToken)
    {
        for (int from = 0, size = page.Count; from < page.Count;)
        {
            var part = page.GetRange(from, Math.Min(size, page.Count - from));
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            try
            {
                await projection.ApplyAsync(part, new ProjectionWrite(connection, transaction, schema, generation), cancellationToken);
            }
            catch (Exception e) when (!Failures.IsTransient(e))
            {
                await transaction.RollbackAsync(CancellationToken.None);
                if (part.Count == 1) throw new RebuildFailedException(projection.Name, part[0].Position, part[0].StreamId, part[0].Type, e);
                size = 1;
                continue;
            }
            await transaction.CommitAsync(cancellationToken);
            from += part.Count;
        }
    }

    private static async Task DeleteGenerationAsync(NpgsqlConnection connection, string schema, string name, int generation, CancellationToken cancellationToken)
    {
        await using var delete = new NpgsqlCommand($"DELETE FROM {schema}.documents WHERE projection = @name AND generation = @generation", connection);
        delete.Parameters.AddWithValue("name", name);
        delete.Parameters.AddWithValue("generation", generation);
        await delete.ExecuteNonQueryAsync(cancellationToken);
    }
}
