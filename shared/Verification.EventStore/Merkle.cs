using System.Security.Cryptography;

namespace Verification.EventStore;

/// <summary>
/// RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing and proofs: leaf = SHA-256(0x00 ‖ entry),
/// node = SHA-256(0x01 ‖ left ‖ right), the split at the largest power of two below n; inclusion and consistency
/// proofs and their verification as §2.1.3.2 and §2.1.4.2 state them.
/// </summary>
public static class Merkle
{
    public static byte[] LeafHash(ReadOnlySpan<byte> entry)
    {
        var buffer = new byte[entry.Length + 1];
        entry.CopyTo(buffer.AsSpan(1));
        return SHA256.HashData(buffer);
    }

    public static byte[] NodeHash(ReadOnlySpan<byte> left, ReadOnlySpan<byte> right)
    {
        Span<byte> buffer = stackalloc byte[65];
        buffer[0] = 1;
        left.CopyTo(buffer[1..]);
        right.CopyTo(buffer[33..]);
        return SHA256.HashData(buffer);
    }

    /// <summary>MTH(D[lo:hi]) over leaf hashes.</summary>
    public static byte[] Root(IReadOnlyList<byte[]> leaves) => Root(leaves, 0, leaves.Count);

    private static byte[] Root(IReadOnlyList<byte[]> leaves, int lo, int hi)
    {
        var n = hi - lo;
        if (n == 0) return SHA256.HashData([]);
        if (n == 1) return leaves[lo];
        var k = Split(n);
        return NodeHash(Root(leaves, lo, lo + k), Root(leaves, lo + k, hi));
    }

    /// <summary>The largest power of two smaller than n (n ≥ 2).</summary>
    private static int Split(int n)
    {
        var k = 1;
        while (k << 1 < n) k <<= 1;
        return k;
    }

    /// <summary>PATH(m, D[0:n]): the audit path of leaf m in the tree of the first n leaves.</summary>
    public static List<byte[]> InclusionProof(IReadOnlyList<byte[]> leaves, int m, int n)
    {
        if (m < 0 || m >= n || n > leaves.Count) throw new ArgumentOutOfRangeException(nameof(m), "leaf index must be below the tree size");
        var proof = new List<byte[]>();
        Path(leaves, m, 0, n, proof);
        return proof;
    }

    private static void Path(IReadOnlyList<byte[]> leaves, int m, int lo, int hi, List<byte[]> proof)
    {
        if (hi - lo <= 1) return;
        var k = Split(hi - lo);
        if (m < k)
        {
            Path(leaves, m, lo, lo + k, proof);
            proof.Add(Root(leaves, lo + k, hi));
        }
        else
        {
            Path(leaves, m - k, lo + k, hi, proof);
            proof.Add(Root(leaves, lo, lo + k));
        }
    }

    /// <summary>PROOF(m, D[0:n]): that the tree of the first m leaves is a prefix of the tree of the first n.</summary>
    public static List<byte[]> ConsistencyProof(IReadOnlyList<byte[]> leaves, int m, int n)
    {
        if (m <= 0 || m > n || n > leaves.Count) throw new ArgumentOutOfRangeException(nameof(m), "need 0 < first ≤ second ≤ size");
        var proof = new List<byte[]>();
        SubProof(leaves, m, 0, n, true, proof);
        return proof;
    }

    private static void SubProof(IReadOnlyList<byte[]> leaves, int m, int lo, int hi, bool whole, List<byte[]> proof)
    {
        var n = hi - lo;
        if (m == n)
        {
            if (!whole) proof.Add(Root(leaves, lo, hi));
            return;
        }
        var k = Split(n);
        if (m <= k)
        {
            SubProof(leaves, m, lo, lo + k, whole, proof);
            proof.Add(Root(leaves, lo + k, hi));
        }
        else
        {
            SubProof(leaves, m - k, lo + k, hi, false, proof);
            proof.Add(Root(leaves, lo, lo + k));
        }
    }

