using System.Text.Json.Nodes;
using Npgsql;
using Verification.EventStore;

namespace Verification.EventStore.Tests;

public sealed class AppendingTests(StoreFixture fixture) : IClassFixture<StoreFixture>
{
    private EventStore Store => fixture.Store;
    private static string NewId() => "inc-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>Starts <paramref name="n"/> writers held at one gate and lets them go together.</summary>
    private static async Task<T[]> AllAtOnceAsync<T>(int n, Func<int, Task<T>> writer)
    {
        using var start = new ManualResetEventSlim();
        var writers = Enumerable.Range(0, n).Select(i => Task.Run(() =>
        {
            start.Wait();
            return writer(i);
        })).ToArray();
        start.Set();
        return await Task.WhenAll(writers);
    }

    [Fact]
    public async Task Appended_events_read_back_with_versions_names_and_metadata()
    {
        var id = NewId();
        var metadata = new EventMetadata { ActorSub = "m1", ActorRole = "monitor", ActorParty = "OSCE", CorrelationId = "c-1", TraceId = "t-1" };
        var first = await Store.AppendAsync(id, "incident", ExpectedVersion.NoStream, [new Noted(id, "Kharkiv", 19)], metadata);
        var second = await Store.AppendAsync(id, "incident", 1, [new Revised(id, 30), new Revised(id, 31)], metadata);

        Assert.Equal(1, first.Version);
        Assert.Equal(3, second.Version);
        var events = await Store.ReadStreamAsync(id);
        Assert.Equal([1L, 2, 3], events.Select(e => e.Version));
        Assert.Equal(["noted", "revised", "revised"], events.Select(e => e.Type));
        Assert.Equal(new Noted(id, "Kharkiv", 19), events[0].Data);
        Assert.Equal("monitor", events[2].Metadata.ActorRole);
        Assert.Equal("OSCE", events[2].Metadata.ActorParty);
        Assert.Equal(3, await Store.StreamVersionAsync(id));
        Assert.Equal(1, await fixture.ScalarAsync($"SELECT count(*) FROM es.stream_heads WHERE id = '{id}' AND type = 'incident' AND version = 3"));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(10)]
    public async Task Of_many_writers_with_the_same_expected_version_exactly_one_wins_and_losers_leave_no_gap(int events)
    {
        var id = NewId();
        await Store.AppendAsync(id, "incident", ExpectedVersion.NoStream, [new Noted(id, "Kyiv", 1)]);
        var before = await fixture.ScalarAsync("SELECT coalesce(max(position), 0) FROM es.events");

        var outcomes = await AllAtOnceAsync(16, async i =>
        {
            try
            {
                await Store.AppendAsync(id, "incident", 1, Enumerable.Range(0, events).Select(k => (object)new Revised(id, i * 100 + k)).ToArray());
                return true;
            }
            catch (ConcurrencyException e)
            {
                Assert.Equal(1, e.Expected);
                Assert.Equal(1 + events, e.Actual);
                return false;
            }
        });

        Assert.Single(outcomes, won => won);
        Assert.Equal(Enumerable.Range(1, 1 + events).Select(v => (long)v), (await Store.ReadStreamAsync(id)).Select(e => e.Version));
        // The next append takes the very next position: the 15 losers took no sequence number.
        var next = await Store.AppendAsync(id, "incident", 1 + events, [new Revised(id, 99)]);
        var winnerLast = await fixture.ScalarAsync($"SELECT position FROM es.events WHERE stream_id = '{id}' AND version = {1 + events}");
        Assert.Equal(winnerLast + 1, next.Positions[0]);
        Assert.True(winnerLast > before);
        Assert.True((await Store.VerifyHashChainAsync()).Valid);
    }

