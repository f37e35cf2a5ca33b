using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using Verification.ServiceDefaults;
using Verification.Testing;

namespace Verification.Compliance.Tests;

/// <summary>
/// Generated hostile requests, at least 1,000 per service, against every service composed in one host on real
/// PostgreSQL: each is built to be invalid (a required field missing, a wrong JSON type, a huge or out-of-range value,
/// nesting past the limit, invalid UTF-8, truncated JSON, an unknown field, no or a forged token, the wrong role,
/// another party's or an unknown id). Each must get a 4xx ProblemDetails, never a 5xx, and no event may be appended.
/// </summary>
public sealed class HostileInputTests(EverythingHost fixture) : IClassFixture<EverythingHost>
{
    private sealed record Endpoint(string Service, HttpMethod Method, string Path, string Role, string? Party, JsonObject Body, string[] Required,
        string WrongRole, string? OtherPartyPath = null);

    private enum Attack { MissingField, WrongType, HugeValue, Deep, InvalidUtf8, Truncated, UnknownField, NoToken, ForgedToken, WrongRole, UnknownId, OtherParty, Oversized }

    private sealed record Case(Endpoint Endpoint, Attack Attack, int Field, int Cut);

    private ServiceHost Host => fixture.Host;

    private async Task<JsonElement> OkAsync(HttpMethod method, string path, object body, string role, string? party = null)
    {
        using var response = await Host.SendAsync(method, path, body, role, party);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{method} {path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task<long> EventsAsync()
    {
        await using var connection = new Npgsql.NpgsqlConnection(fixture.Postgres.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            "SELECT " + string.Join(" + ", DistributedSystem.ServiceNames.Select(s => $"(SELECT count(*) FROM {s}.events)")), connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private async Task<List<Endpoint>> EndpointsAsync()
    {
        var now = DateTimeOffset.UtcNow;
        var incident = (await OkAsync(HttpMethod.Post, "/incidents", new
        {
            occurredFrom = now.AddHours(-2), occurredPrecision = "exact", category = "droneStrike", allegedParty = "RU",
            location = new { latitude = 49.99, longitude = 36.23, region = "Kharkiv", precision = "exact" }, targetTypes = new[] { "energySubstation" }, narrative = "Drone strike",
        }, Roles.Monitor)).GetProperty("id").GetString()!;
        var alert = $"alert-{incident}-RU";
        await Eventually.True(async () => (await Host.SendAsync(HttpMethod.Get, $"/alerts/{alert}", null, Roles.Liaison, "RU")).StatusCode == HttpStatusCode.OK, what: "the alert");
        var exchange = (await OkAsync(HttpMethod.Post, "/exchanges", new
        {
            partyA = "UA", partyB = "RU", place = "border", plannedDate = DateOnly.FromDateTime(now.UtcDateTime).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture),
            counts = new[] { new { releasingParty = "UA", category = "prisonerOfWar", count = 1 }, new { releasingParty = "RU", category = "prisonerOfWar", count = 1 } },
        }, Roles.Verifier)).GetProperty("id").GetString()!;
        var pullback = (await OkAsync(HttpMethod.Post, "/pullbacks", new { party = "RU", weaponClasses = new[] { "mlrs" }, deadline = now.AddDays(3), zone = new { line = new[] { new[] { 37.0, 48 }, new[] { 39.0, 48 } } } },
            Roles.Verifier)).GetProperty("id").GetString()!;
        var agreement = $"hostile-{Guid.NewGuid():N}"[..20];
        await OkAsync(HttpMethod.Post, "/agreements", new { agreementId = agreement, title = "Measures", parties = new[] { "UA", "RU" }, mediator = "US", terms = Array.Empty<object>() }, Roles.Admin);

        JsonObject J(object o) => JsonSerializer.SerializeToNode(o, ServiceHost.Json)!.AsObject();
        return
        [
            new("incidents", HttpMethod.Post, "/incidents", Roles.Monitor, null, J(new
            {
                occurredFrom = now.AddHours(-1), occurredPrecision = "exact", category = "missileStrike", allegedParty = "RU",
                location = new { latitude = 50.45, longitude = 30.52, region = "Kyiv", precision = "exact" }, targetTypes = new[] { "energyThermalPlant" }, narrative = "Missile strike",
            }), ["occurredFrom", "occurredPrecision", "category", "location", "targetTypes", "narrative"], Roles.Liaison),
            new("incidents", HttpMethod.Post, $"/incidents/{incident}/grades", Roles.Verifier, null, J(new { grade = "confirmed", attribution = "party", party = "RU", finding = "Debris" }),
                ["grade", "attribution", "finding"], Roles.Monitor),
            new("incidents", HttpMethod.Post, $"/incidents/{incident}/sources", Roles.Monitor, null, J(new { kind = "media", reporter = "wire", reportedAt = now.AddMinutes(-5), figures = new { } }),
                ["kind", "reporter", "figures", "reportedAt"], Roles.Auditor),
            new("hotline", HttpMethod.Post, "/pre-notifications", Roles.Liaison, "UA", J(new
            {
                toParty = "RU", activity = "repairCrew", latitude = 50.45, longitude = 30.52, radiusKm = 3, region = "Kyiv", windowFrom = now, windowTo = now.AddHours(6), details = "Crew",
            }), ["toParty", "activity", "latitude", "longitude", "radiusKm", "region", "windowFrom", "windowTo", "details"], Roles.Monitor),
            new("hotline", HttpMethod.Post, $"/alerts/{alert}/acknowledgement", Roles.Liaison, "RU", J(new { response = "received", text = "Seen" }), [], Roles.Verifier,
                OtherPartyPath: $"/alerts/{alert}/acknowledgement"),
            new("exchanges", HttpMethod.Post, "/exchanges", Roles.Verifier, null, J(new
            {
                partyA = "UA", partyB = "RU", place = "border", plannedDate = "2026-12-01",
                counts = new[] { new { releasingParty = "UA", category = "prisonerOfWar", count = 2 }, new { releasingParty = "RU", category = "prisonerOfWar", count = 2 } },
            }), ["partyA", "partyB", "counts", "place", "plannedDate"], Roles.Liaison),
            new("exchanges", HttpMethod.Post, $"/exchanges/{exchange}/lists", Roles.Liaison, "UA", J(new
            {
                kind = "release", entries = new[] { new { category = "prisonerOfWar", identity = new { familyName = "Ivanov", givenNames = "Ivan" } } },
            }), ["kind", "entries"], Roles.Monitor),
            new("pullbacks", HttpMethod.Post, "/pullbacks", Roles.Verifier, null, J(new { party = "RU", weaponClasses = new[] { "mlrs" }, deadline = now.AddDays(2), zone = new { line = new[] { new[] { 37.0, 48 }, new[] { 39.0, 48 } } } }),
                ["party", "weaponClasses", "zone", "deadline"], Roles.Liaison),
            new("pullbacks", HttpMethod.Post, $"/pullbacks/{pullback}/observations", Roles.Monitor, null, J(new { observedAt = now, sensor = "drone", latitude = 48.5, longitude = 38.0, weaponClass = "mlrs", count = 2 }),
                ["observedAt", "sensor", "latitude", "longitude", "weaponClass", "count"], Roles.Liaison),
            new("compliance", HttpMethod.Post, "/agreements", Roles.Admin, null, J(new { agreementId = "geneva-x", title = "Geneva", parties = new[] { "UA", "RU" }, mediator = "US", terms = Array.Empty<object>() }),
                ["agreementId", "title", "parties", "terms"], Roles.Monitor),
            new("compliance", HttpMethod.Post, $"/agreements/{agreement}/terms", Roles.Admin, null, J(new
            {
                termId = "energy", kind = "noStrikes", title = "No strikes on energy", partiesBound = new[] { "UA", "RU" }, from = now.AddDays(-1), targetTypes = new[] { "energy" },
            }), ["termId", "kind", "title", "partiesBound", "from"], Roles.Liaison),
        ];
    }

    /// <summary>The generator: an endpoint, an attack that applies to it, and where in the body it strikes.</summary>
    private static Gen<Case> Cases(IReadOnlyList<Endpoint> endpoints) =>
        from service in Gen.Elements(DistributedSystem.ServiceNames)
        from endpoint in Gen.Elements(endpoints.Where(e => e.Service == service).ToArray())
        from attack in Gen.Elements(Enum.GetValues<Attack>().Where(a => Applies(a, endpoint)).ToArray())
        from field in Gen.Choose(0, 1000)
        from cut in Gen.Choose(1, 1000)
        select new Case(endpoint, attack, field, cut);

    private static bool Applies(Attack attack, Endpoint endpoint) => attack switch
    {
        Attack.MissingField => endpoint.Required.Length > 0,
        Attack.OtherParty => endpoint.OtherPartyPath is not null,
        Attack.UnknownId => endpoint.Path.Count(c => c == '/') > 1,
        _ => true,
    };

    private static JsonNode WrongTypeFor(JsonNode? value) => value?.GetValueKind() switch
    {
        JsonValueKind.String => JsonValue.Create(12345),
        JsonValueKind.Number => JsonValue.Create("12"),
        JsonValueKind.Array => JsonValue.Create("x"),
        JsonValueKind.Object => JsonValue.Create(5),
        _ => new JsonArray(),
    };

    private static JsonNode HugeFor(JsonNode? value) => value?.GetValueKind() switch
    {
        JsonValueKind.Number => JsonValue.Create(1e308),
        JsonValueKind.Array => new JsonArray([.. Enumerable.Range(0, 5000).Select(i => (JsonNode?)JsonValue.Create(i))]),
        _ => JsonValue.Create(new string('x', 200_000)),
    };

    private HttpRequestMessage Build(Case c)
    {
        var e = c.Endpoint;
        var body = (JsonObject)e.Body.DeepClone();
        var fields = body.Select(p => p.Key).ToList();
        var field = fields[c.Field % fields.Count];
        string? role = e.Role, party = e.Party;
        var path = e.Path;
        byte[]? raw = null;
        switch (c.Attack)
        {
            case Attack.MissingField: body.Remove(e.Required[c.Field % e.Required.Length]); break;
            case Attack.WrongType: body[field] = WrongTypeFor(body[field]); break;
            case Attack.HugeValue: body[field] = HugeFor(body[field]); break;
            case Attack.Deep:
                JsonNode deep = JsonValue.Create(1);
                for (var i = 0; i < 34 + c.Cut % 25; i++) deep = new JsonArray(deep);
                body[field] = deep;
                break;
            case Attack.InvalidUtf8:
                var text = body.ToJsonString();
                var quote = text.IndexOf(":\"", StringComparison.Ordinal);
                raw = quote < 0
                    ? [.. Encoding.UTF8.GetBytes("{\"a\":\""), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\"}")]
                    : [.. Encoding.UTF8.GetBytes(text[..(quote + 2)]), 0xFF, 0xFE, 0xC3, 0x28, .. Encoding.UTF8.GetBytes(text[(quote + 2)..])];
                break;
            case Attack.Truncated:
                var full = body.ToJsonString();
                raw = Encoding.UTF8.GetBytes(full[..(1 + c.Cut % (full.Length - 1))]);
                break;
            case Attack.UnknownField: body[$"unexpected{c.Field}"] = "value"; break;
            case Attack.NoToken: role = null; break;
            case Attack.ForgedToken: role = "forged"; break;
            case Attack.WrongRole: role = e.WrongRole; break;
            case Attack.UnknownId:
                var segments = path.Split('/');
                segments[2] = "no-such-" + c.Field;
                path = string.Join('/', segments);
                break;
            case Attack.OtherParty: party = e.Party == "UA" ? "RU" : "UA"; path = e.OtherPartyPath!; break;
            case Attack.Oversized: body[field] = new string('x', 1_100_000); break;
        }
        var request = new HttpRequestMessage(e.Method, path)
        {
            Content = raw is not null ? new ByteArrayContent(raw) : new StringContent(body.ToJsonString(), Encoding.UTF8),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        // The server refuses an oversized body before reading it; announcing it lets the client hear the 413.
        if (c.Attack == Attack.Oversized) request.Headers.ExpectContinue = true;
        if (role == "forged")
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Host.Token(e.Role, e.Party)[..^4] + "AAAA");
        else if (role is not null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Host.Token(role, party));
        return request;
    }

    [Fact]
    public async Task A_thousand_hostile_requests_per_service_each_get_a_4xx_problem_and_append_nothing()
    {
        var endpoints = await EndpointsAsync();
        var cases = Cases(endpoints).Sample(1100 * DistributedSystem.ServiceNames.Length, 50);
        var before = await EventsAsync();
        var perService = new Dictionary<string, int>();
        var byStatus = new Dictionary<int, int>();
        foreach (var c in cases)
        {
            using var request = Build(c);
            using var response = await Host.Client.SendAsync(request);
            var status = (int)response.StatusCode;
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(status is >= 400 and < 500, $"{c.Attack} on {c.Endpoint.Method} {c.Endpoint.Path} (field {c.Field}): {status} {text[..Math.Min(text.Length, 400)]}");
            Assert.True(response.Content.Headers.ContentType?.MediaType == "application/problem+json", $"{c.Attack} on {c.Endpoint.Path}: {status} is not a ProblemDetails: {text[..Math.Min(text.Length, 200)]}");
            perService[c.Endpoint.Service] = perService.GetValueOrDefault(c.Endpoint.Service) + 1;
            byStatus[status] = byStatus.GetValueOrDefault(status) + 1;
        }
        Assert.All(DistributedSystem.ServiceNames, s => Assert.True(perService.GetValueOrDefault(s) >= 1000, $"{s}: {perService.GetValueOrDefault(s)} requests"));
        Assert.Equal(before, await EventsAsync());
        Assert.True(byStatus.Keys.Count >= 4, string.Join(", ", byStatus.Select(kv => $"{kv.Key}: {kv.Value}")));   // 400, 401, 403, 404 (and 413)
    }
}
