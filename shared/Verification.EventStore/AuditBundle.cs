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

    /// <summary>
    /// Writes a bundle of the settled events recorded in [from, to), with proofs against a tree head signed now over the
    /// whole settled log, to <paramref name="destination"/> as it reads them: a file or memory (need not be seekable; left
    /// open), not a response body, since a zip archive writes synchronously. What it
    /// holds meanwhile is the tree (a leaf hash per event of the log), not the events: an export held the whole bundle
    /// several times over (1.9 GB for 200,000 events).
    /// </summary>
    public static async Task ExportBundleAsync(this EventStore store, Stream destination, ECDsa key, DateTimeOffset now, DateTimeOffset? from = null,
        DateTimeOffset? to = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        // One snapshot for the leaves and the exported rows, so the tree head and the events agree.
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var s = store.Schema;
        // Only the exported events are written out as text and looked up for their previous hash; the others give a leaf.
        await using var command = new NpgsqlCommand(
            $"""
            SELECT e.position, e.hash, w.wanted, e.stream_id, e.version, e.id, e.type, e.recorded_at,
                   CASE WHEN w.wanted THEN e.data::text END, CASE WHEN w.wanted THEN e.metadata::text END,
                   CASE WHEN w.wanted THEN (SELECT p.hash FROM {s}.events p WHERE p.stream_id = e.stream_id AND p.version = e.version - 1) END
            FROM {s}.events e, LATERAL (SELECT e.recorded_at >= coalesce(@from, '-infinity') AND e.recorded_at < coalesce(@to, 'infinity') AS wanted) w
            WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY e.transaction_id, e.position
            """, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset?>("from", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = from });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset?>("to", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = to });

        using var archive = new ZipArchive(destination, ZipArchiveMode.Create, leaveOpen: true);
        var files = new Dictionary<string, string>();
        var leaves = new byte[32 * 1024];   // leaf hashes side by side, grown as the log is read
        var size = 0;
        var exported = new List<(long Position, int LeafIndex)>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            await WriteAsync(archive, "events.jsonl", files, async stream =>
            {
                // The rows stream from the server as the entry is written.
                while (await reader.ReadAsync(cancellationToken))
                {
                    var position = reader.GetInt64(0);
                    var hash = reader.GetFieldValue<byte[]>(1);
                    if (reader.GetBoolean(2))
                    {
                        JsonLine(stream, new BundleEvent(position, size, reader.GetString(3), reader.GetInt64(4), reader.GetGuid(5), reader.GetString(6),
                            CanonicalTime(reader.GetFieldValue<DateTimeOffset>(7)), reader.GetString(8), reader.GetString(9),
                            reader.IsDBNull(10) ? null : Convert.ToHexStringLower(reader.GetFieldValue<byte[]>(10)), Convert.ToHexStringLower(hash)));
                        exported.Add((position, size));
                    }
                    if ((size + 1) * 32 > leaves.Length) Array.Resize(ref leaves, leaves.Length * 2);
                    Merkle.LeafHash(VerifiableLog.Entry(position, hash)).CopyTo(leaves, size * 32);
                    size++;
                }
            });
        }
        await transaction.CommitAsync(cancellationToken);

        var tree = new MerkleTree(leaves, size);
        var root = Convert.ToHexStringLower(tree.Root);
        var head = new TreeHead(s, size, root, now, Convert.ToHexStringLower(key.SignData(TreeHead.Payload(s, size, root, now), HashAlgorithmName.SHA256)));
        await WriteAsync(archive, "proofs.jsonl", files, stream =>
        {
            foreach (var (position, leafIndex) in exported)
                JsonLine(stream, new BundleProof(position, leafIndex, [.. tree.InclusionProof(leafIndex).Select(Convert.ToHexStringLower)]));
            return Task.CompletedTask;
        });
        await WriteAsync(archive, "tree-head.json", files, stream => JsonSerializer.SerializeAsync(stream, head, Json, cancellationToken));
        await WriteAsync(archive, "public-key.pem", files, stream => stream.WriteAsync(Encoding.UTF8.GetBytes(key.ExportSubjectPublicKeyInfoPem()), cancellationToken).AsTask());
        var manifest = new BundleManifest(Format, s, from, to, exported.Count, now, files);
        await WriteAsync(archive, "manifest.json", [], stream => JsonSerializer.SerializeAsync(stream, manifest, Json, cancellationToken));
    }

    /// <summary>Writes one entry, and records the SHA-256 of what was written for the manifest.</summary>
    private static async Task WriteAsync(ZipArchive archive, string name, Dictionary<string, string> files, Func<Stream, Task> write)
    {
        await using var entry = new Hashing(archive.CreateEntry(name, CompressionLevel.Optimal).Open());
        await write(entry);
        files[name] = entry.Hex();
    }

    private static void JsonLine<T>(Stream stream, T item)
    {
        JsonSerializer.Serialize(stream, item, Json);
        stream.WriteByte((byte)'\n');
    }

    /// <summary>
    /// Verifies a bundle offline, reading it as it goes: what it holds is a link or two per stream, not the bundle (a seekable
    /// stream, such as a file, is read in place; any other is read into memory first, as zip archives are). The tree
    /// head's signature is checked with <paramref name="trustedKeyPem"/> when given (the log's published key, obtained
    /// separately); otherwise only with the bundle's own key, which proves integrity, not origin.
    /// </summary>
    public static BundleVerification Verify(Stream bundle, string? trustedKeyPem = null)
    {
        try
        {
            using var archive = new ZipArchive(bundle, ZipArchiveMode.Read, leaveOpen: true);
            return VerifyContent(archive, trustedKeyPem);
        }
        catch (InvalidDataException e)
        {
            return new BundleVerification(false, 0, 0, false, null, [$"not a bundle: {e.Message}"]);
        }
        catch (Exception e) when (e is JsonException or FormatException or CryptographicException or ArgumentException or IOException)
        {
            return new BundleVerification(false, 0, 0, false, null, [$"the bundle cannot be read: {e.Message}"]);
        }
    }

    private static BundleVerification VerifyContent(ZipArchive archive, string? trustedKeyPem)
    {
        var problems = new List<string>();
        long? firstBad = null;
        void Bad(long? position, string problem)
        {
            problems.Add(problem);
            if (position is { } p && (firstBad is null || p < firstBad)) firstBad = p;
        }
        BundleVerification Unreadable(string problem) => new(false, 0, 0, false, null, [.. problems, problem]);

        if (archive.GetEntry("manifest.json") is not { } manifestEntry) return Unreadable("manifest.json is missing");
        var manifest = JsonSerializer.Deserialize<BundleManifest>(Small(manifestEntry), Json)!;
        if (manifest.Format != Format) Bad(null, $"unknown format {manifest.Format}");
        foreach (var required in new[] { "events.jsonl", "proofs.jsonl", "tree-head.json", "public-key.pem" })
        {
            if (!manifest.Files.ContainsKey(required) || archive.GetEntry(required) is null) return Unreadable($"{required} is missing");
        }
        void Matches(string name, string hex)
        {
            if (hex != manifest.Files[name]) Bad(null, $"{name} does not match its hash in the manifest");
        }
        // The events and proofs are hashed as they are read, below; every other file listed here.
        foreach (var name in manifest.Files.Keys.Except(["events.jsonl", "proofs.jsonl"]))
        {
            if (archive.GetEntry(name) is not { } entry) Bad(null, $"{name} is listed in the manifest but missing");
            else
            {
                using var hashing = new Hashing(entry.Open());
                hashing.CopyTo(Stream.Null);
                Matches(name, hashing.Hex());
            }
        }

        var head = JsonSerializer.Deserialize<TreeHead>(Small(archive.GetEntry("tree-head.json")!), Json)!;
        using (var key = ECDsa.Create())
        {
            key.ImportFromPem(trustedKeyPem ?? Encoding.UTF8.GetString(Small(archive.GetEntry("public-key.pem")!)));
            if (!head.Verify(key)) Bad(null, trustedKeyPem is null ? "the tree head's signature does not verify with the bundle's key" : "the tree head is not signed by the trusted key");
        }
        var root = Convert.FromHexString(head.RootHash);

        // Proofs come in the events' order, one each; both files are read side by side.
        using var eventsStream = new Hashing(archive.GetEntry("events.jsonl")!.Open());
        using var proofsStream = new Hashing(archive.GetEntry("proofs.jsonl")!.Open());
        var events = new Lines(eventsStream, "events.jsonl");
        var proofs = new Lines(proofsStream, "proofs.jsonl");
        // Links not yet checked both ways, by stream and version: an event waits here for the event before it or after
        // it, which commit order mostly brings next (but not always: see Links), so this holds about two per stream.
        var links = new Links();
        long count = 0, lastLeaf = -1;
        while (events.Next() is { } line)
        {
            var e = JsonSerializer.Deserialize<BundleEvent>(line, Json)!;
            count++;
            var proof = proofs.Next() is { } proofLine ? JsonSerializer.Deserialize<BundleProof>(proofLine, Json) : null;
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
            foreach (var (position, version) in links.Add(e))
                Bad(position, $"position {position}: does not link to version {version - 1} of {e.StreamId}");
            if (e.LeafIndex <= lastLeaf) Bad(e.Position, $"position {e.Position}: out of commit order");
            lastLeaf = e.LeafIndex;
            if (proof is null || proof.Position != e.Position || proof.LeafIndex != e.LeafIndex)
                Bad(e.Position, $"position {e.Position}: no inclusion proof");
            else if (!Merkle.VerifyInclusion(Merkle.LeafHash(VerifiableLog.Entry(e.Position, hash)), e.LeafIndex, head.Size,
                         [.. proof.Proof.Select(Convert.FromHexString)], root))
                Bad(e.Position, $"position {e.Position}: not included in the signed tree of size {head.Size}");
        }
        proofsStream.CopyTo(Stream.Null);   // the rest is hashed too
        Matches("events.jsonl", eventsStream.Hex());
        Matches("proofs.jsonl", proofsStream.Hex());
        if (count != manifest.Events) Bad(null, $"the manifest counts {manifest.Events} events, the bundle holds {count}");
        return new BundleVerification(problems.Count == 0, count, head.Size, trustedKeyPem is not null, firstBad, problems);
    }

    /// <summary>A small file (manifest, tree head, key) read whole; a large one is refused, not read (whatever the zip claims).</summary>
    private static byte[] Small(ZipArchiveEntry entry)
    {
        const int limit = 1 << 20;
        var tooLarge = new InvalidDataException($"{entry.FullName} is larger than {limit:N0} bytes, more than a bundle's {entry.FullName} can be");
        if (entry.Length > limit) throw tooLarge;
        using var stream = entry.Open();
        var content = new byte[limit + 1];
        var length = 0;
        while (length < content.Length && stream.Read(content, length, content.Length - length) is > 0 and var read) length += read;
        return length > limit ? throw tooLarge : content[..length];
    }

    /// <summary>
    /// A bundle file's non-empty lines, each refused above <see cref="MaxLine"/> characters before it is held whole: one
    /// enormous line in a hostile bundle would otherwise take the verifier's memory. An event is far smaller (services
    /// take requests of 1 MB).
    /// </summary>
    private sealed class Lines(Stream stream, string name)
    {
        public const int MaxLine = 64 << 20;
        private readonly StreamReader _reader = new(stream, Encoding.UTF8, leaveOpen: true);   // the stream is its caller's
        private readonly char[] _buffer = new char[1 << 16];
        private readonly StringBuilder _long = new();
        private int _start, _end;

        public string? Next()
        {
            string? line;
            while ((line = Read()) is { Length: 0 }) { }
            return line;
        }

        private string? Read()
        {
            _long.Clear();
            while (true)
            {
                var pending = _buffer.AsSpan(_start, _end - _start);
                if (pending.IndexOf('\n') is >= 0 and var newline)
                {
                    _start += newline + 1;
                    if (_long.Length == 0) return new string(pending[..newline].TrimEnd('\r'));
                    Append(pending[..newline]);
                    return _long.ToString().TrimEnd('\r');
                }
                Append(pending);
                (_start, _end) = (0, _reader.Read(_buffer, 0, _buffer.Length));
                if (_end == 0) return _long.Length == 0 ? null : _long.ToString();
            }
        }

        private void Append(ReadOnlySpan<char> part)
        {
            if (_long.Length + part.Length > MaxLine) throw new InvalidDataException($"a line of {name} is longer than {MaxLine:N0} characters");
            _long.Append(part);
        }
    }

    /// <summary>
    /// Each stream's events seen whose link to the event before or after them is not checked yet. Commit order is not
    /// always version order: a session that took its transaction id (an inbox mark) before another writer of the same
    /// stream, and then waited for that writer's row lock, commits the later version under the smaller id.
    /// </summary>
    private sealed class Links
    {
        private readonly Dictionary<(string Stream, long Version), Link> _open = [];

        /// <summary>Records an event; returns the (position, version) of each event whose previous hash does not match.</summary>
        public List<(long Position, long Version)> Add(BundleEvent e)
        {
            var broken = new List<(long, long)>();
            var link = new Link(e.Position, e.Hash, e.PreviousHash) { HasBefore = e.Version == 1 };
            if (_open.TryGetValue((e.StreamId, e.Version - 1), out var before))
            {
                if (before.Hash != e.PreviousHash) broken.Add((e.Position, e.Version));
                before.HasAfter = link.HasBefore = true;
                if (before.Done) _open.Remove((e.StreamId, e.Version - 1));
            }
            if (_open.TryGetValue((e.StreamId, e.Version + 1), out var after))
            {
                if (after.PreviousHash != e.Hash) broken.Add((after.Position, e.Version + 1));
                after.HasBefore = link.HasAfter = true;
                if (after.Done) _open.Remove((e.StreamId, e.Version + 1));
            }
            if (!link.Done) _open[(e.StreamId, e.Version)] = link;
            return broken;
        }

        private sealed class Link(long position, string hash, string? previousHash)
        {
            public long Position => position;
            public string Hash => hash;
            public string? PreviousHash => previousHash;
            public bool HasBefore { get; set; }
            public bool HasAfter { get; set; }
            public bool Done => HasBefore && HasAfter;
        }
    }

    /// <summary>Passes reads or writes through and hashes what passed (SHA-256), for the manifest.</summary>
    private sealed class Hashing(Stream inner) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public string Hex() => Convert.ToHexStringLower(_hash.GetHashAndReset());

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var read = inner.Read(buffer);
            _hash.AppendData(buffer[..read]);
            return read;
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            inner.Write(buffer);
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _hash.AppendData(buffer.Span);
            await inner.WriteAsync(buffer, cancellationToken);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override bool CanRead => inner.CanRead;
        public override bool CanWrite => inner.CanWrite;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                _hash.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