    /// <summary>
    /// A batch at an expected version locks the stream's row in its own statement, and an append to a new stream inserts
    /// the row: held up by another transaction on that row, each goes on from the newest row once it commits.
    /// </summary>
    [Fact]
    public async Task Appends_held_up_on_their_streams_row_go_on_from_the_newest_head()
    {
        var existing = NewId();
        var fresh = NewId();
        var single = NewId();
        await Store.AppendAsync(existing, "incident", ExpectedVersion.NoStream, [new Noted(existing, "Sumy", 1)]);
        await using var holder = await fixture.DataSource.OpenConnectionAsync();
        await using (var transaction = await holder.BeginTransactionAsync())
        {
            // A new version of the existing row (as any writer's would be), and rows at version 0 for the two new streams
            // (as a session over several streams makes before its appends).
            await using (var hold = new NpgsqlCommand(
                $"UPDATE es.streams SET updated_at = now() WHERE id = '{existing}'; INSERT INTO es.streams (id, type) VALUES ('{fresh}', 'incident'), ('{single}', 'incident')", holder, transaction))
                await hold.ExecuteNonQueryAsync();
            var onExisting = Store.AppendAsync(existing, "incident", 1, [new Revised(existing, 2), new Revised(existing, 3)]);
            var onFresh = Store.AppendAsync(fresh, "incident", ExpectedVersion.NoStream, [new Noted(fresh, "Sumy", 4), new Revised(fresh, 5)]);
            var onSingle = Store.AppendAsync(single, "incident", ExpectedVersion.NoStream, [new Noted(single, "Sumy", 9)]);
            await Verification.Testing.Eventually.True(async () => await fixture.ScalarAsync(
                $"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%es.streams%' AND pid <> {holder.ProcessID}") == 3,
                TimeSpan.FromSeconds(20), "the three appends to wait on the rows held");
            Assert.False(onExisting.IsCompleted || onFresh.IsCompleted || onSingle.IsCompleted);
            await transaction.CommitAsync();
            var moved = await onExisting;
            Assert.Equal((3, 2), (moved.Version, moved.Positions.Count));
            Assert.Equal(2, (await onFresh).Version);
            Assert.Equal(1, (await onSingle).Version);
        }
        Assert.Equal(3, await Store.StreamVersionAsync(existing));
        Assert.Equal(2, await Store.StreamVersionAsync(fresh));
        Assert.Equal([1L, 2, 3], (await Store.ReadStreamAsync(existing)).Select(e => e.Version));
        Assert.True((await Store.VerifyHashChainAsync()).Valid);
        // The heads moved with the events: the next appends chain on from them.
        await Store.AppendAsync(existing, "incident", 3, [new Revised(existing, 6), new Revised(existing, 7)]);
        await Store.AppendAsync(fresh, "incident", 2, [new Revised(fresh, 8)]);
        Assert.True((await Store.VerifyHashChainAsync()).Valid);
    }

    [Fact]
    public async Task Writers_at_any_version_single_events_and_batches_all_land_in_one_contiguous_chain()
    {
        var id = NewId();
        await AllAtOnceAsync(12, i =>
        {
            object[] events = i % 3 == 0 ? [new Revised(id, i), new Revised(id, i + 100)] : [new Revised(id, i)];
            return Store.AppendAsync(id, "incident", ExpectedVersion.Any, events);
        });

        var stored = await Store.ReadStreamAsync(id);
        Assert.Equal(Enumerable.Range(1, 16).Select(v => (long)v), stored.Select(e => e.Version));
        Assert.Equal(16, await fixture.ScalarAsync($"SELECT version FROM es.streams WHERE id = '{id}'"));
        Assert.True((await Store.VerifyHashChainAsync()).Valid);
    }

    [Fact]
    public async Task Sessions_over_the_same_streams_in_opposite_orders_do_not_deadlock()
    {
        var a = NewId();
        var b = NewId();
        for (var round = 0; round < 20; round++)
        {
            var forward = Task.Run(() => Store.OpenSession().Append(b, "incident", ExpectedVersion.Any, new Revised(b, round)).Append(a, "incident", ExpectedVersion.Any, new Revised(a, round)).SaveChangesAsync());
            var backward = Task.Run(() => Store.OpenSession().Append(a, "incident", ExpectedVersion.Any, new Revised(a, -round)).Append(b, "incident", ExpectedVersion.Any, new Revised(b, -round)).SaveChangesAsync());
            var results = await Task.WhenAll(forward, backward);
            // Results come back in the order the session appended, whatever order they ran in.
            Assert.Equal([b, a], results[0].Select(r => r.StreamId));
            Assert.Equal([a, b], results[1].Select(r => r.StreamId));
        }
        Assert.Equal(Enumerable.Range(1, 40).Select(v => (long)v), (await Store.ReadStreamAsync(a)).Select(e => e.Version));
        Assert.Equal(40, await Store.StreamVersionAsync(b));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(10)]
    public async Task Of_many_writers_starting_one_stream_exactly_one_wins(int events)
    {
        var id = NewId();
        var outcomes = await AllAtOnceAsync(8, async i =>
        {
            try
            {
                await Store.AppendAsync(id, "incident", ExpectedVersion.NoStream, Enumerable.Range(0, events).Select(k => (object)new Noted(id, "Kherson", i * 100 + k)).ToArray());
                return true;
            }
            catch (ConcurrencyException e)
            {
                Assert.Equal(events, e.Actual);
                return false;
            }
        });
        Assert.Single(outcomes, won => won);
        Assert.Equal(events, (await Store.ReadStreamAsync(id)).Count);
        // The losers took no sequence number: the next append takes the very next position.
        var next = await Store.AppendAsync(id, "incident", events, [new Revised(id, 99)]);
        Assert.Equal(await fixture.ScalarAsync($"SELECT position FROM es.events WHERE stream_id = '{id}' AND version = {events}") + 1, next.Positions[0]);
    }

