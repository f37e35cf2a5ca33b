using System.CommandLine;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Spectre.Console;
using Verification.EventStore;

namespace Verification.Auditor;

/// <summary>
/// The auditor's tool. Against a running system over HTTP: verify-log, prove, consistency, export, replay.
/// On a file alone, with no database or network: verify-bundle. Exit code 0 means verified, 1 a failed check, 2 bad usage or an unreachable service.
/// </summary>
public static class Cli
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static Task<int> RunAsync(string[] args, TextWriter? output = null)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output ?? Console.Out), Ansi = output is null ? AnsiSupport.Detect : AnsiSupport.No });

        var url = new Option<string>("--url") { Description = "The service (or the embedded host)", DefaultValueFactory = _ => "http://127.0.0.1:5100" };
        var token = new Option<string?>("--token") { Description = "Bearer token (auditor); default: $VERIFICATION_TOKEN" };
        var log = new Option<string>("--log") { Description = "The log: incidents, hotline, exchanges, pullbacks or compliance", Required = true };
        var key = new Option<FileInfo?>("--public-key") { Description = "The log's public key (PEM), obtained separately; default: ask the service / trust the bundle's" };

        Command Remote(string name, string description, params Option[] extra)
        {
            var command = new Command(name, description) { url, token, log, key };
            foreach (var option in extra) command.Options.Add(option);
            return command;
        }

        var verifyLog = Remote("verify-log", "Download the whole log, recompute every hash chain link and the Merkle root, and check them against a fresh signed tree head");
        verifyLog.SetAction((r, ct) => Guard(console, async () =>
        {
            using var http = Client(r.GetValue(url)!, r.GetValue(token));
            var trusted = await KeyAsync(http, r.GetValue(key), ct);
            // Downloaded to a file and verified from there: the whole log need not fit in memory.
            await using var bundle = new FileStream(Path.Combine(Path.GetTempPath(), $"verification-{Guid.NewGuid():N}.zip"), FileMode.CreateNew, FileAccess.ReadWrite,
                FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
            await DownloadAsync(http, $"log/{r.GetValue(log)}/export", bundle, ct);
            bundle.Position = 0;
            var result = AuditBundle.Verify(bundle, trusted);
            Report(console, result, $"{r.GetValue(log)} log");
            return result.Valid && result.EventsChecked == result.TreeSize ? 0 : 1;
        }));

        var position = new Option<long>("--position") { Description = "The event's position in the log", Required = true };
        var prove = Remote("prove", "Fetch and check the inclusion proof of one event against a signed tree head", position);
        prove.SetAction((r, ct) => Guard(console, async () =>
        {
            using var http = Client(r.GetValue(url)!, r.GetValue(token));
            var head = await SignedHeadAsync(http, r.GetValue(log)!, await KeyAsync(http, r.GetValue(key), ct), ct);
            var proof = await http.GetFromJsonAsync<InclusionProof>($"log/{r.GetValue(log)}/inclusion?position={r.GetValue(position)}&size={head.Size}", Json, ct)
                ?? throw new InvalidOperationException("no proof");
            var ok = proof.RootHash == head.RootHash && Merkle.VerifyInclusion(Convert.FromHexString(proof.LeafHash), proof.LeafIndex, proof.TreeSize,
                [.. proof.Proof.Select(Convert.FromHexString)], Convert.FromHexString(head.RootHash));
            console.WriteLine(ok ? $"included: position {proof.Position} is leaf {proof.LeafIndex} of {head.Size}, root {head.RootHash}" : "NOT VERIFIED: the proof does not lead to the signed root");
            return ok ? 0 : 1;
        }));

        var first = new Argument<long>("old") { Description = "The older tree size" };
        var second = new Argument<long>("new") { Description = "The newer tree size" };
        var consistency = Remote("consistency", "Check that the log of size <old> is a prefix of the log of size <new>");
        consistency.Arguments.Add(first);
        consistency.Arguments.Add(second);
        consistency.SetAction((r, ct) => Guard(console, async () =>
        {
            using var http = Client(r.GetValue(url)!, r.GetValue(token));
            var proof = await http.GetFromJsonAsync<ConsistencyProof>($"log/{r.GetValue(log)}/consistency?first={r.GetValue(first)}&second={r.GetValue(second)}", Json, ct)
                ?? throw new InvalidOperationException("no proof");
            var ok = Merkle.VerifyConsistency(proof.First, proof.Second, Convert.FromHexString(proof.FirstRoot), Convert.FromHexString(proof.SecondRoot),
                [.. proof.Proof.Select(Convert.FromHexString)]);
            console.WriteLine(ok ? $"consistent: {proof.First} ({proof.FirstRoot}) is a prefix of {proof.Second} ({proof.SecondRoot})" : "NOT CONSISTENT");
            return ok ? 0 : 1;
        }));

        var from = new Option<DateTimeOffset?>("--from") { Description = "Recorded from (inclusive)" };
        var to = new Option<DateTimeOffset?>("--to") { Description = "Recorded before (exclusive)" };
        var outFile = new Option<FileInfo>("--out") { Description = "Where to write the bundle", Required = true };
        var export = Remote("export", "Export a bundle (events, signed tree head, proofs, manifest) for offline verification", from, to, outFile);
        export.SetAction((r, ct) => Guard(console, async () =>
        {
            using var http = Client(r.GetValue(url)!, r.GetValue(token));
            var query = string.Join('&', new[] { ("from", r.GetValue(from)), ("to", r.GetValue(to)) }.Where(q => q.Item2 is not null)
                .Select(q => $"{q.Item1}={Uri.EscapeDataString(q.Item2!.Value.ToString("o"))}"));
            // Downloaded beside --out and moved over it when complete: a failed export leaves no file, and no cut-off one
            // in place of an earlier good bundle.
            var path = r.GetValue(outFile)!.FullName;
            var partial = $"{path}.{Guid.NewGuid():N}.partial";
            try
            {
                long length;
                await using (var bundle = new FileStream(partial, FileMode.CreateNew))
                {
                    await DownloadAsync(http, $"log/{r.GetValue(log)}/export{(query.Length > 0 ? "?" + query : "")}", bundle, ct);
                    length = bundle.Length;
                }
                File.Move(partial, path, overwrite: true);
                console.WriteLine($"wrote {path} ({length:N0} bytes)");
                return 0;
            }
            finally
            {
                File.Delete(partial);
            }
        }));

        var file = new Argument<FileInfo>("bundle") { Description = "The bundle file" };
        var verifyBundle = new Command("verify-bundle", "Verify a bundle offline: manifest hashes, every event hash and stream link, every inclusion proof, the signature") { key };
        verifyBundle.Arguments.Add(file);
        verifyBundle.SetAction((r, ct) => Guard(console, async () =>
        {
            await using var bundle = File.OpenRead(r.GetValue(file)!.FullName);
            var trusted = r.GetValue(key) is { } k ? await File.ReadAllTextAsync(k.FullName, ct) : null;
            var result = AuditBundle.Verify(bundle, trusted);
            Report(console, result, r.GetValue(file)!.Name);
            return result.Valid ? 0 : 1;
        }));

        var projection = new Option<string>("--projection") { Description = "The projection to rebuild and compare", Required = true };
        var replay = Remote("replay", "Page through the log (with progress), then rebuild a projection from zero and compare it with the live one", projection);
        replay.SetAction((r, ct) => Guard(console, async () =>
        {
            using var http = Client(r.GetValue(url)!, r.GetValue(token));
            var name = r.GetValue(log)!;
            var head = await http.GetFromJsonAsync<TreeHead>($"log/{name}/tree-head", Json, ct) ?? throw new InvalidOperationException("no tree head");
            long read = 0;
            await console.Progress().StartAsync(async progress =>
            {
                var task = progress.AddTask($"replaying {name}", maxValue: Math.Max(1, head.Size));
                string? after = "0";
                while (after is not null)
                {
                    var page = await http.GetFromJsonAsync<EventPage>($"log/{name}/events?after={after}&limit=1000", Json, ct) ?? throw new InvalidOperationException("no page");
                    read += page.Events.Count;
                    task.Value = Math.Min(read, head.Size);
                    after = page.Next;
                }
                using var compared = await http.PostAsync($"log/{name}/projections/{r.GetValue(projection)}/compare", null, ct);
                task.Value = task.MaxValue;
                var comparison = await compared.Content.ReadFromJsonAsync<Comparison>(Json, ct) ?? throw new InvalidOperationException("no comparison");
                console.WriteLine(comparison.Equal
                    ? $"{read} events read; {comparison.Projection} rebuilt from zero equals the live one"
                    : $"{read} events read; {comparison.Projection} DIFFERS:\n  " + string.Join("\n  ", comparison.Differences));
                read = comparison.Equal ? read : -1;
            });
            return read >= 0 ? 0 : 1;
        }));

        var root = new RootCommand("Verification auditor: check the record without trusting the service that keeps it")
        {
            verifyLog, prove, consistency, export, verifyBundle, replay,
        };
        return root.Parse(args).InvokeAsync();
    }

    private static async Task<int> Guard(IAnsiConsole console, Func<Task<int>> work)
    {
        try
        {
            return await work();
        }
        catch (Exception e) when (e is HttpRequestException or IOException or InvalidOperationException or JsonException or CryptographicException)
        {
            console.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    private static HttpClient Client(string url, string? token)
    {
        if (!Uri.TryCreate(url.TrimEnd('/') + "/", UriKind.Absolute, out var address)) throw new InvalidOperationException($"--url {url} is not an absolute URL");
        // A service writes a whole log's bundle before it answers: give it longer than HttpClient's 100 s.
        var http = new HttpClient(new Refusals()) { BaseAddress = address, Timeout = TimeSpan.FromMinutes(10) };
        var bearer = token ?? Environment.GetEnvironmentVariable("VERIFICATION_TOKEN");
        if (!string.IsNullOrWhiteSpace(bearer)) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        return http;
    }

    /// <summary>Streams a download to <paramref name="destination"/>: a log's bundle need not fit in memory.</summary>
    private static async Task DownloadAsync(HttpClient http, string path, Stream destination, CancellationToken ct)
    {
        using var response = await http.GetAsync(path, HttpCompletionOption.ResponseHeadersRead, ct);
        await response.Content.CopyToAsync(destination, ct);
    }

    /// <summary>
    /// Turns an error answer into an error naming the service's reason (its ProblemDetails' detail or title), not the
    /// status alone, for every request the tool makes.
    /// </summary>
    private sealed class Refusals() : DelegatingHandler(new HttpClientHandler())
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            if (response.IsSuccessStatusCode) return response;
            using (response)
            {
                string? reason = null;
                if (response.Content.Headers.ContentType?.MediaType is { } type && type.EndsWith("json", StringComparison.Ordinal))
                {
                    try
                    {
                        using var body = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(cancellationToken), cancellationToken: cancellationToken);
                        reason = new[] { "detail", "title" }.Select(name => body.RootElement.ValueKind == JsonValueKind.Object
                            && body.RootElement.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null)
                            .FirstOrDefault(text => !string.IsNullOrWhiteSpace(text));
                    }
                    catch (JsonException)
                    {
                        // Not a ProblemDetails after all: the status says what there is to say.
                    }
                }
                var status = $"{(int)response.StatusCode} ({response.ReasonPhrase})";
                throw new HttpRequestException(reason is null ? $"the service answered {status}" : $"the service answered {status}: {reason}", null, response.StatusCode);
            }
        }
    }

    private static async Task<string> KeyAsync(HttpClient http, FileInfo? file, CancellationToken ct) =>
        file is not null ? await File.ReadAllTextAsync(file.FullName, ct) : await http.GetStringAsync("log/public-key", ct);

    private static async Task<TreeHead> SignedHeadAsync(HttpClient http, string log, string keyPem, CancellationToken ct)
    {
        var head = await http.GetFromJsonAsync<TreeHead>($"log/{log}/tree-head", Json, ct) ?? throw new InvalidOperationException("no tree head");
        using var key = ECDsa.Create();
        key.ImportFromPem(keyPem);
        return head.Verify(key) ? head : throw new InvalidOperationException("the tree head's signature does not verify with the log's key");
    }

    private static void Report(IAnsiConsole console, BundleVerification result, string what)
    {
        if (result.Valid)
        {
            console.WriteLine($"verified: {what}: {result.EventsChecked} events, tree size {result.TreeSize}, " +
                (result.SignatureByTrustedKey ? "signed by the trusted key" : "signature checked with the bundle's own key (pass --public-key to pin it)"));
            return;
        }
        console.WriteLine($"NOT VERIFIED: {what}{(result.FirstBadPosition is { } p ? $": first bad position {p}" : "")}");
        foreach (var problem in result.Problems.Take(20)) console.WriteLine($"  {problem}");
    }

    private sealed record InclusionProof(string Log, long Position, long LeafIndex, long TreeSize, string LeafHash, string RootHash, string[] Proof);
    private sealed record ConsistencyProof(string Log, long First, long Second, string FirstRoot, string SecondRoot, string[] Proof);
    private sealed record EventPage(string Log, List<JsonElement> Events, string? Next);
    private sealed record Comparison(string Log, string Projection, bool Equal, string[] Differences);
}
