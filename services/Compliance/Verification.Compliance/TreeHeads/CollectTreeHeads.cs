using System.Security.Cryptography;
using MassTransit;
using Microsoft.AspNetCore.Mvc;
using Verification.EventStore;
using Contract = Verification.Contracts;

namespace Verification.Compliance.TreeHeads;

/// <summary>A head kept; <c>ProvenFromSize</c>: the collected head this one was proved to extend (none: no proof came with it).</summary>
public sealed record TreeHeadCollected(string Log, long Size, string RootHash, DateTimeOffset Timestamp, string Signature, string PublicKey, long? ProvenFromSize,
    DateTimeOffset CollectedAt);

/// <summary>A head that cannot be right: a bad signature, another key, a log that shrank, a second root for a size already seen (equivocation), or a failed consistency proof.</summary>
public sealed record TreeHeadRefused(string Log, long Size, string RootHash, string Reason, DateTimeOffset RefusedAt);

/// <summary>Keeps every other service's signed tree heads in this service's own log, so a service cannot later present a different history.</summary>
public static class CollectTreeHeads
{
    public static string StreamId(string log) => $"tree-heads-{log}";

    public static object Decide(Contract.TreeHeadSigned head, IReadOnlyList<TreeHeadCollected> collected, DateTimeOffset now)
    {
        var problem = SignatureProblem(head);
        // The first key seen for a log is pinned: a head under another key is refused (rotating keys is an auditors' decision).
        problem ??= collected.Count > 0 && collected[0].PublicKey != head.PublicKey ? "signed with a key other than the one first collected for this log" : null;
        var largest = collected.Count == 0 ? null : collected.MaxBy(c => c.Size);
        problem ??= largest is not null && head.Size < largest.Size ? $"the log shrank from {largest.Size} to {head.Size}"
            : collected.FirstOrDefault(c => c.Size == head.Size && c.RootHash != head.RootHash) is { } other ? $"size {head.Size} had root {other.RootHash}, now {head.RootHash}"
            : null;
        long? proven = null;
        if (problem is null && head.ProofFromSize is { } from && collected.FirstOrDefault(c => c.Size == from) is { } earlier)
        {
            var consistent = head.ConsistencyProof is { } proof && TryHex(proof, out var hashes) && TryHex([earlier.RootHash, head.RootHash], out var roots)
                && Merkle.VerifyConsistency(from, head.Size, roots[0], roots[1], hashes);
            if (consistent) proven = from;
            else problem = $"the consistency proof from size {from} (root {earlier.RootHash}) does not verify: this log is not an extension of it";
        }
        return problem is null
            ? new TreeHeadCollected(head.Log, head.Size, head.RootHash, head.Timestamp, head.Signature, head.PublicKey, proven, now)
            : new TreeHeadRefused(head.Log, head.Size, head.RootHash, problem, now);
    }

    private static string? SignatureProblem(Contract.TreeHeadSigned head)
    {
        using var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(head.PublicKey);
            return new TreeHead(head.Log, head.Size, head.RootHash, head.Timestamp, head.Signature).Verify(key) ? null : "the signature does not verify with the key it names";
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException or FormatException)
        {
            return $"unreadable key or signature: {e.Message}";
        }
    }

    private static bool TryHex(string[] hex, out List<byte[]> bytes)
    {
        bytes = [];
        foreach (var h in hex)
        {
            if (h.Length != 64 || !h.All(Uri.IsHexDigit)) return false;
            bytes.Add(Convert.FromHexString(h));
        }
        return true;
    }

    public static void Map(RouteGroupBuilder group) =>
        group.MapGet("/tree-heads/{log}", async (string log, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store) =>
            TypedResults.Ok((await store.ReadStreamAsync(StreamId(log), cancellationToken: http.RequestAborted)).Select(e => e.Data).ToList()));
}

public sealed class TreeHeadConsumer([FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, TimeProvider clock) : IConsumer<Contract.TreeHeadSigned>
{
    public async Task Consume(ConsumeContext<Contract.TreeHeadSigned> context)
    {
        var head = context.Message;
        if (head.Log == ComplianceModule.Name) return;   // its own heads would grow its own log at every interval
        var messageId = context.MessageId ?? throw new InvalidOperationException("a message without an id cannot be recorded once");
        var events = await store.ReadStreamAsync(CollectTreeHeads.StreamId(head.Log), cancellationToken: context.CancellationToken);
        var decided = CollectTreeHeads.Decide(head, [.. events.Select(e => e.Data).OfType<TreeHeadCollected>()], clock.GetUtcNow());
        await store.HandleOnceAsync("compliance-tree-heads", messageId, new EventMetadata { ActorSub = "compliance", CausationId = messageId.ToString() },
            session =>
            {
                session.Append(CollectTreeHeads.StreamId(head.Log), "tree_heads", events.Count, decided);
                return Task.CompletedTask;
            }, context.CancellationToken);
    }
}
