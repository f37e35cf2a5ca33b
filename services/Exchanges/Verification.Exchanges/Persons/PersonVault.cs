using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Npgsql;
using Verification.EventStore;
using Verification.ServiceDefaults;

namespace Verification.Exchanges.Persons;

/// <summary>The identity fields a detaining power holds for a prisoner (Geneva Convention III, art. 17 and 122).</summary>
public sealed record Identity(string FamilyName, string GivenNames, DateOnly? DateOfBirth = null, string? ServiceNumber = null, string? Rank = null,
    string? PlaceOfBirth = null, string? FatherName = null, string? MotherName = null);

public sealed record PersonalDataRead(string PersonId, string Reader, string Role, string? Purpose, DateTimeOffset ReadAt);
public sealed record PersonalDataErased(string PersonId, string By, string Reason, DateTimeOffset ErasedAt);

public sealed record PersonView(string PersonId, bool Erased, Identity? Identity);

/// <summary>
/// Personal data outside the log. A person's id is a keyed hash of their identity fields (both sides listing the same
/// person get the same id, and the id reveals nothing); the fields are encrypted (AES-256-GCM) with a key of their own.
/// Erasure destroys the key: the data is unreadable everywhere while the ledger and its hash chain stay intact.
/// Every read is itself an event.
/// </summary>
public sealed class PersonVault([FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, IConfiguration configuration)
{
    public const string Tables = """
        CREATE TABLE IF NOT EXISTS {schema}.person_keys (person_id text PRIMARY KEY, key bytea, erased_at timestamptz);
        CREATE TABLE IF NOT EXISTS {schema}.person_identities (person_id text PRIMARY KEY, nonce bytea NOT NULL, ciphertext bytea NOT NULL, tag bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())
        """;

    private readonly byte[] _pseudonymKey = configuration["Exchanges:PseudonymKey"] is { Length: > 0 } key
        ? Convert.FromBase64String(key)
        : Encoding.UTF8.GetBytes("verification-development-pseudonym-key-not-for-production");

    public string PersonId(Identity identity)
    {
        static string Norm(string? s) => (s ?? "").Trim().ToUpperInvariant().Normalize(NormalizationForm.FormKC);
        var text = string.Join('\u001f', Norm(identity.FamilyName), Norm(identity.GivenNames), identity.DateOfBirth?.ToString("O") ?? "", Norm(identity.ServiceNumber));
        return "p-" + Convert.ToHexStringLower(HMACSHA256.HashData(_pseudonymKey, Encoding.UTF8.GetBytes(text)))[..32];
    }

    /// <summary>Stores a person's identity once (the first listing wins; an erased person stays erased) and returns their id.</summary>
    public async Task<string> StoreAsync(Identity identity, CancellationToken cancellationToken)
    {
        var id = PersonId(identity);
        var key = RandomNumberGenerator.GetBytes(32);
        var nonce = RandomNumberGenerator.GetBytes(12);
        var plain = JsonSerializer.SerializeToUtf8Bytes(identity, EventTypes.Json);
        var cipher = new byte[plain.Length];
        var tag = new byte[16];
        using (var aes = new AesGcm(key, 16)) aes.Encrypt(nonce, plain, cipher, tag, Encoding.UTF8.GetBytes(id));
        await using var batch = store.DataSource.CreateBatch();
        batch.BatchCommands.Add(Command($"INSERT INTO {store.Schema}.person_keys (person_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING", id, key));
        batch.BatchCommands.Add(Command($"INSERT INTO {store.Schema}.person_identities (person_id, nonce, ciphertext, tag) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", id, nonce, cipher, tag));
        await batch.ExecuteNonQueryAsync(cancellationToken);
        return id;
    }

    /// <summary>Decrypts a person's identity for an authorized reader and records the read.</summary>
    public async Task<PersonView?> ReadAsync(string personId, Actor reader, string? purpose, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = store.DataSource.CreateCommand(
            $"SELECT k.key, k.erased_at, i.nonce, i.ciphertext, i.tag FROM {store.Schema}.person_keys k LEFT JOIN {store.Schema}.person_identities i USING (person_id) WHERE k.person_id = @id");
        command.Parameters.AddWithValue("id", personId);
        PersonView view;
        await using (var row = await command.ExecuteReaderAsync(cancellationToken))
        {
            if (!await row.ReadAsync(cancellationToken)) return null;
            if (row.IsDBNull(0) || row.IsDBNull(2)) view = new PersonView(personId, true, null);
            else
            {
                var cipher = row.GetFieldValue<byte[]>(3);
                var plain = new byte[cipher.Length];
                using (var aes = new AesGcm(row.GetFieldValue<byte[]>(0), 16))
                    aes.Decrypt(row.GetFieldValue<byte[]>(2), cipher, row.GetFieldValue<byte[]>(4), plain, Encoding.UTF8.GetBytes(personId));
                view = new PersonView(personId, false, JsonSerializer.Deserialize<Identity>(plain, EventTypes.Json));
            }
        }
        await store.AppendAsync($"access-{personId}", "personal-data-access", null,
            [new PersonalDataRead(personId, reader.Subject, reader.Role, purpose, now)], Metadata(reader), cancellationToken);
        return view;
    }

    /// <summary>Crypto-shredding: the key is destroyed, so the stored ciphertext can never be read again.</summary>
    public async Task<bool> EraseAsync(string personId, Actor actor, string reason, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = store.DataSource.CreateCommand(
            $"UPDATE {store.Schema}.person_keys SET key = NULL, erased_at = now() WHERE person_id = @id AND key IS NOT NULL");
        command.Parameters.AddWithValue("id", personId);
        if (await command.ExecuteNonQueryAsync(cancellationToken) == 0) return false;
        await store.AppendAsync($"access-{personId}", "personal-data-access", null, [new PersonalDataErased(personId, actor.Subject, reason, now)], Metadata(actor), cancellationToken);
        return true;
    }

    private static EventMetadata Metadata(Actor a) => new() { ActorSub = a.Subject, ActorRole = a.Role, ActorParty = a.Party };

    private static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        return command;
    }

    /// <summary>Who may read identities: the intermediary, an admin, or an auditor whose token grants <c>personal_data=read</c>.</summary>
    public static bool MayRead(System.Security.Claims.ClaimsPrincipal user) =>
        user.IsInRole(Roles.Intermediary) || user.IsInRole(Roles.Admin) || (user.IsInRole(Roles.Auditor) && user.HasClaim("personal_data", "read"));

    public static void Map(RouteGroupBuilder group)
    {
        group.MapGet("/{personId}", async (string personId, string? purpose, HttpContext http, PersonVault vault, TimeProvider clock) =>
        {
            if (!MayRead(http.User)) throw Rejection.Forbidden("reading personal data needs the intermediary role or a personal_data grant");
            return await vault.ReadAsync(personId, Actor.From(http.User), purpose, clock.GetUtcNow(), http.RequestAborted) is { } view
                ? TypedResults.Ok(view) : throw Rejection.NotFound($"no person {personId}");
        });
        group.MapPost("/{personId}/erasure", async (string personId, ErasureRequest request, HttpContext http, PersonVault vault, TimeProvider clock) =>
        {
            new Validation().Check(!string.IsNullOrWhiteSpace(request.Reason) && request.Reason.Length <= 2000, "reason", "is required, at most 2000 characters").ThrowIfInvalid();
            return await vault.EraseAsync(personId, Actor.From(http.User), request.Reason, clock.GetUtcNow(), http.RequestAborted)
                ? TypedResults.NoContent() : throw Rejection.NotFound($"no readable personal data for {personId}");
        }).RequireAuthorization(p => p.RequireRole(Roles.Intermediary, Roles.Admin));
    }
}

public sealed record ErasureRequest(string Reason);
