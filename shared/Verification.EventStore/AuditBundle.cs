using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Npgsql;

namespace Verification.EventStore;

/// <summary>One exported event: every field its hash covers, as hashed, with the previous hash of its stream.</summary>
public sealed record BundleEvent(long Position, long LeafIndex, string StreamId, long Version, Guid Id, string Type, string RecordedAt,
    string Data, string Metadata, string? PreviousHash, string Hash);

public sealed record BundleProof(long Position, long LeafIndex, string[] Proof);

public sealed record BundleManifest(string Format, string Log, DateTimeOffset? From, DateTimeOffset? To, long Events, DateTimeOffset CreatedAt,
    IReadOnlyDictionary<string, string> Files);

public sealed record BundleVerification(bool Valid, long EventsChecked, long TreeSize, bool SignatureByTrustedKey, long? FirstBadPosition,
    IReadOnlyList<string> Problems);

/// <summary>
/// An audit bundle (a zip): <c>events.jsonl</c>, <c>proofs.jsonl</c> (inclusion of each event in the signed tree),
/// <c>tree-head.json</c>, <c>public-key.pem</c>, and <c>manifest.json</c> with the SHA-256 of each file.
/// <see cref="Verify"/> checks it with no database: file hashes, every event hash and stream link, every
/// inclusion proof against the tree head, and the tree head's signature.
/// </summary>
public static class AuditBundle
{
    public const string Format = "verification-audit-bundle/1";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static string CanonicalTime(DateTimeOffset recordedAt) =>
        recordedAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    /// <summary>Exports the settled events recorded in [from, to) with proofs against a tree head signed now over the whole settled log.</summary>
    public static async Task<byte[]> ExportBundleAsync(this EventStore store, ECDsa key, DateTimeOffset now, DateTimeOffset? from = null, DateTimeOffset? to = null,
        CancellationToken cancellationToken = default)
    {
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        // One snapshot for the leaves and the exported rows, so the tree head and the events agree.
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var s = store.Schema;
        await using var command = new NpgsqlCommand(
            $"""
            SELECT e.position, e.hash,
                   (e.recorded_at >= coalesce(@from, '-infinity') AND e.recorded_at < coalesce(@to, 'infinity')) AS wanted,
                   e.stream_id, e.version, e.id, e.type, e.recorded_at, e.data::text, e.metadata::text,
                   (SELECT p.hash FROM {s}.events p WHERE p.stream_id = e.stream_id AND p.version = e.version - 1) AS previous
            FROM {s}.events e WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY e.transaction_id, e.position
            """, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset?>("from", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = from });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset?>("to", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = to });
        var leaves = new List<byte[]>();
        var events = new List<BundleEvent>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var position = reader.GetInt64(0);
                var hash = reader.GetFieldValue<byte[]>(1);
                if (reader.GetBoolean(2))
                {
                    events.Add(new BundleEvent(position, leaves.Count, reader.GetString(3), reader.GetInt64(4), reader.GetGuid(5), reader.GetString(6),
                        CanonicalTime(reader.GetFieldValue<DateTimeOffset>(7)), reader.GetString(8), reader.GetString(9),
                        reader.IsDBNull(10) ? null : Convert.ToHexStringLower(reader.GetFieldValue<byte[]>(10)), Convert.ToHexStringLower(hash)));
                }
                leaves.Add(Merkle.LeafHash(VerifiableLog.Entry(position, hash)));
            }
        }
        await transaction.CommitAsync(cancellationToken);

        var tree = new MerkleTree(leaves);
        var root = Convert.ToHexStringLower(tree.Root);
        var head = new TreeHead(s, leaves.Count, root, now,
            Convert.ToHexStringLower(key.SignData(TreeHead.Payload(s, leaves.Count, root, now), HashAlgorithmName.SHA256)));
        var files = new Dictionary<string, byte[]>
        {
            ["events.jsonl"] = JsonLines(events),
            ["proofs.jsonl"] = JsonLines(events.Select(e => new BundleProof(e.Position, e.LeafIndex,
                [.. tree.InclusionProof((int)e.LeafIndex).Select(Convert.ToHexStringLower)]))),
            ["tree-head.json"] = JsonSerializer.SerializeToUtf8Bytes(head, Json),
            ["public-key.pem"] = Encoding.UTF8.GetBytes(key.ExportSubjectPublicKeyInfoPem()),
        };
        var manifest = new BundleManifest(Format, s, from, to, events.Count, now, files.ToDictionary(f => f.Key, f => Convert.ToHexStringLower(SHA256.HashData(f.Value))));

        using var zip = new MemoryStream();
        using (var archive = new ZipArchive(zip, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, content) in files.Append(new("manifest.json", JsonSerializer.SerializeToUtf8Bytes(manifest, Json))))
            {
                await using var entry = archive.CreateEntry(name, CompressionLevel.Optimal).Open();
                await entry.WriteAsync(content, cancellationToken);
            }
        }
        return zip.ToArray();
    }

    private static byte[] JsonLines<T>(IEnumerable<T> items)
    {
        var builder = new StringBuilder();
        foreach (var item in items) builder.Append(JsonSerializer.Serialize(item, Json)).Append('\n');
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    /// <summary>
    /// Verifies a bundle offline. The tree head's signature is checked with <paramref name="trustedKeyPem"/> when given
    /// (the log's published key, obtained separately); otherwise only with the bundle's own key, which proves integrity, not origin.
    /// </summary>
    public static BundleVerification Verify(byte[] bundle, string? trustedKeyPem = null)
    {
        try
        {
            return VerifyContent(bundle, trustedKeyPem);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidDataException or CryptographicException or ArgumentException)
        {
            return new BundleVerification(false, 0, 0, false, null, [$"the bundle cannot be read: {e.Message}"]);
        }
    }

    private static BundleVerification VerifyContent(byte[] bundle, string? trustedKeyPem)
    {
        var problems = new List<string>();
        long? firstBad = null;
        void Bad(long? position, string problem)
        {
            problems.Add(problem);
            if (position is { } p && (firstBad is null || p < firstBad)) firstBad = p;
        }

        Dictionary<string, byte[]> files;
        try
        {
            using var archive = new ZipArchive(new MemoryStream(bundle), ZipArchiveMode.Read);
            files = archive.Entries.ToDictionary(e => e.FullName, e =>
            {
                using var stream = e.Open();
                using var copy = new MemoryStream();
                stream.CopyTo(copy);
                return copy.ToArray();
            });
        }
        catch (InvalidDataException e)
        {
            return new BundleVerification(false, 0, 0, false, null, [$"not a bundle: {e.Message}"]);
        }
        if (!files.TryGetValue("manifest.json", out var manifestBytes)) return new BundleVerification(false, 0, 0, false, null, ["manifest.json is missing"]);
        var manifest = JsonSerializer.Deserialize<BundleManifest>(manifestBytes, Json)!;
        if (manifest.Format != Format) Bad(null, $"unknown format {manifest.Format}");
        foreach (var (name, expected) in manifest.Files)
        {
            if (!files.TryGetValue(name, out var content)) Bad(null, $"{name} is listed in the manifest but missing");
            else if (Convert.ToHexStringLower(SHA256.HashData(content)) != expected) Bad(null, $"{name} does not match its hash in the manifest");
        }
        foreach (var required in new[] { "events.jsonl", "proofs.jsonl", "tree-head.json", "public-key.pem" })
        {
            if (!manifest.Files.ContainsKey(required) || !files.ContainsKey(required)) return new BundleVerification(false, 0, 0, false, null, [.. problems, $"{required} is missing"]);
        }

        var head = JsonSerializer.Deserialize<TreeHead>(files["tree-head.json"], Json)!;
        using (var key = ECDsa.Create())
        {
            key.ImportFromPem(trustedKeyPem ?? Encoding.UTF8.GetString(files["public-key.pem"]));
            if (!head.Verify(key)) Bad(null, trustedKeyPem is null ? "the tree head's signature does not verify with the bundle's key" : "the tree head is not signed by the trusted key");
        }

        var events = ReadLines<BundleEvent>(files["events.jsonl"]);
        var proofs = ReadLines<BundleProof>(files["proofs.jsonl"]).ToDictionary(p => p.Position);
        if (events.Count != manifest.Events) Bad(null, $"the manifest counts {manifest.Events} events, the bundle holds {events.Count}");
        var root = Convert.FromHexString(head.RootHash);
        var hashes = events.ToDictionary(e => (e.StreamId, e.Version), e => e.Hash);
        long lastLeaf = -1;
        foreach (var e in events)
        {
            byte[] hash;
            try
            {
                var recordedAt = DateTimeOffset.ParseExact(e.RecordedAt, "yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
                var computed = HashChain.Compute(e.PreviousHash is null ? null : Convert.FromHexString(e.PreviousHash), e.StreamId, e.Version, e.Id, e.Type, recordedAt, e.Data, e.Metadata);
                hash = Convert.FromHexString(e.Hash);
                if (!computed.AsSpan().SequenceEqual(hash)) Bad(e.Position, $"position {e.Position}: the event does not hash to its stored hash (stream {e.StreamId} version {e.Version})");
            }
            catch (FormatException ex)
            {
                Bad(e.Position, $"position {e.Position}: {ex.Message}");
                continue;
            }
            if (e.Version == 1 && e.PreviousHash is not null) Bad(e.Position, $"position {e.Position}: the first event of {e.StreamId} names a previous hash");
            if (e.Version > 1 && e.PreviousHash is null) Bad(e.Position, $"position {e.Position}: version {e.Version} of {e.StreamId} has no previous hash");
            if (hashes.TryGetValue((e.StreamId, e.Version - 1), out var previous) && previous != e.PreviousHash)
                Bad(e.Position, $"position {e.Position}: does not link to version {e.Version - 1} of {e.StreamId}");
            if (e.LeafIndex <= lastLeaf) Bad(e.Position, $"position {e.Position}: out of commit order");
            lastLeaf = e.LeafIndex;
            if (!proofs.TryGetValue(e.Position, out var proof) || proof.LeafIndex != e.LeafIndex)
                Bad(e.Position, $"position {e.Position}: no inclusion proof");
            else if (!Merkle.VerifyInclusion(Merkle.LeafHash(VerifiableLog.Entry(e.Position, hash)), e.LeafIndex, head.Size,
                         [.. proof.Proof.Select(Convert.FromHexString)], root))
                Bad(e.Position, $"position {e.Position}: not included in the signed tree of size {head.Size}");
        }
        return new BundleVerification(problems.Count == 0, events.Count, head.Size, trustedKeyPem is not null, firstBad, problems);
    }

    private static List<T> ReadLines<T>(byte[] content) =>
        [.. Encoding.UTF8.GetString(content).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonSerializer.Deserialize<T>(line, Json)!)];
}