    [Fact]
    public async Task A_single_event_retried_is_a_no_op_whatever_version_it_expected()
    {
        var id = NewId();
        foreach (var expected in new long?[] { ExpectedVersion.NoStream, 1, ExpectedVersion.Any })
        {
            NewEvent[] one = [new(Guid.NewGuid(), new Revised(id, 1))];
            var first = await Store.OpenSession().Append(id, "incident", expected, one).SaveChangesAsync();
            var retry = await Store.OpenSession().Append(id, "incident", expected, one).SaveChangesAsync();
            Assert.False(first[0].Duplicate);
            Assert.True(retry[0].Duplicate);
            Assert.Equal(first[0].Positions, retry[0].Positions);
            Assert.Equal(first[0].Version, retry[0].Version);
        }
        Assert.Equal(3, (await Store.ReadStreamAsync(id)).Count);
    }

    [Fact]
    public async Task Expecting_a_version_of_a_stream_that_does_not_exist_is_a_conflict_and_creates_nothing()
    {
        var id = NewId();
        foreach (var expected in new long[] { 3, -1 })
        {
            var error = await Assert.ThrowsAsync<ConcurrencyException>(() => Store.AppendAsync(id, "incident", expected, [new Revised(id, 1)]));
            Assert.Equal(0, error.Actual);
            await Assert.ThrowsAsync<ConcurrencyException>(() => Store.AppendAsync(id, "incident", expected, [new Revised(id, 1), new Revised(id, 2)]));
        }
        Assert.Equal(0, await fixture.ScalarAsync($"SELECT count(*) FROM es.streams WHERE id = '{id}'"));
        Assert.Empty(await Store.ReadStreamAsync(id));
    }

    [Fact]
    public async Task Starting_a_stream_that_exists_is_a_conflict_and_writes_nothing()
    {
        var id = NewId();
        await Store.AppendAsync(id, "incident", ExpectedVersion.NoStream, [new Noted(id, "Odesa", 2)]);
        var error = await Assert.ThrowsAsync<ConcurrencyException>(() => Store.AppendAsync(id, "incident", ExpectedVersion.NoStream, [new Noted(id, "Odesa", 3)]));
        Assert.Equal(1, error.Actual);
        Assert.Single(await Store.ReadStreamAsync(id));
        await Assert.ThrowsAsync<ConcurrencyException>(() => Store.AppendAsync(NewId(), "incident", 4, [new Revised(id, 1)]));
    }

    [Fact]
    public async Task Retrying_the_same_batch_is_a_no_op()
    {
        var id = NewId();
        NewEvent[] batch = [new(Guid.NewGuid(), new Noted(id, "Dnipro", 5)), new(Guid.NewGuid(), new Revised(id, 6))];
        var first = await Store.OpenSession().Append(id, "incident", 0, batch).Publish(new Revised(id, 6)).SaveChangesAsync();
        var retry = await Store.OpenSession().Append(id, "incident", 0, batch).Publish(new Revised(id, 6)).SaveChangesAsync();

        Assert.False(first[0].Duplicate);
        Assert.True(retry[0].Duplicate);
        Assert.Equal(first[0].Positions, retry[0].Positions);
        Assert.Equal(2, (await Store.ReadStreamAsync(id)).Count);
        Assert.Equal(1, await fixture.ScalarAsync($"SELECT count(*) FROM es.outbox WHERE message->>'incidentId' = '{id}'"));
        var partial = await Assert.ThrowsAsync<PostgresException>(() =>
            Store.OpenSession().Append(id, "incident", 2, [batch[0], new NewEvent(Guid.NewGuid(), new Revised(id, 7))]).SaveChangesAsync());
        Assert.Equal("VE002", partial.SqlState);
        // Repeating a later id only: the unique index refuses it, and nothing of the batch is written.
        var later = await Assert.ThrowsAsync<PostgresException>(() =>
            Store.OpenSession().Append(id, "incident", 2, [new NewEvent(Guid.NewGuid(), new Revised(id, 8)), batch[1]]).SaveChangesAsync());
        Assert.Equal(PostgresErrorCodes.UniqueViolation, later.SqlState);
        Assert.Equal(2, (await Store.ReadStreamAsync(id)).Count);
    }

