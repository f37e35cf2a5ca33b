using System.Security.Cryptography;
using System.Text;
using Npgsql;
using Verification.EventStore;
using Verification.Testing;

namespace Verification.EventStore.Tests;

public sealed class IntegrityTests(StoreFixture fixture) : IClassFixture<StoreFixture>
{
    private EventStore Store => fixture.Store;

    private async Task<string> SeedAsync()
    {
        var id = "inc-" + Guid.NewGuid().ToString("N")[..12];
        await Store.AppendAsync(id, "incident", 0, [new Noted(id, "Kharkiv \"maternity\" ward", 19)],
            new EventMetadata { ActorSub = "m-7", ActorRole = "monitor", CorrelationId = "ü-ß" });
        await Store.AppendAsync(id, "incident", 1, [new Revised(id, 30), new Revised(id, 31)]);
        return id;
    }

    [Fact]
    public async Task A_plain_reader_recomputes_the_documented_hash_chain()
    {
        var id = await SeedAsync();
        // Independent of the library: raw rows, the documented canonical text, SHA-256.
        await using var command = fixture.DataSource.CreateCommand(
            "SELECT stream_id, version, id::text, type, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), data::text, metadata::text, hash " +
            "FROM es.events WHERE stream_id = @id ORDER BY version");
        command.Parameters.AddWithValue("id", id);
        await using var reader = await command.ExecuteReaderAsync();
        byte[] previous = [];
        var rows = 0;
        while (await reader.ReadAsync())
        {
            var text = string.Join('\n', reader.GetString(0), reader.GetInt64(1), reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.GetString(5), reader.GetString(6));
            var expected = SHA256.HashData([.. previous, .. Encoding.UTF8.GetBytes(text)]);
            Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(reader.GetFieldValue<byte[]>(7)));
            previous = expected;
            rows++;
        }
        Assert.Equal(3, rows);
        var verification = await Store.VerifyHashChainAsync();
        Assert.True(verification.Valid, verification.Problem);
        Assert.True(verification.EventsChecked >= 3);
    }

    [Theory]
    [InlineData("UPDATE es.events SET data = '{}'")]
    [InlineData("DELETE FROM es.events")]
    [InlineData("TRUNCATE es.events")]
    public async Task The_database_refuses_to_change_or_remove_events(string sql)
    {
        await SeedAsync();
        var count = await fixture.ScalarAsync("SELECT count(*) FROM es.events");
        await using var command = fixture.DataSource.CreateCommand(sql);
        var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
        Assert.Equal("VE003", error.SqlState);
        Assert.Equal(count, await fixture.ScalarAsync("SELECT count(*) FROM es.events"));
    }

    [Fact]
    public async Task The_service_role_can_insert_and_read_events_but_has_no_right_to_change_them()
    {
        var role = "svc_" + Guid.NewGuid().ToString("N")[..8];
        await using (var create = fixture.DataSource.CreateCommand($"CREATE ROLE {role} LOGIN"))
            await create.ExecuteNonQueryAsync();
        var options = StoreFixture.Options("es_granted");
        options.ApplicationRole = role;
        await new EventStore(fixture.DataSource, options).MigrateAsync();

        await using var asService = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(fixture.ConnectionString) { Username = role }.ConnectionString);
        var store = new EventStore(asService, StoreFixture.Options("es_granted"));
        await store.AppendAsync("inc-granted", "incident", 0, [new Noted("inc-granted", "Sumy", 1)]);
        Assert.Single(await store.ReadStreamAsync("inc-granted"));
        await using var update = asService.CreateCommand("UPDATE es_granted.events SET data = '{}'");
        var error = await Assert.ThrowsAsync<PostgresException>(() => update.ExecuteNonQueryAsync());
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
    }

    [Fact]
    public async Task Tampering_by_a_superuser_is_detected_at_the_first_bad_position()
    {
        var options = StoreFixture.Options("es_tamper");
        var store = new EventStore(fixture.DataSource, options);
        await store.MigrateAsync();
        var id = "inc-tamper";
        await store.AppendAsync(id, "incident", 0, [new Noted(id, "Kyiv", 1)]);
        await store.AppendAsync(id, "incident", 1, [new Revised(id, 4)]);
        await store.AppendAsync(id, "incident", 2, [new Revised(id, 5)]);
        var target = (await store.ReadStreamAsync(id))[1].Position;
        Assert.True((await store.VerifyHashChainAsync()).Valid);
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var trusted = key.ExportSubjectPublicKeyInfoPem();
        // Bundles hold settled events only: wait until a transaction elsewhere in the cluster no longer holds the newest back.
        var before = await Eventually.Get(async () => AuditBundle.Verify(await store.ExportBundleAsync(key, DateTimeOffset.UtcNow), trusted) is { EventsChecked: 3 } b ? b : null,
            what: "three settled events in the bundle");
        Assert.True(before.Valid, string.Join("; ", before.Problems));

        await using (var tamper = fixture.DataSource.CreateCommand(
            $"ALTER TABLE es_tamper.events DISABLE TRIGGER events_append_only; UPDATE es_tamper.events SET data = jsonb_set(data, '{{count}}', '400') WHERE position = {target}; " +
            "ALTER TABLE es_tamper.events ENABLE TRIGGER events_append_only"))
            await tamper.ExecuteNonQueryAsync();

        var verification = await store.VerifyHashChainAsync();
        Assert.False(verification.Valid);
        Assert.Equal(target, verification.FirstBadPosition);

        // An auditor's offline check of a bundle exported after the change names the same position.
        var after = AuditBundle.Verify(await store.ExportBundleAsync(key, DateTimeOffset.UtcNow), trusted);
        Assert.False(after.Valid);
        Assert.Equal(target, after.FirstBadPosition);
    }
}
