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
public sealed record ConsistencyProofResponse(string Log, long First, long Second, string FirstRoot, string SecondRoot, string[] Proof);

/// <summary>Every service exposes its log for auditors: signed tree heads, inclusion and consistency proofs (RFC 9162).</summary>
public static class VerifiableLogApi
{
    public static WebApplication MapVerifiableLog(this WebApplication app, params string[] logs)
    {
        var group = app.MapGroup("/log").RequireAuthorization().WithTags("Verifiable log");
        group.MapGet("/public-key", (LogSigner signer) => TypedResults.Text(signer.PublicKeyPem, "application/x-pem-file"));
        group.MapGet("/{log}/tree-head", async (string log, HttpContext http, LogSigner signer, TimeProvider clock) =>
            TypedResults.Ok(await Store(http, logs, log).SignTreeHeadAsync(signer.Key, clock.GetUtcNow(), http.RequestAborted)));
        group.MapGet("/{log}/inclusion", async (string log, long position, long? size, HttpContext http) =>
        {
            var store = Store(http, logs, log);
            var (leaves, positions) = await store.LeavesAsync(size, http.RequestAborted);
            var index = positions.IndexOf(position);
            if (index < 0) throw Rejection.NotFound($"position {position} is not in the first {leaves.Count} leaves of the {log} log");
            return TypedResults.Ok(new InclusionProofResponse(log, position, index, leaves.Count, Convert.ToHexStringLower(leaves[index]),
                Convert.ToHexStringLower(Merkle.Root(leaves)), [.. Merkle.InclusionProof(leaves, index, leaves.Count).Select(Convert.ToHexStringLower)]));
        });
        group.MapGet("/{log}/consistency", async (string log, long first, long second, HttpContext http) =>
        {
            var (leaves, _) = await Store(http, logs, log).LeavesAsync(second, http.RequestAborted);
            if (first <= 0 || first > second || second > leaves.Count)
                throw Rejection.Invalid(new Dictionary<string, string[]> { ["first"] = [$"need 0 < first ≤ second ≤ {leaves.Count}"] });
            return TypedResults.Ok(new ConsistencyProofResponse(log, first, second, Convert.ToHexStringLower(Merkle.Root(leaves.Take((int)first).ToList())),
                Convert.ToHexStringLower(Merkle.Root(leaves)), [.. Merkle.ConsistencyProof(leaves, (int)first, (int)second).Select(Convert.ToHexStringLower)]));
        });
        return app;
    }

    private static EventStore.EventStore Store(HttpContext http, string[] logs, string log) =>
        logs.Contains(log) ? http.RequestServices.GetRequiredKeyedService<EventStore.EventStore>(log) : throw Rejection.NotFound($"no log named {log}");
}
