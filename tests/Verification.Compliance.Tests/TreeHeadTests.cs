using System.Security.Cryptography;
using Verification.Compliance.TreeHeads;
using Verification.EventStore;
using Contract = Verification.Contracts;

namespace Verification.Compliance.Tests;

public sealed class TreeHeadTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 24, 12, 0, 0, TimeSpan.Zero);
    private static readonly List<byte[]> Leaves = [.. Enumerable.Range(0, 20).Select(i => SHA256.HashData([(byte)i]))];

    private static string Root(int size) => Convert.ToHexStringLower(Merkle.Root(Leaves.Take(size).ToList()));

    private static Contract.TreeHeadSigned Head(ECDsa key, long size, string root, long? from = null, string[]? proof = null)
    {
        var signature = Convert.ToHexStringLower(key.SignData(TreeHead.Payload("hotline", size, root, Now), HashAlgorithmName.SHA256));
        return new Contract.TreeHeadSigned("hotline", size, root, Now, signature, key.ExportSubjectPublicKeyInfoPem(), from, proof);
    }

    private static string[] Proof(int m, int n) => [.. Merkle.ConsistencyProof(Leaves, m, n).Select(Convert.ToHexStringLower)];

    [Fact]
    public void A_signed_growing_head_is_kept_and_a_forged_shrunk_or_equivocating_one_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var first = Assert.IsType<TreeHeadCollected>(CollectTreeHeads.Decide(Head(key, 10, Root(10)), [], Now));
        var grown = Assert.IsType<TreeHeadCollected>(CollectTreeHeads.Decide(Head(key, 12, Root(12)), [first], Now));
        Assert.Null(grown.ProvenFromSize);   // no proof came with it

        Assert.Contains("signature", Assert.IsType<TreeHeadRefused>(CollectTreeHeads.Decide(Head(key, 14, Root(14)) with { RootHash = Root(13) }, [first, grown], Now)).Reason,
            StringComparison.Ordinal);
        Assert.Contains("shrank from 12 to 11", Assert.IsType<TreeHeadRefused>(CollectTreeHeads.Decide(Head(key, 11, Root(11)), [first, grown], Now)).Reason, StringComparison.Ordinal);
        Assert.Contains($"size 12 had root {Root(12)}", Assert.IsType<TreeHeadRefused>(CollectTreeHeads.Decide(Head(key, 12, Root(9)), [first, grown], Now)).Reason,
            StringComparison.Ordinal);
        Assert.IsType<TreeHeadRefused>(CollectTreeHeads.Decide(Head(key, 13, Root(13)) with { PublicKey = "not a key" }, [first], Now));
    }

    [Fact]
    public void The_first_key_is_pinned_and_a_consistency_proof_must_extend_the_collected_head()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var first = Assert.IsType<TreeHeadCollected>(CollectTreeHeads.Decide(Head(key, 10, Root(10)), [], Now));

        var proven = Assert.IsType<TreeHeadCollected>(CollectTreeHeads.Decide(Head(key, 16, Root(16), 10, Proof(10, 16)), [first], Now));
        Assert.Equal(10, proven.ProvenFromSize);
        Assert.Contains("key other than", Assert.IsType<TreeHeadRefused>(CollectTreeHeads.Decide(Head(other, 16, Root(16)), [first], Now)).Reason, StringComparison.Ordinal);

        // A rewritten history: leaf 3 changed, the new head signed and "proved" against the old size.
        var forged = new List<byte[]>(Leaves) { [3] = SHA256.HashData("rewritten"u8) };
        var forgedRoot = Convert.ToHexStringLower(Merkle.Root(forged.Take(16).ToList()));
        string[] forgedProof = [.. Merkle.ConsistencyProof(forged, 10, 16).Select(Convert.ToHexStringLower)];
        Assert.Contains("not an extension", Assert.IsType<TreeHeadRefused>(CollectTreeHeads.Decide(Head(key, 16, forgedRoot, 10, forgedProof), [first], Now)).Reason,
            StringComparison.Ordinal);
        Assert.IsType<TreeHeadRefused>(CollectTreeHeads.Decide(Head(key, 16, Root(16), 10, ["zz"]), [first], Now));
    }
}
