using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Npgsql;
using Verification.Incidents.Domain;
using Verification.Incidents.Filing;
using Verification.ServiceDefaults;
using Verification.Testing;
using Contract = Verification.Contracts;

namespace Verification.Incidents.Tests;

public sealed class IncidentsHost : ServiceFixture
{
    protected override Task<ServiceHost> StartAsync(IDictionary<string, string?> settings) =>
        ServiceHost.StartAsync(IncidentsModule.Name, settings, b => b.AddIncidents(), a => { a.MapIncidentsApi(); a.MapVerifiableLog(IncidentsModule.Name); },
            [typeof(Contract.IncidentFiled), typeof(Contract.IncidentGraded), typeof(Contract.IncidentUpdated), typeof(Contract.IncidentRetracted), typeof(Contract.IncidentDisputed)]);

    public Task<long> EventCountAsync() => CountAsync("SELECT (SELECT count(*) FROM incidents.events) + (SELECT count(*) FROM incidents.outbox)");
}

public sealed class IncidentsApiTests(IncidentsHost fixture) : IClassFixture<IncidentsHost>
{
    private ServiceHost Host => fixture.Host;

    private static FileIncidentRequest Barrage() => DecisionTests.Barrage() with
    {
        OccurredFrom = DateTimeOffset.UtcNow.AddHours(-2),
        Evidence = [DecisionTests.Barrage().Evidence![0] with { CapturedAt = DateTimeOffset.UtcNow.AddHours(-1) }],
    };

