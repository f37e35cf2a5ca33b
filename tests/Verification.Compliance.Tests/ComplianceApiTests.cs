using System.Net;
using System.Text.Json;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Verification.EventStore;
using Verification.ServiceDefaults;
using Verification.Testing;
using Contract = Verification.Contracts;

namespace Verification.Compliance.Tests;

public sealed class ComplianceHost : ServiceFixture
{
    protected override Task<ServiceHost> StartAsync(IDictionary<string, string?> settings) =>
        ServiceHost.StartAsync(ComplianceModule.Name, settings, null, a => { a.MapComplianceApi(); a.MapVerifiableLog(ComplianceModule.Name); },
            configure: o => o.Modules.Add(b => b.AddCompliance(o)));

    public Task<long> EventsAsync() => CountAsync("SELECT count(*) FROM compliance.events");
}

/// <summary>The compliance service on real PostgreSQL and RabbitMQ; the other services' messages are published on the bus as they would be.</summary>
public sealed class ComplianceApiTests(ComplianceHost fixture) : IClassFixture<ComplianceHost>
{
    private ServiceHost Host => fixture.Host;
    private static readonly DateTimeOffset Start = DateTimeOffset.UtcNow.Date.AddDays(-10);

    private async Task<JsonElement> SendAsync(HttpMethod method, string path, object? body, string role, HttpStatusCode expected, string? party = null)
    {
        using var response = await Host.SendAsync(method, path, body, role, party);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{method} {path}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task<Guid> PublishAsync(object message, Guid? id = null)
    {
        var messageId = id ?? Guid.NewGuid();
        await Host.Services.GetRequiredService<IBus>().Publish(message, c => c.MessageId = messageId);
        return messageId;
    }

    // Tests share the database: each reads the determinations of its own agreement.
    private Task<JsonElement> DeterminationsAsync(string subject, string agreement) =>
        SendAsync(HttpMethod.Get, $"/compliance/determinations?subject={subject}&agreement={agreement}", null, Roles.Auditor, HttpStatusCode.OK);

    private static object Agreement(string id, params object[] terms) => new { agreementId = id, title = "Geneva technical measures", parties = new[] { "UA", "RU" }, mediator = "US", terms };

    private static object EnergyTerm(string termId = "energy", string region = "Kharkiv") => new
    {
        termId, kind = "noStrikes", title = "No strikes on energy infrastructure", partiesBound = new[] { "UA", "RU" },
        from = Start, to = Start.AddDays(30), targetTypes = new[] { "energy" }, regions = new[] { region },
    };

    private static Contract.IncidentFiled Filed(string id, DateTimeOffset at, string region = "Kharkiv") =>
        new(id, at, null, 49.99, 36.23, region, "missileStrike", ["energySubstation"], "RU", "high", 0, 0, at.AddHours(1));

    private static Contract.IncidentGraded Graded(string id, int revision, string grade, string party, DateTimeOffset at, string region = "Kharkiv") =>
        new(id, revision, grade, "party", party, null, at, 49.99, 36.23, region, "missileStrike", ["energySubstation"], "high", DateTimeOffset.UtcNow);

    [Fact]
    public async Task A_repair_window_acknowledged_after_the_strike_was_graded_judges_the_strike_again()
    {
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("repair-late", new
        {
            termId = "repair", kind = "repairWindows", title = "No strikes on notified repair crews", partiesBound = new[] { "UA", "RU" }, from = Start,
        }), Roles.Verifier, HttpStatusCode.Created);
        var occurred = Start.AddDays(3).AddHours(9);
        await PublishAsync(Filed("inc-late", occurred));
        await PublishAsync(Graded("inc-late", 1, "fair", "RU", occurred));
        await Eventually.True(async () => await fixture.CountAsync("SELECT count(*) FROM compliance.events WHERE stream_id = 'subject-incident-inc-late'") == 2, what: "the strike's facts");
        Assert.Equal(0, (await DeterminationsAsync("inc-late", "repair-late")).GetArrayLength());   // no window known yet

        // The crew's window reaches compliance only now (the liaison acknowledged late, or the message was delayed).
        await PublishAsync(new Contract.PreNotificationAcknowledged("pn-late", "UA", "RU", "repairCrew", 49.99, 36.23, 5, "Kharkiv",
            occurred.AddHours(-2), occurred.AddHours(4), occurred.AddHours(-3)));
        var determination = await Eventually.Get(async () =>
        {
            var found = await DeterminationsAsync("inc-late", "repair-late");
            return found.GetArrayLength() == 1 ? found[0] : (JsonElement?)null;
        }, what: "the strike judged again against the window");
        Assert.Equal(("RU", "violation"), (determination.GetProperty("party").GetString(), determination.GetProperty("outcome").GetString()));
        Assert.Contains("pn-late", determination.GetProperty("grounds").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_graded_energy_strike_becomes_a_violation_that_a_regrade_revises_with_both_kept_and_bitemporal_reads()
    {
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-1", EnergyTerm()), Roles.Admin, HttpStatusCode.Created);
        var occurred = Start.AddDays(2).AddHours(3);
        var filedId = await PublishAsync(Filed("inc-a", occurred));
        var gradedId = await PublishAsync(Graded("inc-a", 1, "confirmed", "RU", occurred));
        await PublishAsync(Graded("inc-a", 1, "confirmed", "RU", occurred), gradedId);   // redelivered: changes nothing
        await PublishAsync(Filed("inc-b", occurred, region: "Odesa"));
        await PublishAsync(Graded("inc-b", 1, "confirmed", "RU", occurred, region: "Odesa"));

        var determination = await Eventually.Get(async () =>
        {
            var found = await DeterminationsAsync("inc-a", "truce-1");
            return found.GetArrayLength() == 1 ? found[0] : (JsonElement?)null;
        }, what: "a determination for inc-a");
        Assert.Equal(("RU", "violation", 1), (determination.GetProperty("party").GetString(), determination.GetProperty("outcome").GetString(), determination.GetProperty("revision").GetInt32()));
        var inputs = determination.GetProperty("inputs").EnumerateArray().Select(i => i.GetProperty("messageId").GetGuid()).ToList();
        Assert.Equal(new[] { filedId, gradedId }.Order(), inputs.Order());   // the bus may deliver them in either order
        await Eventually.True(async () => await fixture.CountAsync("SELECT count(*) FROM compliance.events WHERE stream_id = 'subject-incident-inc-b'") == 2, what: "inc-b's facts");
        Assert.Equal(0, (await DeterminationsAsync("inc-b", "truce-1")).GetArrayLength());   // Odesa is outside the term's regions
        Assert.Equal(2, await fixture.CountAsync("SELECT count(*) FROM compliance.events WHERE stream_id = 'subject-incident-inc-a'"));

        var id = determination.GetProperty("determinationId").GetString()!;
        var firstKnown = (await SendAsync(HttpMethod.Get, $"/compliance/determinations/{id}", null, Roles.Auditor, HttpStatusCode.OK))[0].GetProperty("recordedAt").GetDateTimeOffset();
        await PublishAsync(Graded("inc-a", 2, "weak", "RU", occurred));
        var history = await Eventually.Get(async () =>
        {
            var h = await SendAsync(HttpMethod.Get, $"/compliance/determinations/{id}", null, Roles.Auditor, HttpStatusCode.OK);
            return h.GetArrayLength() == 2 ? h : (JsonElement?)null;
        }, what: "the revision after re-grading");
        Assert.Equal("violation", history[0].GetProperty("determination").GetProperty("outcome").GetString());
        Assert.Equal("none", history[1].GetProperty("determination").GetProperty("outcome").GetString());
        Assert.StartsWith("withdrawn: graded weak", history[1].GetProperty("determination").GetProperty("grounds").GetString(), StringComparison.Ordinal);

        // What was known then, and what is known now; and by occurrence time.
        var then = await SendAsync(HttpMethod.Get, $"/compliance/summary?agreement=truce-1&recordedAsOf={Uri.EscapeDataString(firstKnown.ToString("o"))}", null, Roles.Auditor, HttpStatusCode.OK);
        Assert.Equal(1, then.GetProperty("lines").EnumerateArray().Single(l => l.GetProperty("party").GetString() == "RU").GetProperty("violations").GetInt32());
        var now = await SendAsync(HttpMethod.Get, "/compliance/summary?agreement=truce-1", null, Roles.Auditor, HttpStatusCode.OK);
        Assert.Equal(0, now.GetProperty("lines").GetArrayLength());
        var before = await SendAsync(HttpMethod.Get, $"/compliance/summary?agreement=truce-1&recordedAsOf={Uri.EscapeDataString(firstKnown.ToString("o"))}&occurredUpTo={Uri.EscapeDataString(occurred.AddHours(-1).ToString("o"))}",
            null, Roles.Auditor, HttpStatusCode.OK);
        Assert.Equal(0, before.GetProperty("lines").GetArrayLength());
    }

    [Fact]
    public async Task A_term_added_later_judges_facts_already_known_and_hotline_times_reach_the_daily_history()
    {
        var occurred = Start.AddDays(4);
        await PublishAsync(Filed("inc-c", occurred, region: "Kyiv"));
        await PublishAsync(Graded("inc-c", 1, "fair", "RU", occurred, region: "Kyiv"));
        var raised = new Contract.AlertRaised("alert-c-RU", "incident", "inc-c", "RU", null, "high", false, occurred, occurred.AddHours(1));
        await PublishAsync(raised);
        await PublishAsync(new Contract.AlertAcknowledged("alert-c-RU", "incident", "inc-c", "RU", "investigating", false, 600, occurred.AddMinutes(10)));
        var other = raised with { AlertId = "alert-d-UA", IncidentId = "inc-d", Addressee = "UA" };
        await PublishAsync(other);
        await PublishAsync(new Contract.AlertExpiredUnacknowledged("alert-d-UA", "incident", "inc-d", "UA", other.RaisedAt, other.DueAt, other.DueAt));
        await Eventually.True(async () => await fixture.CountAsync("SELECT count(*) FROM compliance.events WHERE stream_id LIKE 'subject-%' AND stream_id IN ('subject-incident-inc-c','subject-alert-alert-c-RU','subject-alert-alert-d-UA')") == 6,
            what: "the facts recorded");

        var added = await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-2", EnergyTerm(region: "Kyiv"),
            new { termId = "hotline", kind = "hotlineAcknowledgement", title = "Acknowledge incident alerts", partiesBound = new[] { "UA", "RU" }, from = Start }), Roles.Verifier, HttpStatusCode.Created);
        Assert.Equal(3, added.GetProperty("determinations").GetInt32());

        var daily = await Eventually.Get(async () =>
        {
            var lines = await SendAsync(HttpMethod.Get, $"/compliance/daily?agreement=truce-2", null, Roles.Auditor, HttpStatusCode.OK);
            return lines.GetArrayLength() == 3 ? lines : (JsonElement?)null;
        }, what: "the async daily history");
        var day = DateOnly.FromDateTime(occurred.UtcDateTime).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        var ru = daily.EnumerateArray().Single(l => l.GetProperty("party").GetString() == "RU" && l.GetProperty("termId").GetString() == "hotline");
        Assert.Equal((day, 1, 600.0), (ru.GetProperty("day").GetString(), ru.GetProperty("honoured").GetInt32(), ru.GetProperty("medianResponseSeconds").GetDouble()));
        var ua = daily.EnumerateArray().Single(l => l.GetProperty("party").GetString() == "UA");
        Assert.Equal((1, 1), (ua.GetProperty("breaches").GetInt32(), ua.GetProperty("missed").GetInt32()));
        Assert.Equal(1, daily.EnumerateArray().Single(l => l.GetProperty("termId").GetString() == "energy").GetProperty("violations").GetInt32());
        Assert.Equal(3, (await SendAsync(HttpMethod.Get, $"/compliance/daily?agreement=truce-2&from={day}&to={day}", null, Roles.Auditor, HttpStatusCode.OK)).GetArrayLength());
        var backwards = await SendAsync(HttpMethod.Get, $"/compliance/daily?agreement=truce-2&from=2026-03-02&to=2026-03-01", null, Roles.Auditor, HttpStatusCode.BadRequest);
        Assert.True(backwards.GetProperty("errors").TryGetProperty("from", out _));

        // The daily report: frozen at the cut-off (nothing was recorded by then), a new version after, none when nothing changed.
        var first = await SendAsync(HttpMethod.Post, "/agreements/truce-2/daily-reports", new { day }, Roles.Verifier, HttpStatusCode.Created);
        Assert.Equal((1, 0), (first.GetProperty("report").GetProperty("version").GetInt32(), first.GetProperty("report").GetProperty("lines").GetArrayLength()));
        var second = await SendAsync(HttpMethod.Post, "/agreements/truce-2/daily-reports", new { day }, Roles.Verifier, HttpStatusCode.Created);
        Assert.Equal((2, 3), (second.GetProperty("report").GetProperty("version").GetInt32(), second.GetProperty("report").GetProperty("lines").GetArrayLength()));
        var third = await SendAsync(HttpMethod.Post, "/agreements/truce-2/daily-reports", new { day }, Roles.Verifier, HttpStatusCode.OK);
        Assert.Equal(2, third.GetProperty("report").GetProperty("version").GetInt32());
        var v1 = await SendAsync(HttpMethod.Get, $"/agreements/truce-2/daily-reports/{day}?version=1", null, Roles.Auditor, HttpStatusCode.OK);
        Assert.Equal(first.GetProperty("report").GetProperty("contentHash").GetString(), v1.GetProperty("report").GetProperty("contentHash").GetString());
        var today = DateOnly.FromDateTime(DateTime.UtcNow).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        await SendAsync(HttpMethod.Post, "/agreements/truce-2/daily-reports", new { day = today }, Roles.Verifier, HttpStatusCode.Conflict);

        // The rebuilt history equals the live one.
        var compared = await SendAsync(HttpMethod.Post, "/log/compliance/projections/compliance_daily/compare", null, Roles.Auditor, HttpStatusCode.OK);
        Assert.True(compared.GetProperty("equal").GetBoolean(), compared.ToString());
    }