    [Fact]
    public async Task An_archived_stream_refuses_appends_of_every_shape_burns_no_position_and_stays_readable()
    {
        var id = NewId();
        var other = NewId();
        NewEvent[] first = [new(Guid.NewGuid(), new Noted(id, "Kherson", 1))];
        await Store.OpenSession().Append(id, "incident", 0, first).SaveChangesAsync();
        await Store.AppendAsync(id, "incident", 1, [new Revised(id, 2)]);
        Assert.True(await Store.ArchiveStreamAsync(id));
        Assert.True(await Store.ArchiveStreamAsync(id));
        Assert.False(await Store.ArchiveStreamAsync(NewId()));
        var before = await fixture.ScalarAsync("SELECT coalesce(max(position), 0) FROM es.events");

        Func<Task>[] attempts =
        [
            () => Store.AppendAsync(id, "incident", 2, [new Revised(id, 3)]),
            () => Store.AppendAsync(id, "incident", ExpectedVersion.Any, [new Revised(id, 3)]),
            () => Store.AppendAsync(id, "incident", ExpectedVersion.NoStream, [new Noted(id, "Kherson", 3)]),
            () => Store.AppendAsync(id, "incident", 2, [new Revised(id, 3), new Revised(id, 4)]),
            () => Store.AppendAsync(id, "incident", ExpectedVersion.Any, [new Revised(id, 3), new Revised(id, 4)]),
            () => Store.OpenSession().Append(other, "incident", 0, new Noted(other, "Kherson", 1)).Append(id, "incident", 2, new Revised(id, 3))
                .Publish(new Revised(other, 1)).SaveChangesAsync(),
        ];
        foreach (var attempt in attempts)
            Assert.Equal(id, (await Assert.ThrowsAsync<StreamArchivedException>(attempt)).StreamId);

        // A retry of what was stored before archiving is still the no-op it always was.
        var retry = await Store.OpenSession().Append(id, "incident", 0, first).SaveChangesAsync();
        Assert.True(retry[0].Duplicate);
        Assert.Equal(1, retry[0].Version);
        Assert.Equal(2, await Store.StreamVersionAsync(id));
        Assert.Equal([1L, 2], (await Store.ReadStreamAsync(id)).Select(e => e.Version));
        Assert.Empty(await Store.ReadStreamAsync(other));
        Assert.Equal(0, await fixture.ScalarAsync($"SELECT count(*) FROM es.outbox WHERE message->>'incidentId' = '{other}'"));
        Assert.Equal(1, await fixture.ScalarAsync($"SELECT count(*) FROM es.stream_heads WHERE id = '{id}' AND archived AND version = 2"));
        var next = await Store.AppendAsync(other, "incident", ExpectedVersion.NoStream, [new Noted(other, "Kherson", 1)]);
        Assert.Equal(before + 1, next.Positions[0]);
    }