    private async Task<string> FileAsync(FileIncidentRequest? request = null, string monitor = "monitor-1")
    {
        using var response = await Host.SendAsync(HttpMethod.Post, "/incidents", request ?? Barrage(), Roles.Monitor, subject: monitor);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<FiledResponse>(ServiceHost.Json))!.Id;
    }

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response, string? what = null)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{what}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Fact]
    public async Task A_filed_incident_reads_back_and_its_message_crosses_RabbitMQ()
    {
        var id = await FileAsync();
        using var read = await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}", null, Roles.Auditor, "US");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        Assert.Equal("\"2\"", read.Headers.ETag?.Tag);
        var body = await JsonAsync(read);
        Assert.Equal("missileStrike", body.GetProperty("summary").GetProperty("category").GetString());
        Assert.Equal("critical", body.GetProperty("summary").GetProperty("severity").GetString());
        Assert.Equal(["incident_filed", "source_reported"], body.GetProperty("history").EnumerateArray().Select(h => h.GetProperty("type").GetString()));
        Assert.Equal("monitor-1", body.GetProperty("history")[0].GetProperty("actorSub").GetString());

        var message = await Eventually.Get(() => Task.FromResult(Host.Messages.Of<Contract.IncidentFiled>().FirstOrDefault(m => m.IncidentId == id)), what: "IncidentFiled on the bus");
        Assert.Equal(("Kharkiv", "missileStrike", "RU", "critical"), (message.Region, message.Category, message.AllegedParty, message.Severity));
        Assert.Equal(["medical", "residential"], message.TargetTypes);
    }

    [Fact]
    public async Task The_log_serves_a_signed_tree_head_and_an_inclusion_proof_that_verify_and_refuses_sizes_out_of_range()
    {
        var id = await FileAsync();
        var head = await JsonAsync(await Host.SendAsync(HttpMethod.Get, "/log/incidents/tree-head", null, Roles.Auditor, "US"));
        var pem = await (await Host.SendAsync(HttpMethod.Get, "/log/public-key", null, Roles.Auditor, "US")).Content.ReadAsStringAsync();
        using var key = System.Security.Cryptography.ECDsa.Create();
        key.ImportFromPem(pem);
        var treeHead = JsonSerializer.Deserialize<EventStore.TreeHead>(head.GetRawText(), ServiceHost.Json)!;
        Assert.True(treeHead.Verify(key));

        var position = (await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}", null, Roles.Auditor, "US"))).GetProperty("history")[0].GetProperty("version").GetInt64();
        var store = (EventStore.EventStore)((Microsoft.Extensions.DependencyInjection.IKeyedServiceProvider)Host.Services).GetRequiredKeyedService(typeof(EventStore.EventStore), IncidentsModule.Name);
        var filed = (await store.ReadStreamAsync(id))[0];
        var proof = await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/log/incidents/inclusion?position={filed.Position}&size={treeHead.Size}", null, Roles.Auditor, "US"));
        Assert.Equal(1, position);
        Assert.True(EventStore.Merkle.VerifyInclusion(EventStore.Merkle.LeafHash(EventStore.VerifiableLog.Entry(filed.Position, filed.Hash)),
            proof.GetProperty("leafIndex").GetInt64(), treeHead.Size, proof.GetProperty("proof").EnumerateArray().Select(p => Convert.FromHexString(p.GetString()!)).ToList(),
            Convert.FromHexString(treeHead.RootHash)));
        using var anonymous = await Host.SendAsync(HttpMethod.Get, "/log/incidents/tree-head", null, null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);

        foreach (var (query, field) in new[] { ($"inclusion?position={filed.Position}&size=-1", "size"), ($"inclusion?position={filed.Position}&size=0", "size"),
            ("consistency?first=2&second=1", "first"), ("consistency?first=-1&second=-1", "first"), ($"consistency?first=1&second={long.MaxValue}", "second") })
        {
            using var bad = await Host.SendAsync(HttpMethod.Get, "/log/incidents/" + query, null, Roles.Auditor, "US");
            Assert.True(HttpStatusCode.BadRequest == bad.StatusCode, $"{query}: {(int)bad.StatusCode}");
            Assert.True(JsonDocument.Parse(await bad.Content.ReadAsStringAsync()).RootElement.GetProperty("errors").TryGetProperty(field, out _), query);
        }
    }

    [Fact]
    public async Task Conflicting_sources_are_all_kept_with_a_range_and_a_conservative_best()
    {
        var id = await FileAsync();
        using var added = await Host.SendAsync(HttpMethod.Post, $"/incidents/{id}/sources",
            new { kind = "partyStatement", party = "UA", reporter = "UA Air Force", figures = new { missiles = new { low = 60, best = 62, high = 65 } }, reportedAt = DateTimeOffset.UtcNow.AddMinutes(-30) },
            Roles.Monitor);
        Assert.Equal(HttpStatusCode.OK, added.StatusCode);
        var summary = (await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}", null, Roles.Verifier))).GetProperty("summary");
        Assert.Equal(29, summary.GetProperty("best").GetProperty("missiles").GetProperty("best").GetInt32());
        Assert.Equal(65, summary.GetProperty("range").GetProperty("missiles").GetProperty("high").GetInt32());
        Assert.Equal(2, summary.GetProperty("sourceCount").GetInt32());
        await Eventually.Get(() => Task.FromResult(Host.Messages.Of<Contract.IncidentUpdated>().FirstOrDefault(m => m.IncidentId == id && m.SourceCount == 2)), what: "IncidentUpdated");
    }

    [Fact]
    public async Task Grading_and_revising_keeps_every_finding_and_publishes_the_attribution_change()
    {
        var id = await FileAsync();
        using var first = await Host.SendAsync(HttpMethod.Post, $"/incidents/{id}/grades", new { grade = "fair", attribution = "party", party = "RU", finding = "two credible sources" }, Roles.Verifier);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        using var stale = await Host.SendAsync(HttpMethod.Post, $"/incidents/{id}/grades",
            new { grade = "contested", attribution = "undetermined", finding = "competing claims", reason = "RU disputes" }, Roles.Verifier,
            configure: r => r.Headers.TryAddWithoutValidation("If-Match", "\"2\""));
        Assert.Equal(HttpStatusCode.PreconditionFailed, stale.StatusCode);
        using var revised = await Host.SendAsync(HttpMethod.Post, $"/incidents/{id}/grades",
            new { grade = "contested", attribution = "undetermined", finding = "competing claims", reason = "RU disputes" }, Roles.Verifier,
            configure: r => r.Headers.TryAddWithoutValidation("If-Match", first.Headers.ETag!.Tag));
        Assert.Equal(HttpStatusCode.OK, revised.StatusCode);

        var details = await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}", null, Roles.Auditor));
        Assert.Equal(["fair", "contested"], details.GetProperty("findings").EnumerateArray().Select(f => f.GetProperty("grade").GetString()));
        var graded = await Eventually.Get(() => Task.FromResult(Host.Messages.Of<Contract.IncidentGraded>().FirstOrDefault(m => m.IncidentId == id && m.Revision == 2)), what: "the revision");
        Assert.Equal(("undetermined", null, "RU"), (graded.Attribution, graded.AttributedParty, graded.PreviousAttributedParty));
    }

    [Fact]
    public async Task As_of_a_recorded_time_the_incident_reads_as_it_was_known()
    {
        var id = await FileAsync();
        var known = (await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}", null, Roles.Auditor))).GetProperty("history")[1].GetProperty("recordedAt").GetDateTimeOffset();
        await Eventually.True(() => Task.FromResult(DateTimeOffset.UtcNow > known.AddMilliseconds(5)));
        using var retract = await Host.SendAsync(HttpMethod.Post, $"/incidents/{id}/retraction", new { reason = "filed in error" }, Roles.Monitor, subject: "monitor-1");
        Assert.Equal(HttpStatusCode.OK, retract.StatusCode);

        var then = await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}?asOf={Uri.EscapeDataString(known.ToString("O"))}", null, Roles.Auditor));
        Assert.False(then.GetProperty("summary").GetProperty("retracted").GetBoolean());
        var now = await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}", null, Roles.Auditor));
        Assert.True(now.GetProperty("summary").GetProperty("retracted").GetBoolean());
        using var before = await Host.SendAsync(HttpMethod.Get, $"/incidents/{id}?asOf=2020-01-01T00:00:00Z", null, Roles.Auditor);
        Assert.Equal(HttpStatusCode.NotFound, before.StatusCode);
    }

    [Fact]
    public async Task Lists_filter_by_region_category_target_party_and_bounding_box_and_suggest_duplicates()
    {
        var region = "Region-" + Guid.NewGuid().ToString("N")[..6];
        var baseRequest = Barrage() with { Location = Barrage().Location with { Region = region } };
        var a = await FileAsync(baseRequest);
        var b = await FileAsync(baseRequest with { Location = baseRequest.Location with { Latitude = 50.02 } }, "monitor-2");
        var far = await FileAsync(baseRequest with { Location = baseRequest.Location with { Latitude = 46.5, Longitude = 30.7 }, Category = Category.DroneStrike, TargetTypes = [TargetType.EnergySubstation] });

        async Task<string[]> Ids(string query) =>
            (await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents?region={region}&{query}", null, Roles.Liaison, "UA"), $"list {query}"))
            .GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetString()!).Order().ToArray();

        Assert.Equal(new[] { a, b, far }.Order(), await Ids(""));
        Assert.Equal([far], await Ids("category=droneStrike"));
        Assert.Equal([far], await Ids("targetType=energySubstation"));
        Assert.Equal(new[] { a, b }.Order(), await Ids("bbox=36,49.5,37,50.5"));
        Assert.Equal(3, (await Ids("party=RU")).Length);
        Assert.Single(await Ids("pageSize=1"));

        var candidates = await JsonAsync(await Host.SendAsync(HttpMethod.Get, $"/incidents/{a}/candidates?radiusKm=10", null, Roles.Monitor));
        Assert.Contains(b, candidates.EnumerateArray().Select(c => c.GetProperty("id").GetString()));
        Assert.DoesNotContain(far, candidates.EnumerateArray().Select(c => c.GetProperty("id").GetString()));
        using var link = await Host.SendAsync(HttpMethod.Post, $"/incidents/{b}/link", new { sameEventAs = a }, Roles.Monitor);
        Assert.Equal(HttpStatusCode.OK, link.StatusCode);
    }

    [Fact]
    public async Task The_same_Idempotency_Key_files_once_a_different_body_with_it_is_refused_and_a_refused_request_leaves_it_free()
    {
        var key = Guid.NewGuid().ToString();
        var request = Barrage();
        using var first = await Host.SendAsync(HttpMethod.Post, "/incidents", request, Roles.Monitor, configure: r => r.Headers.Add("Idempotency-Key", key));
        using var again = await Host.SendAsync(HttpMethod.Post, "/incidents", request, Roles.Monitor, configure: r => r.Headers.Add("Idempotency-Key", key));
        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        var id = (await first.Content.ReadFromJsonAsync<FiledResponse>(ServiceHost.Json))!.Id;
        Assert.Equal(id, (await again.Content.ReadFromJsonAsync<FiledResponse>(ServiceHost.Json))!.Id);

        var count = await fixture.EventCountAsync();
        using var different = await Host.SendAsync(HttpMethod.Post, "/incidents", request with { Narrative = "another" }, Roles.Monitor, configure: r => r.Headers.Add("Idempotency-Key", key));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, different.StatusCode);
        Assert.Equal(count, await fixture.EventCountAsync());

        // A request refused as invalid, or as text that cannot be stored, does not use up its key.
        foreach (var refused in new[] { request with { OccurredFrom = DateTimeOffset.UtcNow.AddDays(1) }, request with { Narrative = "a\0b" } })
        {
            var fresh = Guid.NewGuid().ToString();
            using var bad = await Host.SendAsync(HttpMethod.Post, "/incidents", refused, Roles.Monitor, configure: r => r.Headers.Add("Idempotency-Key", fresh));
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            using var corrected = await Host.SendAsync(HttpMethod.Post, "/incidents", request with { Narrative = "corrected" }, Roles.Monitor, configure: r => r.Headers.Add("Idempotency-Key", fresh));
            Assert.Equal(HttpStatusCode.Created, corrected.StatusCode);
        }
    }

    public static TheoryData<string, string> BadBodies() => new()
    {
        { """{"occurredFrom":"2999-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"],"narrative":"x"}""", "occurredFrom" },
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":95,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"],"narrative":"x"}""", "location.latitude" },
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"],"narrative":"x","figures":{"killed":{"low":5,"best":2,"high":9}}}""", "figures.killed" },
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"laserStrike","targetTypes":["residential"],"narrative":"x"}""", "category" },
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"]}""", "narrative" },
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"],"narrative":"x","extra":1}""", "extra" },
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"],"narrative":"x","figures":{"drones":{"low":-1,"best":0,"high":0}}}""", "figures.drones" },
        // PostgreSQL cannot store a NUL (U+0000) in text: refused before the append, naming the field.
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Kyiv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"],"narrative":"a\u0000b"}""", "'narrative' contains U+0000" },
        { """{"occurredFrom":"2026-01-01T00:00:00Z","occurredPrecision":"exact","location":{"latitude":50,"longitude":30,"region":"Ky\u0000iv","precision":"exact"},"category":"droneStrike","targetTypes":["residential"],"narrative":"x"}""", "'region' contains U+0000" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task Bad_input_is_a_ProblemDetails_naming_the_field_and_nothing_is_appended(string json, string field)
    {
        var before = await fixture.EventCountAsync();
        using var response = await Host.SendAsync(HttpMethod.Post, "/incidents", json, Roles.Monitor);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Contains(field, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(before, await fixture.EventCountAsync());
    }

    [Fact]
    public async Task Commands_on_unknown_incidents_are_404_and_oversize_text_or_a_NUL_in_an_id_is_400()
    {
        using var missing = await Host.SendAsync(HttpMethod.Post, "/incidents/inc-nope/grades", new { grade = "weak", attribution = "undetermined", finding = "f" }, Roles.Verifier);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        using var nul = await Host.SendAsync(HttpMethod.Get, "/incidents/inc-%00", null, Roles.Monitor);
        Assert.Equal(HttpStatusCode.BadRequest, nul.StatusCode);
        var before = await fixture.EventCountAsync();
        using var huge = await Host.SendAsync(HttpMethod.Post, "/incidents", Barrage() with { Narrative = new string('x', 20_000) }, Roles.Monitor);
        Assert.Equal(HttpStatusCode.BadRequest, huge.StatusCode);
        Assert.Equal(before, await fixture.EventCountAsync());
    }

    public static TheoryData<string, string, string?, string?, int> RoleMatrix() => new()
    {
        // endpoint, role, party, body kind, expected status (for the given incident)
        { "POST /incidents", Roles.Monitor, null, "file", 201 },
        { "POST /incidents", Roles.Verifier, null, "file", 403 },
        { "POST /incidents", Roles.Liaison, "UA", "file", 403 },
        { "POST /incidents", Roles.Auditor, "US", "file", 403 },
        { "POST /incidents", "", null, "file", 401 },
        { "POST /grades", Roles.Verifier, null, "grade", 200 },
        { "POST /grades", Roles.Monitor, null, "grade", 403 },
        { "POST /grades", Roles.Liaison, "RU", "grade", 403 },
        { "POST /grades", Roles.Auditor, "US", "grade", 403 },
        { "POST /positions", Roles.Liaison, "RU", "position-RU", 200 },
        { "POST /positions", Roles.Liaison, "UA", "position-RU", 403 },
        { "POST /positions", Roles.Verifier, null, "position-RU", 200 },
        { "POST /positions", Roles.Monitor, null, "position-RU", 403 },
        { "POST /positions", Roles.Auditor, "US", "position-RU", 403 },
        { "POST /sources", Roles.Monitor, null, "source", 200 },
        { "POST /sources", Roles.Liaison, "UA", "source", 403 },
        { "POST /sources", Roles.Auditor, "US", "source", 403 },
        { "POST /retraction", Roles.Auditor, "US", "retract", 403 },
        { "POST /retraction", Roles.Liaison, "RU", "retract", 403 },
        { "GET /incident", Roles.Auditor, "US", null, 200 },
        { "GET /incident", Roles.Liaison, "UA", null, 200 },
        { "GET /incident", Roles.Monitor, null, null, 200 },
        { "GET /incident", "", null, null, 401 },
    };

    [Theory]
    [MemberData(nameof(RoleMatrix))]
    public async Task Each_endpoint_admits_only_its_roles(string endpoint, string role, string? party, string? body, int expected)
    {
        var id = await FileAsync();
        var (method, path) = endpoint switch
        {
            "POST /incidents" => (HttpMethod.Post, "/incidents"),
            "GET /incident" => (HttpMethod.Get, $"/incidents/{id}"),
            _ => (HttpMethod.Post, $"/incidents/{id}/{endpoint.Split('/')[1]}"),
        };
        object? payload = body switch
        {
            "file" => Barrage(),
            "grade" => new { grade = "weak", attribution = "undetermined", finding = "single source" },
            "position-RU" => new { party = "RU", position = "disputes", statement = "not ours" },
            "source" => new { kind = "media", reporter = "Reuters", figures = new { }, reportedAt = DateTimeOffset.UtcNow.AddMinutes(-5) },
            "retract" => new { reason = "error" },
            _ => null,
        };
        var before = await fixture.EventCountAsync();
        using var response = await Host.SendAsync(method, path, payload, role.Length == 0 ? null : role, party);
        Assert.Equal(expected, (int)response.StatusCode);
        if (expected >= 400)
        {
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal(before, await fixture.EventCountAsync());
        }
    }
}
