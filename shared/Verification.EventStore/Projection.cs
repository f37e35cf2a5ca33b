using System.Text.Json;
using Npgsql;

namespace Verification.EventStore;

/// <summary>Where a projection writes: the transaction it shares with its checkpoint (or with the append, inline). Generation 0 means the live one.</summary>
public sealed record ProjectionWrite(NpgsqlConnection Connection, NpgsqlTransaction? Transaction, string Schema, int Generation);

/// <summary>An index on a projection's documents: <paramref name="Expression"/> over <c>data</c> (jsonb).</summary>
public sealed record DocumentIndex(string Name, string Expression);

/// <summary>Turns events into stored state. Applied in commit order; inline or by the daemon.</summary>
public abstract class Projection
{
    protected Projection(string name)
    {
        Name = CheckName(name);
    }

    /// <summary>Names are spliced into SQL as literals (so generic plans can use the partial indexes): only these characters.</summary>
    internal static string CheckName(string name) => System.Text.RegularExpressions.Regex.IsMatch(name, "^[a-z_][a-z0-9_]{0,40}$")
        ? name
        : throw new ArgumentException($"projection name '{name}' must be lower-case letters, digits and underscores");

    public string Name { get; }
    public List<DocumentIndex> Indexes { get; } = [];

    public abstract Task ApplyAsync(IReadOnlyList<StoredEvent> events, ProjectionWrite write, CancellationToken cancellationToken);
}

/// <summary>
/// Documents (jsonb) keyed by an id each event names: the stream id for a single-stream view, anything else
/// (a party, a day) for a multi-stream one. <c>evolve</c> returning null deletes the document.
/// </summary>
public sealed class DocumentProjection<TDoc>(string name, Func<StoredEvent, string?> idOf, Func<TDoc?, StoredEvent, TDoc?> evolve)
    : Projection(name) where TDoc : class
{
    /// <summary>A view of one stream: the document id is the stream id.</summary>
    public static DocumentProjection<TDoc> SingleStream(string name, Func<TDoc?, StoredEvent, TDoc?> evolve) => new(name, e => e.StreamId, evolve);

    public DocumentProjection<TDoc> Index(string name, string expression)
    {
        Indexes.Add(new DocumentIndex(name, expression));
        return this;
    }

    public override async Task ApplyAsync(IReadOnlyList<StoredEvent> events, ProjectionWrite write, CancellationToken cancellationToken)
    {
        var touched = new Dictionary<string, (TDoc? Doc, long Version)>();
        var ids = events.Select(idOf).OfType<string>().Distinct().Order(StringComparer.Ordinal).ToArray();   // one lock order for every writer
        if (ids.Length == 0) return;
        // A parameter, not a literal: one statement text per projection however many generations rebuilds and
        // comparisons make (each text stays prepared on every connection that ran it).
        var generation = write.Generation != 0 ? "@generation" : $"(SELECT generation FROM {write.Schema}.projections WHERE name = '{Name}' AND live)";

        // One statement per document, equal on the whole key: prepared statements get generic plans, and a generic
        // plan for "id = ANY(@ids)" on a table not yet analyzed scanned every document of the projection per append.
        await using (var load = new NpgsqlBatch(write.Connection, write.Transaction))
        {
            foreach (var id in ids)
            {
                var command = new NpgsqlBatchCommand(
                    $"SELECT id, data::text, version FROM {write.Schema}.documents WHERE projection = '{Name}' AND generation = {generation} AND id = @id FOR UPDATE");
                command.Parameters.AddWithValue("id", id);
                if (write.Generation != 0) command.Parameters.AddWithValue("generation", write.Generation);
                load.BatchCommands.Add(command);
            }
            await load.PrepareAsync(cancellationToken);
            await using var reader = await load.ExecuteReaderAsync(cancellationToken);
            do
            {
                while (await reader.ReadAsync(cancellationToken))
                    touched[reader.GetString(0)] = (JsonSerializer.Deserialize<TDoc>(reader.GetString(1), EventTypes.Json), reader.GetInt64(2));
            }
            while (await reader.NextResultAsync(cancellationToken));
        }
        foreach (var e in events)
        {
            if (idOf(e) is not { } id) continue;
            var current = touched.TryGetValue(id, out var found) ? found.Doc : null;
            touched[id] = (evolve(current, e), e.Position);
        }

        await using var batch = new NpgsqlBatch(write.Connection, write.Transaction);
        foreach (var (id, (doc, version)) in touched)
        {
            var command = doc is null
                ? new NpgsqlBatchCommand($"DELETE FROM {write.Schema}.documents WHERE projection = @projection AND generation = {generation} AND id = @id")
                : new NpgsqlBatchCommand(
                    $"INSERT INTO {write.Schema}.documents (projection, generation, id, data, version) VALUES (@projection, {generation}, @id, @data::jsonb, @version) " +
                    "ON CONFLICT (projection, generation, id) DO UPDATE SET data = excluded.data, version = excluded.version, updated_at = now()");
            command.Parameters.AddWithValue("projection", Name);
            command.Parameters.AddWithValue("id", id);
            if (write.Generation != 0) command.Parameters.AddWithValue("generation", write.Generation);
            if (doc is not null)
            {
                command.Parameters.AddWithValue("data", JsonSerializer.Serialize(doc, EventTypes.Json));
                command.Parameters.AddWithValue("version", version);
            }
            batch.BatchCommands.Add(command);
        }
        await batch.PrepareAsync(cancellationToken);
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }
}