    [Fact]
    public async Task Bad_agreements_are_refused_naming_the_field_and_append_nothing_and_auditors_cannot_write()
    {
        var before = await fixture.EventsAsync();
        var problem = await SendAsync(HttpMethod.Post, "/agreements", new
        {
            agreementId = "bad one", title = "", parties = new[] { "UA", "XX" }, mediator = "ZZ",
            terms = new object[] { new { termId = "t", kind = "noStrikes", title = "t", partiesBound = new[] { "UA" }, from = Start, to = Start.AddDays(-1), area = new[] { 1.0, 2.0 } } },
        }, Roles.Admin, HttpStatusCode.BadRequest);
        var errors = problem.GetProperty("errors");
        foreach (var field in new[] { "agreementId", "title", "parties", "mediator", "terms[0].to", "terms[0].area" })
            Assert.True(errors.TryGetProperty(field, out _), $"{field} missing from {errors}");
        await SendAsync(HttpMethod.Post, "/agreements", new { agreementId = "x", title = "x", parties = new[] { "UA", "RU" }, terms = new[] { new { termId = "t", kind = "sometimes" } } },
            Roles.Admin, HttpStatusCode.BadRequest);
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("by-auditor", EnergyTerm()), Roles.Auditor, HttpStatusCode.Forbidden);
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("by-liaison", EnergyTerm()), Roles.Liaison, HttpStatusCode.Forbidden, "UA");
        using (var anonymous = await Host.SendAsync(HttpMethod.Post, "/agreements", Agreement("anon", EnergyTerm()), null))
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal(before, await fixture.EventsAsync());

        await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-3", EnergyTerm()), Roles.Admin, HttpStatusCode.Created);
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-3", EnergyTerm()), Roles.Admin, HttpStatusCode.Conflict);
        await SendAsync(HttpMethod.Post, "/agreements/truce-3/terms", EnergyTerm(), Roles.Admin, HttpStatusCode.Conflict);
        await SendAsync(HttpMethod.Post, "/agreements/nope/terms", EnergyTerm("other"), Roles.Admin, HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Replay_pages_in_commit_order_and_holds_back_what_an_open_transaction_could_still_precede()
    {
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-replay", EnergyTerm()), Roles.Admin, HttpStatusCode.Created);
        static List<long> Positions(JsonElement page) => [.. page.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("position").GetInt64())];
        var all = await Eventually.Get(async () =>
        {
            var page = await SendAsync(HttpMethod.Get, "/log/compliance/events?limit=1000", null, Roles.Auditor, HttpStatusCode.OK);
            return Positions(page).Count == await fixture.EventsAsync() ? page : (JsonElement?)null;
        }, what: "every event settled");
        var positions = Positions(all);
        Assert.True(positions.Count >= 3, $"{positions.Count} events");

        // Two at a time, each page resuming from the cursor of the one before: the same events in the same order.
        var paged = new List<long>();
        for (var after = "0"; after is not null;)
        {
            var page = await SendAsync(HttpMethod.Get, $"/log/compliance/events?limit=2&after={after}", null, Roles.Auditor, HttpStatusCode.OK);
            paged.AddRange(Positions(page));
            after = page.GetProperty("next").ValueKind == JsonValueKind.Null ? null : page.GetProperty("next").GetString();
        }
        Assert.Equal(positions, paged.Take(positions.Count));
        // A bare position resumes after that event in commit order.
        var fromSecond = await SendAsync(HttpMethod.Get, $"/log/compliance/events?limit=1&after={positions[1]}", null, Roles.Auditor, HttpStatusCode.OK);
        Assert.Equal(positions[2], Assert.Single(Positions(fromSecond)));
        foreach (var bad in new[] { "x:1", "1:2:3", "-4", "999999999" })
            await SendAsync(HttpMethod.Get, $"/log/compliance/events?after={bad}", null, Roles.Auditor, HttpStatusCode.BadRequest);

        // A transaction that took its xid first could still commit an event before the next one: until it ends, that
        // next one is not served (paging by position served it and the reader would skip the earlier one for good).
        var last = all.GetProperty("events").EnumerateArray().Last().GetProperty("cursor").GetString();
        await using var connection = new Npgsql.NpgsqlConnection(fixture.Postgres.ConnectionString);
        await connection.OpenAsync();
        await using var open = await connection.BeginTransactionAsync();
        await using (var xid = new Npgsql.NpgsqlCommand("SELECT pg_current_xact_id()", connection, open)) await xid.ExecuteScalarAsync();
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-replay-2", EnergyTerm()), Roles.Admin, HttpStatusCode.Created);
        static bool HasTruce2(JsonElement page) => page.GetProperty("events").EnumerateArray().Any(e => e.GetProperty("streamId").GetString() == "truce-replay-2");
        Assert.False(HasTruce2(await SendAsync(HttpMethod.Get, $"/log/compliance/events?after={last}", null, Roles.Auditor, HttpStatusCode.OK)));
        await open.CommitAsync();
        await Eventually.True(async () => HasTruce2(await SendAsync(HttpMethod.Get, $"/log/compliance/events?after={last}", null, Roles.Auditor, HttpStatusCode.OK)),
            what: "the event once the older transaction ended");
    }

    [Fact]
    public async Task An_exported_bundle_verifies_offline_and_a_changed_byte_does_not()
    {
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-4", EnergyTerm()), Roles.Admin, HttpStatusCode.Created);
        await PublishAsync(Filed("inc-e", Start.AddDays(1)));
        await Eventually.True(async () => await fixture.CountAsync("SELECT count(*) FROM compliance.events WHERE stream_id = 'subject-incident-inc-e'") == 1, what: "the fact");

        // Replay serves settled events: a transaction still open elsewhere in the cluster can hold the newest back a moment.
        var page = await Eventually.Get(async () =>
            await SendAsync(HttpMethod.Get, "/log/compliance/events?limit=1000&type=agreement_concluded", null, Roles.Auditor, HttpStatusCode.OK) is var p
                && p.GetProperty("events").EnumerateArray().Any(e => e.GetProperty("streamId").GetString() == "truce-4") ? p : (JsonElement?)null,
            what: "truce-4 in the replay");
        Assert.All(page.GetProperty("events").EnumerateArray(), e => Assert.Equal("agreement_concluded", e.GetProperty("type").GetString()));

        var key = await (await Host.SendAsync(HttpMethod.Get, "/log/public-key", null, Roles.Auditor)).Content.ReadAsStringAsync();
        var total = await fixture.EventsAsync();
        byte[] bundle = [];
        // A bundle holds the settled events: wait until no open transaction elsewhere in the cluster holds the newest back.
        var result = await Eventually.Get(async () =>
        {
            using var response = await Host.SendAsync(HttpMethod.Get, "/log/compliance/export", null, Roles.Auditor);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            bundle = await response.Content.ReadAsByteArrayAsync();
            return AuditBundle.Verify(new MemoryStream(bundle), key) is { } r && r.EventsChecked == total ? r : null;
        }, what: "every event in the bundle");
        Assert.True(result.Valid, string.Join("; ", result.Problems));
        Assert.True(result.SignatureByTrustedKey);

        using var other = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        Assert.False(AuditBundle.Verify(new MemoryStream(bundle), other.ExportSubjectPublicKeyInfoPem()).Valid);
        var changed = (byte[])bundle.Clone();
        changed[changed.Length / 3] ^= 0x20;
        Assert.False(AuditBundle.Verify(new MemoryStream(changed)).Valid);
    }

    [Fact]
    public async Task The_auditor_cli_proves_exports_and_verifies_offline_and_fails_on_a_changed_bundle()
    {
        await SendAsync(HttpMethod.Post, "/agreements", Agreement("truce-5", EnergyTerm()), Roles.Admin, HttpStatusCode.Created);
        await PublishAsync(Filed("inc-f", Start.AddDays(1)));
        await PublishAsync(Graded("inc-f", 1, "confirmed", "UA", Start.AddDays(1)));
        await Eventually.True(async () => (await DeterminationsAsync("inc-f", "truce-5")).GetArrayLength() == 1, what: "the determination");

        var url = Host.Client.BaseAddress!.ToString();
        var token = Host.Token(Roles.Auditor, "US");
        var dir = Directory.CreateTempSubdirectory("audit-");
        try
        {
            var bundle = Path.Combine(dir.FullName, "compliance.zip");
            var key = Path.Combine(dir.FullName, "key.pem");
            await File.WriteAllTextAsync(key, await (await Host.SendAsync(HttpMethod.Get, "/log/public-key", null, Roles.Auditor)).Content.ReadAsStringAsync());
            string[] remote = ["--url", url, "--token", token, "--log", "compliance"];
            // The tree holds settled events only (older transactions anywhere in the cluster finished): a test class
            // running beside this one can hold that back for a moment, and a proof of an unsettled event is a 404.
            var stored = await fixture.EventsAsync();
            await Eventually.True(async () => JsonDocument.Parse(await (await Host.SendAsync(HttpMethod.Get, "/log/compliance/tree-head", null, Roles.Auditor))
                .Content.ReadAsStringAsync()).RootElement.GetProperty("size").GetInt64() >= stored, what: "every stored event in the tree");

            async Task<(int Code, string Output)> Run(params string[] args)
            {
                using var output = new StringWriter();
                var code = await Auditor.Cli.RunAsync(args, output);
                return (code, output.ToString());
            }

            var verified = await Run(["verify-log", .. remote]);
            Assert.True(verified.Code == 0, verified.Output);
            var size = JsonDocument.Parse(await (await Host.SendAsync(HttpMethod.Get, "/log/compliance/tree-head", null, Roles.Auditor)).Content.ReadAsStringAsync())
                .RootElement.GetProperty("size").GetInt64();
            var position = await fixture.CountAsync("SELECT min(position) FROM compliance.events WHERE stream_id = 'truce-5'");
            var proved = await Run(["prove", .. remote, "--position", position.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.True(proved.Code == 0, proved.Output);
            var consistent = await Run(["consistency", .. remote, "1", size.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.True(consistent.Code == 0, consistent.Output);
            // A refused export (400) leaves no file behind, and none half-written beside it.
            var refusedExport = await Run(["export", .. remote, "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z", "--out", bundle]);
            Assert.True(refusedExport.Code == 2, refusedExport.Output);
            Assert.Contains("the service answered 400 (Bad Request): from: must not be after to", refusedExport.Output, StringComparison.Ordinal);
            Assert.Empty(dir.GetFiles("compliance.zip*"));
            var exported = await Run(["export", .. remote, "--out", bundle]);
            Assert.True(exported.Code == 0, exported.Output);
            Assert.Equal([Path.GetFileName(bundle)], dir.GetFiles("compliance.zip*").Select(f => f.Name));
            var offline = await Run("verify-bundle", bundle, "--public-key", key);
            Assert.True(offline.Code == 0, offline.Output);
            Assert.Contains("signed by the trusted key", offline.Output, StringComparison.Ordinal);
            var replayed = await Run(["replay", .. remote, "--projection", "compliance_daily"]);
            Assert.True(replayed.Code == 0, replayed.Output);

            // Change one event inside the bundle and re-zip it with a consistent manifest: the event hash check still fails.
            var forged = Path.Combine(dir.FullName, "forged.zip");
            File.Copy(bundle, forged);
            using (var zip = System.IO.Compression.ZipFile.Open(forged, System.IO.Compression.ZipArchiveMode.Update))
            {
                var entry = zip.GetEntry("events.jsonl")!;
                string text;
                using (var reader = new StreamReader(entry.Open())) text = await reader.ReadToEndAsync();
                entry.Delete();
                text = text.Replace("confirmed", "discounted", StringComparison.Ordinal);
                using (var writer = new StreamWriter(zip.CreateEntry("events.jsonl").Open())) await writer.WriteAsync(text);
                var manifestEntry = zip.GetEntry("manifest.json")!;
                System.Text.Json.Nodes.JsonNode manifest;
                using (var reader = manifestEntry.Open()) manifest = System.Text.Json.Nodes.JsonNode.Parse(reader)!;
                manifestEntry.Delete();
                manifest["files"]!["events.jsonl"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)));
                using (var writer = new StreamWriter(zip.CreateEntry("manifest.json").Open())) await writer.WriteAsync(manifest.ToJsonString());
            }
            var refused = await Run("verify-bundle", forged, "--public-key", key);
            Assert.True(refused.Code == 1, refused.Output);
            Assert.Contains("does not hash to its stored hash", refused.Output, StringComparison.Ordinal);
            Assert.Equal(2, (await Run("verify-bundle", Path.Combine(dir.FullName, "missing.zip"))).Code);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