    [Fact]
    public async Task Text_with_a_NUL_is_refused_before_anything_is_sent_naming_where_it_is()
    {
        var id = NewId();
        await Store.AppendAsync(id, "incident", 0, [new Noted(id, "Sumy", 1)]);
        var before = await fixture.ScalarAsync("SELECT coalesce(max(position), 0) FROM es.events");
        var outboxBefore = await fixture.ScalarAsync("SELECT count(*) FROM es.outbox");

        async Task<string> Refused(Func<Task> attempt) => (await Assert.ThrowsAsync<UnstorableTextException>(attempt)).Message;
        Assert.Equal("noted: 'region' contains U+0000 (NUL), which cannot be stored",
            await Refused(() => Store.AppendAsync(id, "incident", 1, [new Noted(id, "Su\0my", 2)])));
        Assert.Contains("'region'", await Refused(() => Store.AppendAsync(id, "incident", 1, [new Revised(id, 2), new Noted(id, "\0", 2)])));
        Assert.StartsWith("the stream id", await Refused(() => Store.AppendAsync(id + "\0", "incident", 0, [new Noted(id, "Sumy", 1)])));
        Assert.StartsWith("the metadata: 'actorSub'", await Refused(() =>
            Store.AppendAsync(id, "incident", 1, [new Revised(id, 2)], new EventMetadata { ActorSub = "monitor\0" })));
        Assert.Contains("'region'", await Refused(() =>
            Store.OpenSession().Append(id, "incident", 1, new Revised(id, 2)).Publish(new Noted(id, "Sumy\0", 2), id).SaveChangesAsync()));

        Assert.Equal(1, await Store.StreamVersionAsync(id));
        Assert.Equal(outboxBefore, await fixture.ScalarAsync("SELECT count(*) FROM es.outbox"));
        // The same six characters as text (a backslash, then "u0000") are storable, and nothing refused took a position.
        var lookalike = await Store.AppendAsync(id, "incident", 1, [new Noted(id, "C:\\u0000", 2)]);
        Assert.Equal(before + 1, lookalike.Positions[0]);
        Assert.Equal("C:\\u0000", ((Noted)(await Store.ReadStreamAsync(id))[1].Data).Region);
    }

    /// <summary>
    /// Npgsql 10's auto-preparation breaks when the execution that prepares a statement fails on its input (at bind, as
    /// PostgreSQL refusing a NUL in text does): that connection's next execution of the statement runs on the server but
    /// fails in the client ("Received unexpected backend message DataRow"), so a write outside a transaction was stored
    /// while its caller was told it failed. On one connection, each refusal below comes at its statement's second use,
    /// the one auto-preparation prepared on, and the same statement runs again after it.
    /// </summary>
    [Fact]
    public async Task A_statement_refused_on_its_input_leaves_the_connection_fit_for_the_next_one()
    {
        await using var dataSource = NpgsqlDataSource.Create(ServiceCollectionExtensions.WithStoreSettings(
            new NpgsqlConnectionStringBuilder(fixture.ConnectionString) { MaxPoolSize = 1 }.ConnectionString));
        await using var store = new EventStore(dataSource, StoreFixture.Options("fit"));
        await store.MigrateAsync();
        var id = NewId();
        await store.AppendAsync(id, "incident", 0, [new Noted(id, "Sumy", 1)]);

        Task<IReadOnlyList<IncidentView>> InRegion(string region) =>
            store.QueryDocumentsAsync<IncidentView>("incident_view", "d.data->>'region' = @region", p => p.AddWithValue("region", region));
        Assert.Single(await InRegion("Sumy"));
        Assert.Equal(PostgresErrorCodes.CharacterNotInRepertoire, (await Assert.ThrowsAsync<PostgresException>(() => InRegion("Su\0my"))).SqlState);
        Assert.Single(await InRegion("Sumy"));

        Assert.Single(await store.ReadStreamAsync(id));
        await Assert.ThrowsAsync<PostgresException>(() => store.ReadStreamAsync(id + "\0"));
        Assert.Single(await store.ReadStreamAsync(id));
    }

    [Fact]
    public async Task Several_streams_commit_together_or_not_at_all()
    {
        var a = NewId();
        var b = NewId();
        await Store.AppendAsync(b, "incident", 0, [new Noted(b, "Sumy", 1)]);
        var before = await fixture.ScalarAsync("SELECT coalesce(max(position), 0) FROM es.events");
        await Assert.ThrowsAsync<ConcurrencyException>(() => Store.OpenSession()
            .Append(a, "incident", 0, new Noted(a, "Sumy", 2))
            .Append(b, "incident", 0, new Noted(b, "Sumy", 3))
            .Publish(new Revised(a, 2))
            .SaveChangesAsync());
        Assert.Empty(await Store.ReadStreamAsync(a));
        Assert.Null(await Store.LoadDocumentAsync<IncidentView>("incident_view", a));
        Assert.Equal(0, await fixture.ScalarAsync($"SELECT count(*) FROM es.outbox WHERE message->>'incidentId' = '{a}'"));

        var both = await Store.OpenSession().Append(a, "incident", 0, new Noted(a, "Sumy", 2)).Append(b, "incident", 1, new Revised(b, 4)).SaveChangesAsync();
        Assert.Equal([1L, 2], both.Select(r => r.Version));
        // The session's check ran before either append took a position, whichever stream sorts first.
        Assert.Equal([before + 1, before + 2], both.SelectMany(r => r.Positions).Order());
    }

