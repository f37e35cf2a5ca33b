using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Verification.Demo;

/// <summary>What a scenario left behind: its variables, the compliance summary and every log's signed tree head.</summary>
public sealed record ScenarioResult(IReadOnlyDictionary<string, JsonNode?> Variables, JsonNode? Summary, IReadOnlyDictionary<string, JsonNode?> TreeHeads);

/// <summary>Mints the bearer token for a role, party and subject.</summary>
public delegate string TokenMinter(string role, string? party, string subject);

/// <summary>
/// Plays a scenario file against a running system through its public HTTP APIs only. A step is a request
/// (<c>service</c>, <c>method</c>, <c>path</c>, <c>as</c> "role[:party[:subject]]", <c>body</c>, <c>expect</c>), which may
/// <c>save</c> values from the response, repeat <c>until</c> a condition holds (polling, with a <c>timeout</c>), run
/// <c>forEach</c> item of a saved list, or <c>show</c> part of the response; or it sets variables (<c>set</c>) or waits (<c>sleepUntil</c>). Strings
/// may hold <c>${var}</c>, <c>${now-6h}</c>, <c>${today}</c>, <c>${run}</c> (unique per run). See scenarios/README.md.
/// </summary>
public sealed partial class ScenarioRunner(IReadOnlyDictionary<string, Uri> endpoints, TokenMinter token, TextWriter output, TimeProvider? clock = null)
{
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private readonly Dictionary<string, JsonNode?> _variables = new(StringComparer.Ordinal);
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };

    public async Task<ScenarioResult> RunAsync(JsonObject scenario, CancellationToken cancellationToken = default)
    {
        _variables["run"] = Guid.NewGuid().ToString("N")[..6];
        _variables["started"] = _clock.GetUtcNow().ToString("o", CultureInfo.InvariantCulture);
        await output.WriteLineAsync($"Scenario: {scenario["title"]}");
        var steps = scenario["steps"]?.AsArray() ?? throw new InvalidDataException("the scenario has no steps");
        var number = 0;
        foreach (var step in steps.Select(s => s!.AsObject()))
        {
            number++;
            if (step["say"] is { } say) await output.WriteLineAsync($"{number,3}. {Substitute(say.GetValue<string>())}");
            foreach (var (name, value) in step["set"]?.AsObject() ?? []) _variables[name] = Resolve(value);
            if (step["sleepUntil"] is { } until)
            {
                var at = DateTimeOffset.Parse(Substitute(until.GetValue<string>()), CultureInfo.InvariantCulture);
                var wait = at - _clock.GetUtcNow();
                if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellationToken);
            }
            if (step["path"] is null) continue;
            if (step["forEach"] is { } each)
            {
                var items = _variables.GetValueOrDefault(each.GetValue<string>()) as JsonArray ?? throw new InvalidDataException($"step {number}: {each} is not a saved list");
                var index = 0;
                foreach (var item in items.ToList())
                {
                    _variables["item"] = item?.DeepClone();
                    _variables["index"] = index++;
                    await RequestAsync(number, step, cancellationToken);
                }
            }
            else
            {
                await RequestAsync(number, step, cancellationToken);
            }
        }

        JsonNode? summary = null;
        if (scenario["report"]?["agreement"] is { } agreement)
            summary = await GetAsync("compliance", $"/compliance/summary?agreement={Uri.EscapeDataString(Substitute(agreement.GetValue<string>()))}", cancellationToken);
        var heads = new Dictionary<string, JsonNode?>();
        foreach (var service in endpoints.Keys) heads[service] = await GetAsync(service, $"/log/{service}/tree-head", cancellationToken);
        return new ScenarioResult(new Dictionary<string, JsonNode?>(_variables), summary, heads);
    }

    private async Task<JsonNode?> GetAsync(string service, string path, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(Endpoint(service), path));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token("auditor", null, "demo-auditor"));
        using var response = await Http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode) throw new ScenarioException($"GET {service}{path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text);
    }

    private Uri Endpoint(string service) => endpoints.TryGetValue(service, out var uri) ? uri : throw new ScenarioException($"no endpoint for service '{service}'");

    private async Task RequestAsync(int number, JsonObject step, CancellationToken cancellationToken)
    {
        var service = step["service"]?.GetValue<string>() ?? throw new InvalidDataException($"step {number}: service is missing");
        var path = Substitute(step["path"]!.GetValue<string>());
        var body = step["body"] is { } b ? Resolve(b) : null;
        var method = new HttpMethod(step["method"]?.GetValue<string>() ?? (body is null ? "GET" : "POST"));
        var expected = step["expect"] switch
        {
            null => null,
            JsonArray codes => codes.Select(c => c!.GetValue<int>()).ToArray(),
            var code => new[] { code.GetValue<int>() },
        };
        var condition = step["until"]?.AsObject();
        var deadline = _clock.GetUtcNow() + TimeSpan.FromSeconds(step["timeout"]?.GetValue<double>() ?? 60);
        var (role, party, subject) = Identity(Substitute(step["as"]?.GetValue<string>() ?? "admin"));

        while (true)
        {
            using var request = new HttpRequestMessage(method, new Uri(Endpoint(service), path));
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token(role, party, subject));
            if (body is not null) request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
            using var response = await Http.SendAsync(request, cancellationToken);
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            var status = (int)response.StatusCode;
            var statusOk = expected is null ? response.IsSuccessStatusCode : expected.Contains(status);
            var json = text.Length > 0 && response.Content.Headers.ContentType?.MediaType?.Contains("json", StringComparison.Ordinal) == true ? JsonNode.Parse(text) : null;
            if (statusOk && (condition is null || Holds(condition, json)))
            {
                foreach (var (name, selector) in step["save"]?.AsObject() ?? [])
                    _variables[name] = Select(json, selector!.GetValue<string>())?.DeepClone();
                if (step["show"] is { } show)
                    await output.WriteLineAsync($"       {show}: {Select(json, show.GetValue<string>())?.ToJsonString() ?? "null"}");
                return;
            }
            if (condition is null || _clock.GetUtcNow() > deadline)
                throw new ScenarioException($"step {number}: {method} {service}{path} as {role}{(party is null ? "" : ":" + party)} -> {status}"
                    + (condition is null ? "" : $" (waited for {condition.ToJsonString()})") + $"\n{text}");
            await Task.Delay(250, cancellationToken);
        }
    }

    private static (string Role, string? Party, string Subject) Identity(string spec)
    {
        var parts = spec.Split(':');
        var party = parts.Length > 1 && parts[1].Length > 0 ? parts[1] : null;
        var subject = parts.Length > 2 ? parts[2] : $"{parts[0]}-{party ?? "1"}".ToLowerInvariant();
        return (parts[0], party, subject);
    }

    /// <summary><c>{"path": p, "equals": v}</c>, <c>{"path": p, "atLeast": n}</c> (a number, or an array's length).</summary>
    private bool Holds(JsonObject condition, JsonNode? json)
    {
        var value = Select(json, condition["path"]?.GetValue<string>() ?? "");
        if (condition["equals"] is { } equals) return JsonNode.DeepEquals(value, Resolve(equals));
        if (condition["atLeast"] is { } atLeast)
        {
            var n = atLeast.GetValue<double>();
            return value switch
            {
                JsonArray array => array.Count >= n,
                JsonValue v when v.TryGetValue(out double d) => d >= n,
                _ => false,
            };
        }
        return value is not null;
    }

    /// <summary>Dotted paths: <c>a.b</c>, <c>items[0]</c>, <c>persons[listedBy=UA]</c> (a filter, giving a list); a name after a list maps over it.</summary>
    public static JsonNode? Select(JsonNode? node, string path)
    {
        if (path.Length == 0) return node;
        foreach (Match segment in PathSegment().Matches(path))
        {
            var name = segment.Groups["name"].Value;
            if (name.Length > 0) node = Member(node, name);
            foreach (Capture index in segment.Groups["index"].Captures)
            {
                var text = index.Value;
                var eq = text.IndexOf('=', StringComparison.Ordinal);
                if (node is not JsonArray array) return null;
                node = eq < 0
                    ? int.Parse(text, CultureInfo.InvariantCulture) is var i && i < array.Count ? array[i] : null
                    : new JsonArray(array.Where(e => Member(e, text[..eq])?.ToString() == text[(eq + 1)..]).Select(e => e?.DeepClone()).ToArray());
            }
        }
        return node;
    }

    private static JsonNode? Member(JsonNode? node, string name) => node switch
    {
        JsonObject o => o[name],
        JsonArray a => new JsonArray(a.Select(e => Member(e, name)?.DeepClone()).ToArray()),
        _ => null,
    };

    /// <summary>Substitutes every string; <c>{"$repeat": n, "item": template, "$extra": [..]}</c> becomes a list with <c>${i}</c> = 1..n.</summary>
    private JsonNode? Resolve(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o when o["$repeat"] is { } repeat:
                var list = new JsonArray();
                for (var i = 1; i <= repeat.GetValue<int>(); i++)
                {
                    _variables["i"] = i;
                    list.Add(Resolve(o["item"]));
                }
                foreach (var extra in o["$extra"]?.AsArray() ?? []) list.Add(Resolve(extra));
                return list;
            case JsonObject o:
                var copy = new JsonObject();
                foreach (var (key, value) in o) copy[key] = Resolve(value);
                return copy;
            case JsonArray a:
                return new JsonArray(a.Select(Resolve).ToArray());
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                var text = v.GetValue<string>();
                var whole = Placeholder().Match(text);
                // A string that is one placeholder takes the variable's JSON value (a list stays a list).
                if (whole.Success && whole.Length == text.Length && Lookup(whole.Groups[1].Value) is { } found && found.GetValueKind() != JsonValueKind.String)
                    return found.DeepClone();
                return JsonValue.Create(Substitute(text));
            default:
                return node?.DeepClone();
        }
    }

    private string Substitute(string text) => Placeholder().Replace(text, m => Lookup(m.Groups[1].Value) switch
    {
        null => throw new ScenarioException($"${{{m.Groups[1].Value}}} is not defined"),
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var other => other.ToJsonString(),
    });

    private JsonNode? Lookup(string name)
    {
        var time = TimeExpression().Match(name);
        if (time.Success)
        {
            var at = _clock.GetUtcNow();
            if (time.Groups["sign"].Success)
            {
                var amount = double.Parse(time.Groups["amount"].Value, CultureInfo.InvariantCulture) * (time.Groups["sign"].Value == "-" ? -1 : 1);
                at += time.Groups["unit"].Value switch
                {
                    "s" => TimeSpan.FromSeconds(amount),
                    "m" => TimeSpan.FromMinutes(amount),
                    "h" => TimeSpan.FromHours(amount),
                    _ => TimeSpan.FromDays(amount),
                };
            }
            return JsonValue.Create(at.ToString("o", CultureInfo.InvariantCulture));
        }
        if (name == "today") return JsonValue.Create(_clock.GetUtcNow().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture));
        var dot = name.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? _variables.GetValueOrDefault(name) : Select(_variables.GetValueOrDefault(name[..dot]), name[(dot + 1)..]);
    }

    [GeneratedRegex(@"\$\{([^}]+)\}")]
    private static partial Regex Placeholder();

    [GeneratedRegex(@"^now(?:(?<sign>[+-])(?<amount>\d+(?:\.\d+)?)(?<unit>[smhd]))?$")]
    private static partial Regex TimeExpression();

    [GeneratedRegex(@"(?<name>[^.\[]*)(?:\[(?<index>[^\]]+)\])*")]
    private static partial Regex PathSegment();
}

public sealed class ScenarioException(string message) : Exception(message);
