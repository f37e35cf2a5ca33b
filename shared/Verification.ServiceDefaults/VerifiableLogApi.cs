using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Verification.EventStore;

namespace Verification.ServiceDefaults;

/// <summary>The key that signs tree heads: <c>Log:SigningKey</c> (PKCS#8 PEM, P-256) or, in development, one made at start-up.</summary>
public sealed class LogSigner : IDisposable
{
    public LogSigner(IConfiguration configuration)
    {
        Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        if (configuration["Log:SigningKey"] is { Length: > 0 } pem) Key.ImportFromPem(pem);
    }

    public ECDsa Key { get; }
    public string PublicKeyPem => Key.ExportSubjectPublicKeyInfoPem();
    public void Dispose() => Key.Dispose();
}

public sealed record InclusionProofResponse(string Log, long Position, long LeafIndex, long TreeSize, string LeafHash, string RootHash, string[] Proof);

/// <summary>An event as replayed; <paramref name="Cursor"/> ("xid:position") resumes the replay after it.</summary>
public sealed record LogEvent(long Position, string StreamId, long Version, Guid Id, string Type, DateTimeOffset RecordedAt,
    System.Text.Json.JsonElement Data, EventMetadata Metadata, string Hash, string Cursor);

/// <summary>A page of the log in commit order; <paramref name="Next"/> is the cursor of its last event when more may follow.</summary>
public sealed record LogPage(string Log, IReadOnlyList<LogEvent> Events, string? Next);
public sealed record ProjectionComparison(string Log, string Projection, bool Equal, IReadOnlyList<string> Differences);

public sealed record ConsistencyProofResponse(string Log, long First, long Second, string FirstRoot, string SecondRoot, string[] Proof);