    /// <summary>RFC 9162 §2.1.3.2.</summary>
    public static bool VerifyInclusion(byte[] leafHash, long index, long size, IReadOnlyList<byte[]> proof, byte[] root)
    {
        if (index < 0 || index >= size) return false;
        long fn = index, sn = size - 1;
        var r = leafHash;
        foreach (var p in proof)
        {
            if (sn == 0) return false;
            if ((fn & 1) == 1 || fn == sn)
            {
                r = NodeHash(p, r);
                while ((fn & 1) == 0 && fn != 0)
                {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
            else
            {
                r = NodeHash(r, p);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return sn == 0 && r.AsSpan().SequenceEqual(root);
    }

    /// <summary>RFC 9162 §2.1.4.2 (equal sizes need an empty proof and equal roots).</summary>
    public static bool VerifyConsistency(long first, long second, byte[] firstRoot, byte[] secondRoot, IReadOnlyList<byte[]> proof)
    {
        if (first <= 0 || first > second) return false;
        if (first == second) return proof.Count == 0 && firstRoot.AsSpan().SequenceEqual(secondRoot);
        if (proof.Count == 0) return false;
        var path = (first & (first - 1)) == 0 ? [firstRoot, .. proof] : proof.ToList();
        long fn = first - 1, sn = second - 1;
        while ((fn & 1) == 1)
        {
            fn >>= 1;
            sn >>= 1;
        }
        byte[] fr = path[0], sr = path[0];
        foreach (var c in path.Skip(1))
        {
            if (sn == 0) return false;
            if ((fn & 1) == 1 || fn == sn)
            {
                fr = NodeHash(c, fr);
                sr = NodeHash(c, sr);
                while ((fn & 1) == 0 && fn != 0)
                {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
            else
            {
                sr = NodeHash(sr, c);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return sn == 0 && fr.AsSpan().SequenceEqual(firstRoot) && sr.AsSpan().SequenceEqual(secondRoot);
    }
}

/// <summary>
/// The whole tree kept level by level, so each inclusion proof costs O(log n) instead of O(n): pairing nodes left
/// to right and carrying an odd last node up unchanged builds the same tree as RFC 9162's largest-power-of-two split.
/// Each level is one array of 32-byte hashes side by side (an array per node took twice the memory: about 64 MB of a
/// million-event export's 286).
/// </summary>
public sealed class MerkleTree
{
    private const int HashSize = 32;
    private readonly List<(byte[] Nodes, int Count)> _levels = [];

    public MerkleTree(IReadOnlyList<byte[]> leaves) : this(Flat(leaves), leaves.Count) { }

    /// <param name="leaves">Leaf hashes side by side, 32 bytes each; the first <paramref name="count"/> are the tree's.</param>
    /// <param name="count">How many leaves.</param>
    public MerkleTree(byte[] leaves, int count)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)count * HashSize, leaves.Length, nameof(count));
        var (level, n) = (leaves, count);
        _levels.Add((level, n));
        while (n > 1)
        {
            var next = new byte[(n + 1) / 2 * HashSize];
            for (var i = 0; i < n / 2; i++)
                Merkle.NodeHash(At(level, 2 * i), At(level, 2 * i + 1)).CopyTo(next, i * HashSize);
            if (n % 2 == 1) At(level, n - 1).CopyTo(next.AsSpan((n - 1) / 2 * HashSize));
            (level, n) = (next, (n + 1) / 2);
            _levels.Add((level, n));
        }
    }

    public int Size => _levels[0].Count;
    public byte[] Root => Size == 0 ? SHA256.HashData([]) : At(_levels[^1].Nodes, 0).ToArray();

    /// <summary>The audit path of leaf <paramref name="index"/>, leaf to root, as RFC 9162 orders it.</summary>
    public List<byte[]> InclusionProof(int index)
    {
        if (index < 0 || index >= Size) throw new ArgumentOutOfRangeException(nameof(index), "leaf index must be below the tree size");
        var proof = new List<byte[]>();
        foreach (var (nodes, count) in _levels.Take(_levels.Count - 1))
        {
            var sibling = index ^ 1;
            if (sibling < count) proof.Add(At(nodes, sibling).ToArray());
            index >>= 1;
        }
        return proof;
    }

    private static ReadOnlySpan<byte> At(byte[] nodes, int index) => nodes.AsSpan(index * HashSize, HashSize);

    private static byte[] Flat(IReadOnlyList<byte[]> leaves)
    {
        var flat = new byte[leaves.Count * HashSize];
        for (var i = 0; i < leaves.Count; i++) leaves[i].CopyTo(flat, i * HashSize);
        return flat;
    }
}

/// <summary>
/// The service's verifiable log kept as it grows: leaf hashes and positions in memory, extended by reading only the
/// events settled since the last read, and the roots of its perfect subtrees (largest first), so a tree head costs
/// O(log n) hashes and no read of the whole log. Proofs work on the cached leaves. What the service signs is what it
/// read as it was appended: a row changed later in the database no longer matches the heads already signed.
/// <see cref="VerifiableLog.LeavesAsync"/> reads the database afresh, for checking it.
/// </summary>
public sealed class LogTree
{
    private readonly EventStore _store;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly List<byte[]> _leaves = [];
    private readonly List<long> _positions = [];
    private readonly List<(byte[] Hash, long Size)> _peaks = [];
    private LogPosition _read = LogPosition.Start;

    internal LogTree(EventStore store) => _store = store;

    /// <summary>The first <paramref name="size"/> leaves (all, if null or larger) and their events' positions.</summary>
    public Task<(List<byte[]> Leaves, List<long> Positions)> LeavesAsync(long? size = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size ?? 0, nameof(size));
        return ReadAsync(() =>
        {
            var n = (int)Math.Min(size ?? long.MaxValue, _leaves.Count);
            return (_leaves.GetRange(0, n), _positions.GetRange(0, n));
        }, cancellationToken);
    }

    /// <summary>The whole settled log's size and RFC 9162 root.</summary>
    public Task<(long Size, byte[] Root)> HeadAsync(CancellationToken cancellationToken = default) =>
        ReadAsync(() =>
        {
            if (_peaks.Count == 0) return (0L, SHA256.HashData([]));
            // MTH splits at the largest power of two below n: the first peak on the left, the rest folded on the right.
            var root = _peaks[^1].Hash;
            for (var i = _peaks.Count - 2; i >= 0; i--) root = Merkle.NodeHash(_peaks[i].Hash, root);
            return ((long)_leaves.Count, root);
        }, cancellationToken);

    /// <summary>Brings the tree up to the settled log, then reads it, one caller at a time.</summary>
    private async Task<T> ReadAsync<T>(Func<T> read, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await ExtendAsync(cancellationToken);
            return read();
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task ExtendAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            // The text of the xid gets its own name: left as "transaction_id", ORDER BY would sort by it (an output
            // column's name wins over an input column's), and xids that cross a power of ten would leave commit order.
            await using var command = _store.DataSource.CreateCommand(
                $"""
                SELECT transaction_id::text AS xid_text, position, hash FROM {_store.Schema}.events
                WHERE (transaction_id, position) > (@xid::text::xid8, @pos) AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                ORDER BY transaction_id, position LIMIT 10000
                """);
            command.Parameters.AddWithValue("xid", _read.TransactionId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            command.Parameters.AddWithValue("pos", _read.Position);
            var read = 0;
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            {
                while (await reader.ReadAsync(cancellationToken))
                {
                    var position = reader.GetInt64(1);
                    var leaf = Merkle.LeafHash(VerifiableLog.Entry(position, reader.GetFieldValue<byte[]>(2)));
                    _leaves.Add(leaf);
                    _positions.Add(position);
                    _peaks.Add((leaf, 1));
                    while (_peaks.Count > 1 && _peaks[^1].Size == _peaks[^2].Size)
                    {
                        var (right, size) = _peaks[^1];
                        var left = _peaks[^2].Hash;
                        _peaks.RemoveRange(_peaks.Count - 2, 2);
                        _peaks.Add((Merkle.NodeHash(left, right), size * 2));
                    }
                    _read = new LogPosition(ulong.Parse(reader.GetString(0), System.Globalization.CultureInfo.InvariantCulture), position);
                    read++;
                }
            }
            if (read < 10000) return;
        }
    }
}

/// <summary>A signed tree head: the log's size and root at a time, signed (ECDSA P-256, SHA-256) by the service.</summary>
public sealed record TreeHead(string Log, long Size, string RootHash, DateTimeOffset Timestamp, string Signature)
{
    /// <summary>The signed bytes: UTF-8 of "log LF size LF root (hex) LF timestamp (unix ms)".</summary>
    public static byte[] Payload(string log, long size, string rootHash, DateTimeOffset timestamp) =>
        System.Text.Encoding.UTF8.GetBytes($"{log}\n{size}\n{rootHash}\n{timestamp.ToUnixTimeMilliseconds()}");

    public bool Verify(ECDsa publicKey) =>
        publicKey.VerifyData(Payload(Log, Size, RootHash, Timestamp), Convert.FromHexString(Signature), HashAlgorithmName.SHA256);
}

/// <summary>The store's events as a verifiable log: leaves in the daemon's commit order, entry = position (8 bytes, big-endian) ‖ event hash.</summary>
public static class VerifiableLog
{
    public static byte[] Entry(long position, byte[] eventHash)
    {
        var entry = new byte[8 + eventHash.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(entry, position);
        eventHash.CopyTo(entry, 8);
        return entry;
    }

    /// <summary>
    /// Leaf hashes of the settled log (the first <paramref name="size"/>, or all), and each leaf's event position, read
    /// afresh from the database: for checking what is stored against heads already signed.
    /// </summary>
    public static Task<(List<byte[]> Leaves, List<long> Positions)> LeavesAsync(this EventStore store, long? size = null, CancellationToken cancellationToken = default) =>
        new LogTree(store).LeavesAsync(size, cancellationToken);

    /// <summary>Signs the head of the service's own tree (<see cref="EventStore.Tree"/>, extended as events settle).</summary>
    public static async Task<TreeHead> SignTreeHeadAsync(this EventStore store, ECDsa key, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var (size, root) = await store.Tree.HeadAsync(cancellationToken);
        return Sign(store.Schema, size, root, key, now);
    }

    public static TreeHead Sign(string log, IReadOnlyList<byte[]> leaves, ECDsa key, DateTimeOffset now) => Sign(log, leaves.Count, Merkle.Root(leaves), key, now);

    public static TreeHead Sign(string log, long size, byte[] root, ECDsa key, DateTimeOffset now)
    {
        var hex = Convert.ToHexStringLower(root);
        var signature = key.SignData(TreeHead.Payload(log, size, hex, now), HashAlgorithmName.SHA256);
        return new TreeHead(log, size, hex, now, Convert.ToHexStringLower(signature));
    }
}
