using System.Net;
using System.Text.Json;
using Npgsql;
using Verification.EventStore;
using Verification.ServiceDefaults;
using Verification.Testing;
using Contract = Verification.Contracts;

namespace Verification.Exchanges.Tests;

public sealed class ExchangesHost : ServiceFixture
{
    protected override Task<ServiceHost> StartAsync(IDictionary<string, string?> settings) =>
        ServiceHost.StartAsync(ExchangesModule.Name, settings, b => b.AddExchanges(), a => a.MapExchangesApi(), [typeof(Contract.ExchangeCompleted), typeof(Contract.ExchangeDiscrepancyFound)]);

    public Task<long> EventsAsync() => CountAsync("SELECT count(*) FROM exchanges.events");
}

public sealed class ExchangesApiTests(ExchangesHost fixture) : IClassFixture<ExchangesHost>
{
    private ServiceHost Host => fixture.Host;

    private static object Person(string family, string given, string number) => new { category = "prisonerOfWar", identity = new { familyName = family, givenNames = given, serviceNumber = number } };

    private async Task<JsonElement> SendOkAsync(HttpMethod method, string path, object? body, string role, string? party = null, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await Host.SendAsync(method, path, body, role, party);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{method} {path}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task<(string Id, string[] FromUa, string[] FromRu)> ListedExchangeAsync()
    {
        var created = await SendOkAsync(HttpMethod.Post, "/exchanges", new
        {
            partyA = "UA", partyB = "RU", mediator = "US", intermediary = "ICRC", place = "border crossing", plannedDate = "2026-02-05", totalPerSide = 2,
            counts = new[] { new { releasingParty = "UA", category = "prisonerOfWar", count = 2 }, new { releasingParty = "RU", category = "prisonerOfWar", count = 2 } },
        }, Roles.Verifier, expected: HttpStatusCode.Created);
        var id = created.GetProperty("id").GetString()!;
        var n = Guid.NewGuid().ToString("N")[..6]; // new people for each exchange: the same people again would be "already released"
        object[] uaReleases = [Person("Ivanov", "Ivan", $"RU-1-{n}"), Person("Petrov", "Petr", $"RU-2-{n}")];
        object[] ruReleases = [Person("Shevchenko", "Taras", $"UA-1-{n}"), Person("Kovalenko", "Olena", $"UA-2-{n}")];
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/lists", new { kind = "release", entries = uaReleases }, Roles.Liaison, "UA");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/lists", new { kind = "expected", entries = ruReleases }, Roles.Liaison, "UA");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/lists", new { kind = "release", entries = ruReleases }, Roles.Liaison, "RU");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/lists", new { kind = "expected", entries = uaReleases }, Roles.Liaison, "RU");
        var view = await SendOkAsync(HttpMethod.Get, $"/exchanges/{id}", null, Roles.Auditor, "US");
        var persons = view.GetProperty("reconciliation").GetProperty("persons").EnumerateArray().ToList();
        Assert.All(persons, p => Assert.Equal("matched", p.GetProperty("status").GetString()));
        string[] Of(string party) => persons.Where(p => p.GetProperty("listedBy").GetString() == party).Select(p => p.GetProperty("personId").GetString()!).ToArray();
        return (id, Of("UA"), Of("RU"));
    }

    [Fact]
    public async Task Both_sides_list_the_same_people_under_the_same_pseudonyms_and_a_double_entry_exchange_completes()
    {
        var (id, fromUa, fromRu) = await ListedExchangeAsync();
        Assert.All(fromUa.Concat(fromRu), p => Assert.StartsWith("p-", p, StringComparison.Ordinal));
        foreach (var p in fromUa.Concat(fromRu))
            await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/checks", new { personId = p, identityConfirmed = true, wishToReturn = true, fitToTravel = true }, Roles.Intermediary, "ICRC");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/handovers", new { personIds = fromUa }, Roles.Liaison, "UA");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/handovers", new { personIds = fromRu }, Roles.Liaison, "RU");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/confirmations", new { personIds = fromUa }, Roles.Liaison, "UA", HttpStatusCode.Forbidden);
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/confirmations", new { personIds = fromUa }, Roles.Liaison, "RU");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/confirmations", new { personIds = fromRu }, Roles.Liaison, "UA");
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/witnessed", new { personIds = fromUa }, Roles.Intermediary, "ICRC");
        var closed = await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/completion", new { }, Roles.Verifier);
        Assert.Equal("completed", closed.GetProperty("status").GetString());
        var message = await Eventually.Get(() => Task.FromResult(Host.Messages.Of<Contract.ExchangeCompleted>().FirstOrDefault(m => m.ExchangeId == id)), what: "ExchangeCompleted");
        Assert.True(message.Reciprocal);
        Assert.All(message.Counts, c => Assert.Equal((2, 2), (c.Agreed, c.ConfirmedReceived)));
    }

    [Fact]
    public async Task Bad_input_and_the_wrong_party_or_role_are_refused_and_nothing_is_appended()
    {
        var (id, fromUa, _) = await ListedExchangeAsync();
        var before = await fixture.EventsAsync();
        await SendOkAsync(HttpMethod.Post, "/exchanges", new { partyA = "UA", partyB = "RU", place = "x", plannedDate = "2026-02-05", totalPerSide = 3,
            counts = new[] { new { releasingParty = "UA", category = "prisonerOfWar", count = 2 } } }, Roles.Verifier, expected: HttpStatusCode.BadRequest);
        await SendOkAsync(HttpMethod.Post, "/exchanges", new { partyA = "UA", partyB = "RU", place = "x", plannedDate = "2026-02-05",
            counts = new[] { new { releasingParty = "UA", category = "prisonerOfWar", count = 2 } } }, Roles.Liaison, "UA", HttpStatusCode.Forbidden);
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/lists", new { kind = "release", entries = new[] { Person("A", "B", "C") } }, Roles.Liaison, "US", HttpStatusCode.UnprocessableEntity);
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/handovers", new { personIds = new[] { "p-stranger" } }, Roles.Liaison, "UA", HttpStatusCode.UnprocessableEntity);
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/handovers", new { personIds = fromUa }, Roles.Liaison, "RU", HttpStatusCode.UnprocessableEntity);
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/checks", new { personId = fromUa[0], identityConfirmed = true }, Roles.Liaison, "UA", HttpStatusCode.Forbidden);
        await SendOkAsync(HttpMethod.Post, $"/exchanges/{id}/completion", new { }, Roles.Auditor, "US", HttpStatusCode.Forbidden);
        Assert.Equal(before, await fixture.EventsAsync());
    }

    [Fact]
    public async Task Personal_data_is_read_only_by_the_entitled_every_read_is_logged_and_erasure_leaves_the_log_verifiable()
    {
        var (_, fromUa, _) = await ListedExchangeAsync();
        var person = fromUa[0];
        var read = await SendOkAsync(HttpMethod.Get, $"/persons/{person}?purpose=identity+check", null, Roles.Intermediary, "ICRC");
        Assert.Equal("Ivanov", read.GetProperty("identity").GetProperty("familyName").GetString());
        await SendOkAsync(HttpMethod.Get, $"/persons/{person}", null, Roles.Auditor, "US", HttpStatusCode.Forbidden);
        await SendOkAsync(HttpMethod.Get, $"/persons/{person}", null, Roles.Liaison, "RU", HttpStatusCode.Forbidden);
        using (var granted = Host.Request(HttpMethod.Get, $"/persons/{person}", null, null))
        {
            var token = Host.Services.GetService(typeof(AuthSettings)) as AuthSettings;
            granted.Headers.Authorization = new("Bearer", new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler().CreateToken(new Microsoft.IdentityModel.Tokens.SecurityTokenDescriptor
            {
                Issuer = token!.Issuer, Audience = token.Audience, Expires = DateTime.UtcNow.AddMinutes(5),
                Claims = new Dictionary<string, object> { ["sub"] = "auditor-court", ["role"] = Roles.Auditor, ["personal_data"] = "read" },
                SigningCredentials = new(token.Key, Microsoft.IdentityModel.Tokens.SecurityAlgorithms.HmacSha256),
            }));
            using var response = await Host.Client.SendAsync(granted);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await SendOkAsync(HttpMethod.Post, $"/persons/{person}/erasure", new { reason = "request of the person (Family Links code)" }, Roles.Intermediary, "ICRC", HttpStatusCode.NoContent);
        var erased = await SendOkAsync(HttpMethod.Get, $"/persons/{person}", null, Roles.Intermediary, "ICRC");
        Assert.True(erased.GetProperty("erased").GetBoolean());
        Assert.Equal(JsonValueKind.Null, erased.GetProperty("identity").ValueKind);

        var store = (EventStore.EventStore)((Microsoft.Extensions.DependencyInjection.IKeyedServiceProvider)Host.Services).GetRequiredKeyedService(typeof(EventStore.EventStore), ExchangesModule.Name);
        var access = await store.ReadStreamAsync($"access-{person}");
        Assert.Equal(["personal_data_read", "personal_data_read", "personal_data_erased", "personal_data_read"], access.Select(e => e.Type));
        var chain = await store.VerifyHashChainAsync();
        Assert.True(chain.Valid, chain.Problem);
        // The ledger still names the person by pseudonym and still counts them.
        await using var connection = new NpgsqlConnection(fixture.Postgres.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM exchanges.events WHERE type = 'list_submitted' AND data::text LIKE '%{person}%'", connection);
        Assert.True((long)(await command.ExecuteScalarAsync())! >= 2);
        await using var plain = new NpgsqlCommand("SELECT count(*) FROM exchanges.events WHERE data::text LIKE '%Ivanov%' OR metadata::text LIKE '%Ivanov%'", connection);
        Assert.Equal(0L, (long)(await plain.ExecuteScalarAsync())!);
    }
}