/// <summary>Every service exposes its log for auditors: signed tree heads, inclusion and consistency proofs (RFC 9162).</summary>
public static class VerifiableLogApi
{
    public static WebApplication MapVerifiableLog(this WebApplication app, params string[] logs)
    {
        app.Services.GetRequiredService<VerifiableLogs>().Names.AddRange(logs);
        var group = app.MapGroup("/log").RequireAuthorization().WithTags("Verifiable log");
        group.MapGet("/public-key", (LogSigner signer) => TypedResults.Text(signer.PublicKeyPem, "application/x-pem-file"));
        group.MapGet("/{log}/tree-head", async (string log, HttpContext http, LogSigner signer, TimeProvider clock) =>
            TypedResults.Ok(await Store(http, logs, log).SignTreeHeadAsync(signer.Key, clock.GetUtcNow(), http.RequestAborted)));
        group.MapGet("/{log}/inclusion", async (string log, long position, long? size, HttpContext http) =>
        {
            if (size < 1) throw Rejection.Invalid(new Dictionary<string, string[]> { ["size"] = ["must be at least 1 (or left out: the whole log)"] });
            var store = Store(http, logs, log);
            var (leaves, positions) = await store.Tree.LeavesAsync(size, http.RequestAborted);
            var index = positions.IndexOf(position);
            if (index < 0) throw Rejection.NotFound($"position {position} is not in the first {leaves.Count} leaves of the {log} log");
            return TypedResults.Ok(new InclusionProofResponse(log, position, index, leaves.Count, Convert.ToHexStringLower(leaves[index]),
                Convert.ToHexStringLower(Merkle.Root(leaves)), [.. Merkle.InclusionProof(leaves, index, leaves.Count).Select(Convert.ToHexStringLower)]));
        });
        group.MapGet("/{log}/consistency", async (string log, long first, long second, HttpContext http) =>
        {
            if (first <= 0 || first > second) throw Rejection.Invalid(new Dictionary<string, string[]> { ["first"] = ["need 0 < first ≤ second"] });
            var (leaves, _) = await Store(http, logs, log).Tree.LeavesAsync(second, http.RequestAborted);
            if (second > leaves.Count)
                throw Rejection.Invalid(new Dictionary<string, string[]> { ["second"] = [$"the log has {leaves.Count} settled events; need second ≤ {leaves.Count}"] });
            return TypedResults.Ok(new ConsistencyProofResponse(log, first, second, Convert.ToHexStringLower(Merkle.Root(leaves.Take((int)first).ToList())),
                Convert.ToHexStringLower(Merkle.Root(leaves)), [.. Merkle.ConsistencyProof(leaves, (int)first, (int)second).Select(Convert.ToHexStringLower)]));
        });

        // Replay for auditors and the parties: read-only, over the log as recorded.
        var replay = group.MapGroup("").RequireAuthorization(p => p.RequireRole(Roles.Auditor, Roles.Verifier, Roles.Admin, Roles.Liaison));
        // In commit order, settled events only, as the projection daemon reads: paging by position alone would skip an
        // event whose transaction took a lower position but committed after the page was read.
        replay.MapGet("/{log}/events", async (string log, HttpContext http, string? after, int? limit, string? stream, string? type, string? correlationId,
            DateTimeOffset? from, DateTimeOffset? to) =>
        {
            var size = limit ?? 100;
            if (size is < 1 or > 1000) throw Rejection.Invalid(new Dictionary<string, string[]> { ["limit"] = ["between 1 and 1000"] });
            var store = Store(http, logs, log);
            var cursor = await CursorAsync(store, after, http.RequestAborted);
            await using var command = store.DataSource.CreateCommand(
                $"""
                SELECT position, stream_id, version, id, type, recorded_at, data::text, metadata::text, hash, transaction_id::text AS xid_text FROM {store.Schema}.events
                WHERE (transaction_id, position) > (@xid::text::xid8, @pos) AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                  AND (@stream::text IS NULL OR stream_id = @stream) AND (@type::text IS NULL OR type = @type)
                  AND (@correlation::text IS NULL OR metadata->>'correlationId' = @correlation)
                  AND recorded_at >= coalesce(@from, '-infinity') AND recorded_at < coalesce(@to, 'infinity')
                ORDER BY transaction_id, position LIMIT @limit
                """);
            command.Parameters.AddWithValue("xid", cursor.TransactionId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            command.Parameters.AddWithValue("pos", cursor.Position);
            command.Parameters.Add(new Npgsql.NpgsqlParameter<string?>("stream", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = stream });
            command.Parameters.Add(new Npgsql.NpgsqlParameter<string?>("type", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = type });
            command.Parameters.Add(new Npgsql.NpgsqlParameter<string?>("correlation", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = correlationId });
            command.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset?>("from", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = from });
            command.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset?>("to", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = to });
            command.Parameters.AddWithValue("limit", size);
            var events = new List<LogEvent>();
            await using (var reader = await command.ExecuteReaderAsync(http.RequestAborted))
            {
                while (await reader.ReadAsync(http.RequestAborted))
                {
                    events.Add(new LogEvent(reader.GetInt64(0), reader.GetString(1), reader.GetInt64(2), reader.GetGuid(3), reader.GetString(4),
                        reader.GetFieldValue<DateTimeOffset>(5), System.Text.Json.JsonDocument.Parse(reader.GetString(6)).RootElement.Clone(),
                        System.Text.Json.JsonSerializer.Deserialize<EventMetadata>(reader.GetString(7), EventTypes.Json)!, Convert.ToHexStringLower(reader.GetFieldValue<byte[]>(8)),
                        $"{reader.GetString(9)}:{reader.GetInt64(0)}"));
                }
            }
            return TypedResults.Ok(new LogPage(log, events, events.Count == size ? events[^1].Cursor : null));
        });
        replay.MapGet("/{log}/export", async (string log, HttpContext http, LogSigner signer, TimeProvider clock, DateTimeOffset? from, DateTimeOffset? to) =>
        {
            if (from > to) throw Rejection.Invalid(new Dictionary<string, string[]> { ["from"] = ["must not be after to"] });
            var store = Store(http, logs, log);
            // Written to a file first, then sent: memory holds no bundle, the read of the log does not wait on a slow
            // download, and a failure is still an error response, not a cut-off zip. The file goes when it is sent.
            var file = new FileStream(Path.Combine(Path.GetTempPath(), $"verification-export-{Guid.NewGuid():N}.zip"), FileMode.CreateNew, FileAccess.ReadWrite,
                FileShare.None, 1 << 16, FileOptions.DeleteOnClose | FileOptions.Asynchronous);
            try
            {
                await store.ExportBundleAsync(file, signer.Key, clock.GetUtcNow(), from, to, http.RequestAborted);
                file.Position = 0;
                return TypedResults.Stream(file, "application/zip", $"{log}-audit-bundle.zip");
            }
            catch
            {
                await file.DisposeAsync();
                throw;
            }
        });
        replay.MapGet("/{log}/projections", async (string log, HttpContext http) =>
        {
            var store = Store(http, logs, log);
            var status = new List<ProjectionStatus>();
            foreach (var projection in store.Options.InlineProjections.Concat(store.Options.AsyncProjections))
                status.AddRange(await store.ProjectionStatusAsync(projection.Name, http.RequestAborted));
            return TypedResults.Ok(status);
        });
        replay.MapPost("/{log}/projections/{name}/compare", async (string log, string name, HttpContext http) =>
        {
            var store = Store(http, logs, log);
            var projection = store.Options.InlineProjections.Concat(store.Options.AsyncProjections).FirstOrDefault(p => p.Name == name)
                ?? throw Rejection.NotFound($"the {log} log has no projection named {name}");
            var differences = await store.RebuildAndCompareAsync(projection, http.RequestAborted);
            return TypedResults.Ok(new ProjectionComparison(log, name, differences.Count == 0, differences));
        });
        return app;
    }

    /// <summary>
    /// Where a replay resumes: nothing (the start), a cursor "xid:position" from an earlier page, or a bare position P,
    /// meaning after the event at P in commit order.
    /// </summary>
    private static async Task<LogPosition> CursorAsync(EventStore.EventStore store, string? after, CancellationToken cancellationToken)
    {
        static Rejection Invalid() => Rejection.Invalid(new Dictionary<string, string[]> { ["after"] = ["a cursor \"xid:position\" from a page, or the position of an event"] });
        if (string.IsNullOrEmpty(after) || after == "0") return LogPosition.Start;
        var parts = after.Split(':');
        if (parts.Length == 2)
        {
            return ulong.TryParse(parts[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var xid)
                && long.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var cursorPosition)
                ? new LogPosition(xid, cursorPosition) : throw Invalid();
        }
        if (!long.TryParse(after, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var position)) throw Invalid();
        await using var command = store.DataSource.CreateCommand($"SELECT transaction_id::text FROM {store.Schema}.events WHERE position = @position");
        command.Parameters.AddWithValue("position", position);
        return await command.ExecuteScalarAsync(cancellationToken) is string found
            ? new LogPosition(ulong.Parse(found, System.Globalization.CultureInfo.InvariantCulture), position)
            : throw Rejection.Invalid(new Dictionary<string, string[]> { ["after"] = [$"no event at position {position}"] });
    }

    private static EventStore.EventStore Store(HttpContext http, string[] logs, string log) =>
        logs.Contains(log) ? http.RequestServices.GetRequiredKeyedService<EventStore.EventStore>(log) : throw Rejection.NotFound($"no log named {log}");
}
