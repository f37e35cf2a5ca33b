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
        var before = await Eventually.Get(async () => AuditBundle.Verify(await ExportAsync(store, key), trusted) is { EventsChecked: 3 } b ? b : null,
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
        var after = AuditBundle.Verify(await ExportAsync(store, key), trusted);
        Assert.False(after.Valid);
        Assert.Equal(target, after.FirstBadPosition);
    }

    [Fact]
    public async Task A_later_version_committed_before_an_earlier_one_still_verifies_and_a_rewritten_link_is_found_either_way()
    {
        var options = StoreFixture.Options("es_order");
        var store = new EventStore(fixture.DataSource, options);
        await store.MigrateAsync();
        const string id = "inc-order";
        await store.AppendAsync(id, "incident", 0, [new Noted(id, "Kherson", 1)]);
        await store.AppendAsync(id, "incident", 1, [new Revised(id, 2)]);

        // The writer of version 4 took its transaction id first (as a session does with an inbox mark), then waited for
        // the row lock of the writer of version 3, which took its id later: commit order puts version 4 first.
        await using var early = await fixture.DataSource.OpenConnectionAsync();
        await using var earlyTransaction = await early.BeginTransactionAsync();
        await using (var takeId = new NpgsqlCommand("SELECT pg_current_xact_id()", early, earlyTransaction)) await takeId.ExecuteScalarAsync();
        await using var late = await fixture.DataSource.OpenConnectionAsync();
        await using var lateTransaction = await late.BeginTransactionAsync();
        await Append(store, late, lateTransaction, AppendShape.OneAtVersion, id, 2, new Revised(id, 3));
        // Waits for the row lock (or, if it comes after the commit below, takes the next version anyway).
        var waiting = Append(store, early, earlyTransaction, AppendShape.One, id, null, new Revised(id, 4));
        await lateTransaction.CommitAsync();
        await waiting;
        await earlyTransaction.CommitAsync();
        var log = await store.ReadAllAsync(LogPosition.Start, 10);
        Assert.Equal([1L, 2, 4, 3], log.Select(e => e.Version));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var trusted = key.ExportSubjectPublicKeyInfoPem();
        var bundle = await Eventually.Get(async () => await ExportAsync(store, key) is var b && AuditBundle.Verify(b, trusted) is { EventsChecked: 4 } ? b : null,
            what: "the four settled events in the bundle");
        bundle.Position = 0;
        var verified = AuditBundle.Verify(bundle, trusted);
        Assert.True(verified.Valid, string.Join("; ", verified.Problems));

        // Version 3 rewritten with a hash of its own that fits: version 4, read before it, no longer links to it.
        var rewritten = Rewrite(bundle, e => e.Version != 3 ? e : Rehashed(e with { Data = e.Data.Replace("\"count\": 3", "\"count\": 30", StringComparison.Ordinal) }));
        var found = AuditBundle.Verify(rewritten, trusted);
        Assert.False(found.Valid);
        Assert.Contains($"position {log[2].Position}: does not link to version 3 of {id}", found.Problems);
        Assert.DoesNotContain(found.Problems, p => p.Contains("does not hash to its stored hash", StringComparison.Ordinal));

        // The same rewrite of version 2 (read before version 3) breaks the link version 3 makes to it, found in the usual order.
        var forward = Rewrite(bundle, e => e.Version != 2 ? e : Rehashed(e with { Data = e.Data.Replace("\"count\": 2", "\"count\": 20", StringComparison.Ordinal) }));
        Assert.Contains($"position {log[3].Position}: does not link to version 2 of {id}", AuditBundle.Verify(forward, trusted).Problems);
    }

    [Fact]
    public async Task A_bundle_with_an_enormous_file_or_line_is_refused_before_it_is_held_whole()
    {
        await SeedAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var bundle = await ExportAsync(Store, key);
        Assert.True(AuditBundle.Verify(bundle).Valid);

        // A manifest of 2 MB is refused, not read.
        var manifest = AuditBundle.Verify(Replaced(bundle, "manifest.json", stream => stream.Write(new byte[2 << 20])));
        Assert.False(manifest.Valid);
        Assert.Contains(manifest.Problems, p => p.Contains("manifest.json is larger than 1,048,576 bytes", StringComparison.Ordinal));

        // One line of 65 MiB in events.jsonl (65 KB zipped): refused at 64 MiB, not read into one string.
        var line = AuditBundle.Verify(Replaced(bundle, "events.jsonl", stream =>
        {
            var chunk = Encoding.ASCII.GetBytes(new string('x', 1 << 20));
            for (var i = 0; i < 65; i++) stream.Write(chunk);
        }));
        Assert.False(line.Valid);
        Assert.Contains(line.Problems, p => p.Contains("a line of events.jsonl is longer than 67,108,864 characters", StringComparison.Ordinal));
    }

    /// <summary>A copy of the bundle with one file written anew.</summary>
    private static MemoryStream Replaced(MemoryStream bundle, string name, Action<Stream> write)
    {
        var copy = new MemoryStream();
        bundle.Position = 0;
        bundle.CopyTo(copy);
        bundle.Position = 0;
        using (var archive = new System.IO.Compression.ZipArchive(copy, System.IO.Compression.ZipArchiveMode.Update, leaveOpen: true))
        {
            archive.GetEntry(name)!.Delete();
            using var entry = archive.CreateEntry(name).Open();
            write(entry);
        }
        copy.Position = 0;
        return copy;
    }

    private static async Task<MemoryStream> ExportAsync(EventStore store, ECDsa key)
    {
        var bundle = new MemoryStream();
        await store.ExportBundleAsync(bundle, key, DateTimeOffset.UtcNow);
        bundle.Position = 0;
        return bundle;
    }

    private static async Task Append(EventStore store, NpgsqlConnection connection, NpgsqlTransaction transaction, AppendShape shape, string id, long? expected, object e)
    {
        await using var command = new NpgsqlCommand(store.AppendSql(shape, stored: false), connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = "incident" });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)expected ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
        command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
        command.Parameters.Add(new NpgsqlParameter { Value = store.Types.NameOf(e.GetType()).Name, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = store.Types.Serialize(e), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Jsonb });
        command.Parameters.Add(new NpgsqlParameter { Value = "{\"schemaVersion\":1}", NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Jsonb });
        Assert.Equal(1, await command.ExecuteNonQueryAsync());
    }

    private static BundleEvent Rehashed(BundleEvent e) => e with
    {
        Hash = Convert.ToHexStringLower(HashChain.Compute(e.PreviousHash is null ? null : Convert.FromHexString(e.PreviousHash), e.StreamId, e.Version, e.Id, e.Type,
            DateTimeOffset.Parse(e.RecordedAt, System.Globalization.CultureInfo.InvariantCulture), e.Data, e.Metadata)),
    };

    /// <summary>The bundle with its events changed, and its manifest made to fit them (what someone rewriting it would do).</summary>
    private static MemoryStream Rewrite(MemoryStream bundle, Func<BundleEvent, BundleEvent> change)
    {
        var json = new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web);
        bundle.Position = 0;
        Dictionary<string, byte[]> files;
        using (var archive = new System.IO.Compression.ZipArchive(bundle, System.IO.Compression.ZipArchiveMode.Read, leaveOpen: true))
        {
            files = archive.Entries.ToDictionary(e => e.FullName, e =>
            {
                using var copy = new MemoryStream();
                using (var stream = e.Open()) stream.CopyTo(copy);
                return copy.ToArray();
            });
        }
        var lines = Encoding.UTF8.GetString(files["events.jsonl"]).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => System.Text.Json.JsonSerializer.Serialize(change(System.Text.Json.JsonSerializer.Deserialize<BundleEvent>(line, json)!), json) + "\n");
        files["events.jsonl"] = Encoding.UTF8.GetBytes(string.Concat(lines));
        var manifest = System.Text.Json.JsonSerializer.Deserialize<BundleManifest>(files["manifest.json"], json)!;
        files["manifest.json"] = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(manifest with
        {
            Files = manifest.Files.ToDictionary(f => f.Key, f => Convert.ToHexStringLower(SHA256.HashData(files[f.Key]))),
        }, json);
        var rewritten = new MemoryStream();
        using (var archive = new System.IO.Compression.ZipArchive(rewritten, System.IO.Compression.ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, content) in files)
            {
                using var entry = archive.CreateEntry(name).Open();
                entry.Write(content);
            }
        }
        rewritten.Position = 0;
        return rewritten;
    }
}
