using MassTransit;

namespace Verification.Contracts;

/// <summary>
/// A service's signed tree head, published at intervals so others (the compliance service) keep a copy it cannot
/// later deny. <c>ConsistencyProof</c> (hex hashes, RFC 9162) proves this tree extends the one of <c>ProofFromSize</c>
/// the same publisher sent before.
/// </summary>
[MessageUrn("verification:audit:tree-head-signed:v1", false)]
public sealed record TreeHeadSigned(string Log, long Size, string RootHash, DateTimeOffset Timestamp, string Signature, string PublicKey,
    long? ProofFromSize = null, string[]? ConsistencyProof = null);
