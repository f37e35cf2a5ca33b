using System.Security.Cryptography;
using Verification.EventStore;
using Verification.Testing;

namespace Verification.EventStore.Tests;

/// <summary>RFC 6962/9162 test vectors (the Certificate Transparency reference leaves) and proof round trips.</summary>
public sealed class MerkleTests
{
    private static readonly string[] Leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    private static readonly string[] Roots =
    [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    private static List<byte[]> Hashed() => Leaves.Select(l => Merkle.LeafHash(Convert.FromHexString(l))).ToList();
    private static string[] Hex(IEnumerable<byte[]> hashes) => hashes.Select(Convert.ToHexStringLower).ToArray();

    [Fact]
    public void Roots_match_the_reference_vectors_for_every_size()
    {
        var leaves = Hashed();
        for (var n = 0; n <= 8; n++) Assert.Equal(Roots[n], Convert.ToHexStringLower(Merkle.Root(leaves.Take(n).ToList())));
    }

    [Fact]
    public void Proofs_match_reference_paths()
    {
        var leaves = Hashed();
        Assert.Equal(["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"], Hex(Merkle.InclusionProof(leaves, 5, 8)));
        Assert.Equal(["0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7", "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
            Hex(Merkle.ConsistencyProof(leaves, 3, 8)));
    }

    [Fact]
    public void The_level_by_level_tree_gives_the_same_roots_and_proofs_as_the_recursive_definition()
    {
        var leaves = Enumerable.Range(0, 33).Select(i => Merkle.LeafHash(BitConverter.GetBytes(i))).ToList();
        for (var n = 0; n <= 33; n++)
        {
            var tree = new MerkleTree(leaves.Take(n).ToList());
            Assert.Equal(Convert.ToHexStringLower(Merkle.Root(leaves.Take(n).ToList())), Convert.ToHexStringLower(tree.Root));
            for (var m = 0; m < n; m++) Assert.Equal(Hex(Merkle.InclusionProof(leaves, m, n)), Hex(tree.InclusionProof(m)));
        }
    }

    [Fact]
    public void Every_inclusion_and_consistency_proof_up_to_20_leaves_verifies_and_a_changed_one_does_not()
    {
        var leaves = Enumerable.Range(0, 20).Select(i => Merkle.LeafHash(BitConverter.GetBytes(i))).ToList();
        for (var n = 1; n <= 20; n++)
        {
            var root = Merkle.Root(leaves.Take(n).ToList());
            for (var m = 0; m < n; m++)
            {
                var proof = Merkle.InclusionProof(leaves, m, n);
                Assert.True(Merkle.VerifyInclusion(leaves[m], m, n, proof, root), $"inclusion {m} in {n}");
                Assert.False(Merkle.VerifyInclusion(leaves[(m + 1) % n == m ? 0 : (m + 1) % n], m, n, proof, root) && n > 1, $"wrong leaf {m} in {n}");
            }
            for (var m = 1; m <= n; m++)
            {
                var first = Merkle.Root(leaves.Take(m).ToList());
                var proof = Merkle.ConsistencyProof(leaves, m, n);
                Assert.True(Merkle.VerifyConsistency(m, n, first, root, proof), $"consistency {m} → {n}");
                if (proof.Count > 0)
                {
                    var bad = proof.Select(p => (byte[])p.Clone()).ToList();
                    bad[0][0] ^= 1;
                    Assert.False(Merkle.VerifyConsistency(m, n, first, root, bad), $"altered consistency {m} → {n}");
                }
            }
        }
    }
}

public sealed class VerifiableLogTests(StoreFixture fixture) : IClassFixture<StoreFixture>
{
    [Fact]
    public async Task A_signed_tree_head_proves_inclusion_extends_consistently_and_exposes_tampering()
    {
        var store = new EventStore(fixture.DataSource, StoreFixture.Options("es_log"));
        await store.MigrateAsync();
        for (var i = 0; i < 5; i++) await store.AppendAsync($"inc-{i}", "incident", 0, [new Noted($"inc-{i}", "Kyiv", i)]);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        // The tree covers settled events: a transaction still open anywhere in the cluster (another test's) can hold the newest back a moment.
        var head = await Eventually.Get(async () => await store.SignTreeHeadAsync(key, DateTimeOffset.UtcNow) is { Size: 5 } h ? h : null, what: "five settled events");
        Assert.Equal(5, head.Size);
        Assert.True(head.Verify(key));
        Assert.False((head with { Size = 6 }).Verify(key));

        var (leaves, positions) = await store.LeavesAsync();
        var target = (await store.ReadStreamAsync("inc-3"))[0];
        var index = positions.IndexOf(target.Position);
        var proof = Merkle.InclusionProof(leaves, index, leaves.Count);
        Assert.True(Merkle.VerifyInclusion(Merkle.LeafHash(VerifiableLog.Entry(target.Position, target.Hash)), index, head.Size, proof, Convert.FromHexString(head.RootHash)),
            $"inclusion of position {target.Position} (index {index}) in head size {head.Size}; read afresh: positions {string.Join(",", positions)}, root {Convert.ToHexStringLower(Merkle.Root(leaves))} vs signed {head.RootHash}");

        for (var i = 5; i < 9; i++) await store.AppendAsync($"inc-{i}", "incident", 0, [new Noted($"inc-{i}", "Kyiv", i)]);
        var later = await Eventually.Get(async () => await store.SignTreeHeadAsync(key, DateTimeOffset.UtcNow) is { Size: 9 } h ? h : null, what: "nine settled events");
        var (grown, grownPositions) = await store.LeavesAsync();
        Assert.True(Merkle.VerifyConsistency(head.Size, later.Size, Convert.FromHexString(head.RootHash), Convert.FromHexString(later.RootHash),
            Merkle.ConsistencyProof(grown, (int)head.Size, (int)later.Size)),
            $"consistency {head.Size} -> {later.Size}; read afresh: positions {string.Join(",", grownPositions)}, root {Convert.ToHexStringLower(Merkle.Root(grown))} vs signed {later.RootHash}");

        // A superuser rewrites an event's hash to match altered data: the chain check and the old tree head both catch it.
        await using (var tamper = fixture.DataSource.CreateCommand(
            $"ALTER TABLE es_log.events DISABLE TRIGGER events_append_only; UPDATE es_log.events SET data = jsonb_set(data, '{{count}}', '99'), hash = sha256(hash) WHERE position = {target.Position}; " +
            "ALTER TABLE es_log.events ENABLE TRIGGER events_append_only"))
            await tamper.ExecuteNonQueryAsync();
        var (tampered, _) = await store.LeavesAsync(head.Size);
        Assert.NotEqual(head.RootHash, Convert.ToHexStringLower(Merkle.Root(tampered)));
        var chain = await store.VerifyHashChainAsync();
        Assert.Equal(target.Position, chain.FirstBadPosition);
    }

    [Fact]
    public async Task The_tree_orders_leaves_by_transaction_id_as_a_number_as_the_daemon_does()
    {
        // Regression: the tree sorted by the xid's text, so 10 came before 9 and 100 before 99. When a run's xids crossed
        // a power of ten, its bookmark fell behind and it read an event twice, and a read afresh disagreed with the tree
        // the service had signed (the flaky failures of these tests). Settled rows with chosen xids pin it.
        var store = new EventStore(fixture.DataSource, StoreFixture.Options("es_xids"));
        await store.MigrateAsync();
        foreach (var xid in new[] { 99, 9, 100, 10 })
        {
            await using var insert = fixture.DataSource.CreateCommand(
                "INSERT INTO es_xids.events (transaction_id, id, stream_id, version, type, data, metadata, recorded_at, hash) " +
                $"VALUES ('{xid}'::xid8, gen_random_uuid(), 'x-{xid}', 1, 'noted', '{{}}', '{{}}', now(), '\\x00')");
            await insert.ExecuteNonQueryAsync();
        }
        var inCommitOrder = (await store.ReadAllAsync(LogPosition.Start, 10)).Select(e => e.Position).ToList();
        Assert.Equal([9UL, 10, 99, 100], (await store.ReadAllAsync(LogPosition.Start, 10)).Select(e => e.TransactionId));

        Assert.Equal(inCommitOrder, (await store.Tree.LeavesAsync()).Positions);
        Assert.Equal(inCommitOrder, (await store.LeavesAsync()).Positions);
    }

    [Fact]
    public async Task The_services_tree_grows_with_the_log_and_keeps_what_it_signed()
    {
        var store = new EventStore(fixture.DataSource, StoreFixture.Options("es_tree"));
        await store.MigrateAsync();
        Assert.Equal(Merkle.Root([]), (await store.Tree.HeadAsync()).Root);
        for (var i = 1; i <= 33; i++)
        {
            await store.AppendAsync($"t-{i}", "incident", 0, [new Noted($"t-{i}", "Odesa", i)]);
            var head = await Eventually.Get(async () => await store.Tree.HeadAsync() is { Size: var n } h && n == i ? ((long, byte[])?)h : null, what: $"{i} settled events");
            var (fresh, freshPositions) = await store.LeavesAsync(i);
            // Peaks fold to the RFC 9162 root at every size.
            Assert.True(Merkle.Root(fresh).AsSpan().SequenceEqual(head.Item2),
                $"size {i}: fresh positions [{string.Join(',', freshPositions)}], the tree's [{string.Join(',', (await store.Tree.LeavesAsync(i)).Positions)}]");
        }
        var (cached, positions) = await store.Tree.LeavesAsync(20);
        Assert.Equal(20, cached.Count);
        Assert.Equal((await store.LeavesAsync(20)).Positions, positions);

        // A row changed behind the service's back: the stored log no longer matches the head the service signs.
        await using (var tamper = fixture.DataSource.CreateCommand(
            $"ALTER TABLE es_tree.events DISABLE TRIGGER events_append_only; UPDATE es_tree.events SET hash = sha256(hash) WHERE position = {positions[4]}; " +
            "ALTER TABLE es_tree.events ENABLE TRIGGER events_append_only"))
            await tamper.ExecuteNonQueryAsync();
        var signed = await store.Tree.HeadAsync();
        var (stored, _) = await store.LeavesAsync(signed.Size);
        Assert.NotEqual(Convert.ToHexString(Merkle.Root(stored)), Convert.ToHexString(signed.Root));
    }
}