    [Fact]
    public async Task The_inline_projection_is_written_in_the_same_transaction()
    {
        var id = NewId();
        await Store.AppendAsync(id, "incident", 0, [new Noted(id, "Zaporizhzhia", 29)]);
        Assert.Equal(new IncidentView(id, "Zaporizhzhia", 29, 0), await Store.LoadDocumentAsync<IncidentView>("incident_view", id));
        await Store.AppendAsync(id, "incident", 1, [new Revised(id, 60)]);
        await Assert.ThrowsAsync<ConcurrencyException>(() => Store.AppendAsync(id, "incident", 1, [new Revised(id, 70)]));
        Assert.Equal(new IncidentView(id, "Zaporizhzhia", 60, 1), await Store.LoadDocumentAsync<IncidentView>("incident_view", id));

        var found = await Store.QueryDocumentsAsync<IncidentView>("incident_view", "d.data->>'region' = @region", p => p.AddWithValue("region", "Zaporizhzhia"));
        Assert.Contains(found, v => v.Id == id);
        var differences = await Store.RebuildAndCompareAsync(fixture.Store.Options.InlineProjections[0]);
        Assert.True(differences.Count == 0, string.Join("\n", differences));
    }

    [Fact]
    public async Task Comparisons_run_at_once_each_rebuild_their_own_scratch_copy()
    {
        var session = Store.OpenSession();
        for (var i = 0; i < 300; i++)
        {
            var id = NewId();
            session.Append(id, "incident", 0, new Noted(id, "Kherson", i));
        }
        await session.SaveChangesAsync();
        var projection = fixture.Store.Options.InlineProjections[0];
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Store.RebuildAndCompareAsync(projection)));
        Assert.All(results, differences => Assert.True(differences.Count == 0, string.Join("\n", differences)));
        Assert.Equal(0L, await fixture.ScalarAsync("SELECT count(*) FROM es.documents WHERE generation < 0"));
    }

    [Fact]
    public async Task A_consumer_session_with_an_inbox_mark_updates_the_inline_projection_and_reports_its_append()
    {
        // Regression: the reader once stepped past one result per inbox mark, which Npgsql already passes over (they
        // have no result set), and so lost the appends' results.
        var id = NewId();
        var messageId = Guid.NewGuid();
        IReadOnlyList<AppendResult>? saved = null;
        Assert.True(await Store.HandleOnceAsync("views", messageId, EventMetadata.Empty, async session =>
        {
            session.Append(id, "incident", 0, new Noted(id, "Kherson", 3));
            await Task.CompletedTask;
        }));
        Assert.Equal(new IncidentView(id, "Kherson", 3, 0), await Store.LoadDocumentAsync<IncidentView>("incident_view", id));
        saved = await Store.OpenSession().MarkProcessed("views", Guid.NewGuid()).Append(id, "incident", 1, new Revised(id, 4)).SaveChangesAsync();
        Assert.Equal(2, Assert.Single(saved).Version);
        Assert.Equal(4, (await Store.LoadDocumentAsync<IncidentView>("incident_view", id))!.Count);
        Assert.False(await Store.HandleOnceAsync("views", messageId, EventMetadata.Empty, _ => Task.CompletedTask));

        // A redelivery that gets past the look-up fails on its inbox mark, which goes first: no append takes a position.
        var before = await fixture.ScalarAsync("SELECT coalesce(max(position), 0) FROM es.events");
        await Assert.ThrowsAsync<DuplicateMessageException>(() =>
            Store.OpenSession().MarkProcessed("views", messageId).Append(id, "incident", 2, new Revised(id, 5)).SaveChangesAsync());
        Assert.Equal(before + 1, (await Store.AppendAsync(id, "incident", 2, [new Revised(id, 6)])).Positions[0]);
    }

    [Fact]
    public async Task Time_travel_gives_the_state_as_of_a_version_and_as_of_a_recorded_time()
    {
        var id = NewId();
        await Store.AppendAsync(id, "incident", 0, [new Noted(id, "Kyiv", 1)]);
        await Store.AppendAsync(id, "incident", 1, [new Revised(id, 4)]);
        var knownAt = (await Store.ReadStreamAsync(id))[^1].RecordedAt;
        await Eventually(async () => await fixture.ScalarAsync("SELECT (now() > '" + knownAt.UtcDateTime.ToString("O") + "'::timestamptz)::int") == 1);
        await Store.AppendAsync(id, "incident", 2, [new Revised(id, 9)]);

        static IncidentView? Evolve(IncidentView? view, object e) => e switch
        {
            Noted n => new IncidentView(n.IncidentId, n.Region, n.Count, 0),
            Revised r => view! with { Count = r.Count, Revisions = view.Revisions + 1 },
            _ => view,
        };
        Assert.Equal(1, (await Store.AggregateAsync<IncidentView>(id, Evolve, toVersion: 1)).State!.Count);
        var asKnown = await Store.AggregateAsync<IncidentView>(id, Evolve, recordedUpTo: knownAt);
        Assert.Equal((4, 2L), (asKnown.State!.Count, asKnown.Version));
        Assert.Equal(9, (await Store.AggregateAsync<IncidentView>(id, Evolve)).State!.Count);
    }

    [Fact]
    public async Task Older_event_versions_are_upcast_on_read()
    {
        var id = NewId();
        var v1 = new EventStore(fixture.DataSource, StoreFixture.Options("es_upcast"));
        await v1.MigrateAsync();
        await v1.AppendAsync(id, "incident", 0, [new Noted(id, "Kherson", 7)]);
        var v2 = new EventStoreOptions { Schema = "es_upcast" };
        v2.Types.Register<NotedV2>("noted", version: 2).Register<Revised>("revised").Upcast("noted", 1, old => new JsonObject
        {
            ["incidentId"] = old["incidentId"]!.GetValue<string>(),
            ["region"] = old["region"]!.GetValue<string>(),
            ["low"] = old["count"]!.GetValue<int>(),
            ["high"] = old["count"]!.GetValue<int>(),
        });
        var reader = new EventStore(fixture.DataSource, v2);
        Assert.Equal(new NotedV2(id, "Kherson", 7, 7), (await reader.ReadStreamAsync(id))[0].Data);
        // New writes carry schema version 2 and are read as they are.
        await reader.AppendAsync(id, "incident", 1, [new NotedV2(id, "Kherson", 5, 9)]);
        var stored = await reader.ReadStreamAsync(id);
        Assert.Equal(2, stored[1].Metadata.SchemaVersion);
        Assert.Equal(new NotedV2(id, "Kherson", 5, 9), stored[1].Data);
        // A batch whose events are at different schema versions carries each event's own metadata, chained as stored.
        await reader.AppendAsync(id, "incident", 2, [new Revised(id, 6), new NotedV2(id, "Kherson", 6, 8), new Revised(id, 7)]);
        Assert.Equal([1, 2, 1, 2, 1], (await reader.ReadStreamAsync(id)).Select(e => e.Metadata.SchemaVersion));
        Assert.True((await reader.VerifyHashChainAsync()).Valid);
        // Old code refuses what it cannot understand rather than misreading it, and names the event.
        var refused = await Assert.ThrowsAsync<UnreadableEventException>(() => v1.ReadStreamAsync(id));
        Assert.Equal((id, "noted", stored[1].Position), (refused.StreamId, refused.EventType, refused.Position));
        Assert.Contains("written at schema version 2; this code knows up to 1", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migration_is_idempotent_and_concurrent_start_ups_do_not_collide()
    {
        var stores = Enumerable.Range(0, 4).Select(_ => new EventStore(fixture.DataSource, StoreFixture.Options("es_concurrent"))).ToList();
        await Task.WhenAll(stores.Select(s => s.MigrateAsync()));
        await stores[0].MigrateAsync();
        var id = NewId();
        await stores[1].AppendAsync(id, "incident", 0, [new Noted(id, "Lviv", 1)]);
        Assert.Single(await stores[2].ReadStreamAsync(id));
    }

    private static async Task Eventually(Func<Task<bool>> condition) => await Verification.Testing.Eventually.True(condition);
}
