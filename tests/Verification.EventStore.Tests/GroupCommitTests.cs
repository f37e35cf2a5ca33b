using System.Diagnostics;
using Npgsql;
using Verification.EventStore;
using Verification.Testing;

namespace Verification.EventStore.Tests;

/// <summary>
/// Group commit, made to happen: one append may run at a time, and it is held on a row lock while the others arrive,
/// so they wait and go together when it finishes.
/// </summary>
public sealed class GroupCommitTests(StoreFixture fixture) : IClassFixture<StoreFixture>
{
    private static string NewId() => "inc-" + Guid.NewGuid().ToString("N")[..12];

    private async Task<EventStore> StoreAsync(string schema)
    {
        var options = StoreFixture.Options(schema);
        options.MaxAppendsInFlight = 1;
        var store = new EventStore(fixture.DataSource, options);
        await store.MigrateAsync();
        return store;
    }

    /// <summary>
    /// Starts an append to <paramref name="blocker"/> (at version 1) and holds it on the stream's row lock until the
    /// returned release runs: while it runs, every other append waits for a group.
    /// </summary>
    private async Task<(Task<AppendResult> InFlight, Func<Task> Release)> HoldOneInFlightAsync(EventStore store, string blocker)
    {
        var holder = await fixture.DataSource.OpenConnectionAsync();
        var transaction = await holder.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand($"SELECT 1 FROM {store.Schema}.streams WHERE id = '{blocker}' FOR UPDATE", holder, transaction))
            await lockRow.ExecuteNonQueryAsync();
        Task<AppendResult> inFlight;
        using (new Activity("held append").Start())   // the flush it hands its place to must not run under its trace
            inFlight = store.AppendAsync(blocker, "incident", 1, [new Revised(blocker, 2)]);
        await Eventually.True(async () => await fixture.ScalarAsync(
            $"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE {store.Schema}.streams%'") == 1,
            TimeSpan.FromSeconds(20), "the append in flight to wait on the row lock");
        return (inFlight, async () =>
        {
            await transaction.CommitAsync();
            await holder.DisposeAsync();
        });
    }

    /// <summary>Collects the store's activities (group commits) as they stop.</summary>
    private static ActivityListener Listen(List<Activity> stopped)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Verification.EventStore",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity => { lock (stopped) stopped.Add(activity); },
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }

    private static async Task<object> OutcomeAsync(Task<AppendResult> append)
    {
        try { return await append; }
        catch (Exception e) { return e; }
    }

    [Fact]
    public async Task Appends_that_wait_commit_together_in_one_transaction_each_with_its_own_outcome()
    {
        var store = await StoreAsync("es_group");
        var blocker = NewId();
        string[] existing = [NewId(), NewId(), NewId(), NewId()], fresh = [NewId(), NewId(), NewId(), NewId()];
        string conflicting = NewId(), archived = NewId(), retried = NewId(), contested = NewId();
        foreach (var id in existing.Append(blocker).Append(conflicting).Append(archived).Append(contested))
            await store.AppendAsync(id, "incident", 0, [new Noted(id, "Donetsk", 1)]);
        await store.AppendAsync(conflicting, "incident", 1, [new Revised(conflicting, 2)]);
        await store.ArchiveStreamAsync(archived);
        NewEvent[] first = [new(Guid.NewGuid(), new Noted(retried, "Donetsk", 1))];
        await store.OpenSession().Append(retried, "incident", 0, first).SaveChangesAsync();
        var before = await fixture.ScalarAsync("SELECT coalesce(max(position), 0) FROM es_group.events");

        var (inFlight, release) = await HoldOneInFlightAsync(store, blocker);
        var appends = existing.Select((id, i) => store.OpenSession().Append(id, "incident", 1, new Revised(id, 10 + i))
                .Publish(new Revised(id, 100), id).SaveChangesAsync().FirstAsync())
            .Concat(fresh.Select(id => store.AppendAsync(id, "incident", 0, [new Noted(id, "Luhansk", 7)])))
            .ToArray();
        var conflict = store.OpenSession().Append(conflicting, "incident", 1, new Revised(conflicting, 3))
            .Publish(new Revised(conflicting, 100), conflicting).SaveChangesAsync().FirstAsync();
        var toArchived = store.AppendAsync(archived, "incident", 1, [new Revised(archived, 2)]);
        var retry = store.OpenSession().Append(retried, "incident", 0, first).SaveChangesAsync();
        var contest = new[] { store.AppendAsync(contested, "incident", 1, [new Revised(contested, 2)]), store.AppendAsync(contested, "incident", 1, [new Revised(contested, 3)]) };
        Assert.Equal(appends.Length + 5, store.Appends.Waiting);
        await release();

        Assert.Equal(2, (await inFlight).Version);
        var stored = await Task.WhenAll(appends);
        Assert.Equal([2L, 2, 2, 2, 1, 1, 1, 1], stored.Select(r => r.Version));
        Assert.All(stored, r => Assert.False(r.Duplicate));
        var lost = Assert.IsType<ConcurrencyException>(await OutcomeAsync(conflict));
        Assert.Equal(2, lost.Actual);
        Assert.IsType<StreamArchivedException>(await OutcomeAsync(toArchived));
        Assert.True((await retry)[0].Duplicate);
        var contested2 = await Task.WhenAll(contest.Select(OutcomeAsync));
        Assert.Single(contested2.OfType<AppendResult>());
        Assert.Single(contested2.OfType<ConcurrencyException>());

        // The nine stored while the first was held went in one transaction, after it; no position was skipped.
        Assert.Equal(1, await fixture.ScalarAsync($"SELECT count(DISTINCT transaction_id) FROM es_group.events WHERE position > {before} AND stream_id <> '{blocker}'"));
        Assert.Equal(10, await fixture.ScalarAsync($"SELECT count(*) FROM es_group.events WHERE position > {before}"));
        Assert.Equal(10, await fixture.ScalarAsync($"SELECT max(position) - min(position) + 1 FROM es_group.events WHERE position > {before}"));
        // Messages commit with the appends they follow, and not with one that lost.
        Assert.Equal(existing.Length, await fixture.ScalarAsync("SELECT count(*) FROM es_group.outbox WHERE message->>'count' = '100'"));
        Assert.Equal(0, await fixture.ScalarAsync($"SELECT count(*) FROM es_group.outbox WHERE message->>'incidentId' = '{conflicting}'"));
        // The inline projection saw every stored event, in the same transaction.
        Assert.Equal(new IncidentView(existing[2], "Donetsk", 12, 1), await store.LoadDocumentAsync<IncidentView>("incident_view", existing[2]));
        Assert.Equal(new IncidentView(fresh[0], "Luhansk", 7, 0), await store.LoadDocumentAsync<IncidentView>("incident_view", fresh[0]));
        Assert.Equal(2, await store.StreamVersionAsync(conflicting));
        Assert.Equal(1, await store.StreamVersionAsync(archived));
        Assert.True((await store.VerifyHashChainAsync()).Valid);
        Assert.Equal(0, store.Appends.Waiting);
    }

    [Fact]
    public async Task A_group_that_fails_sends_each_append_back_to_run_alone()
    {
        var store = await StoreAsync("es_group_fail");
        var blocker = NewId();
        await store.AppendAsync(blocker, "incident", 0, [new Noted(blocker, "Kharkiv", 1)]);
        var taken = (await store.ReadStreamAsync(blocker))[0].Id;
        var groups = new List<Activity>();
        using var listener = Listen(groups);
        var before = await fixture.ScalarAsync("SELECT coalesce(max(position), 0) FROM es_group_fail.events");

        var (inFlight, release) = await HoldOneInFlightAsync(store, blocker);
        string[] fresh = [NewId(), NewId(), NewId()];
        var caller = new Activity("request").Start();
        var appends = fresh.Select(id => store.AppendAsync(id, "incident", 0, [new Noted(id, "Kharkiv", 2)])).ToArray();
        // An event id stored before, in another stream: the group's insert fails on the unique index.
        var clash = NewId();
        var clashing = store.OpenSession().Append(clash, "incident", 0, [new NewEvent(taken, new Noted(clash, "Kharkiv", 3))]).SaveChangesAsync();
        caller.Stop();
        Assert.Equal(4, store.Appends.Waiting);
        await release();
        await inFlight;

        Assert.All(await Task.WhenAll(appends), r => Assert.Equal(1, r.Version));
        var failed = await Assert.ThrowsAsync<PostgresException>(() => clashing);
        Assert.Equal(PostgresErrorCodes.UniqueViolation, failed.SqlState);
        Assert.Empty(await store.ReadStreamAsync(clash));
        Assert.Equal(ActivityStatusCode.Error, Assert.Single(groups, a => a.Links.Any(l => l.Context.TraceId == caller.TraceId)).Status);
        // Each ran alone after the group rolled back: a transaction each.
        Assert.Equal(3, await fixture.ScalarAsync($"SELECT count(DISTINCT transaction_id) FROM es_group_fail.events WHERE position > {before} AND stream_id <> '{blocker}'"));
        Assert.True((await store.VerifyHashChainAsync()).Valid);
    }

    [Fact]
    public async Task A_group_is_traced_on_its_own_linked_to_each_caller()
    {
        var store = await StoreAsync("es_group_trace");
        var blocker = NewId();
        await store.AppendAsync(blocker, "incident", 0, [new Noted(blocker, "Odesa", 1)]);
        var groups = new List<Activity>();
        using var listener = Listen(groups);

        var (inFlight, release) = await HoldOneInFlightAsync(store, blocker);
        var callers = new List<ActivityTraceId>();
        var appends = new List<Task<AppendResult>>();
        for (var i = 0; i < 3; i++)
        {
            using var caller = new Activity("request").Start();
            callers.Add(caller.TraceId);
            var id = NewId();
            appends.Add(store.AppendAsync(id, "incident", 0, [new Noted(id, "Odesa", i)]));
        }
        await release();
        await inFlight;
        await Task.WhenAll(appends);

        var group = Assert.Single(groups, a => a.Links.Any(l => callers.Contains(l.Context.TraceId)));
        Assert.Equal("group commit", group.OperationName);
        Assert.Equal(default, group.ParentSpanId);
        Assert.DoesNotContain(group.TraceId, callers);
        Assert.Equal(callers.Select(t => t.ToHexString()).Order(), group.Links.Select(l => l.Context.TraceId.ToHexString()).Order());
        Assert.Equal(3, group.GetTagItem("verification.appends"));
    }

    [Fact]
    public async Task An_append_cancelled_while_it_waits_for_its_group_writes_nothing()
    {
        var store = await StoreAsync("es_group_cancel");
        var blocker = NewId();
        await store.AppendAsync(blocker, "incident", 0, [new Noted(blocker, "Sumy", 1)]);
        var (inFlight, release) = await HoldOneInFlightAsync(store, blocker);
        using var cancel = new CancellationTokenSource();
        var id = NewId();
        var waiting = store.AppendAsync(id, "incident", 0, [new Noted(id, "Sumy", 2)], cancellationToken: cancel.Token);
        Assert.Equal(1, store.Appends.Waiting);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        Assert.Equal(0, store.Appends.Waiting);
        await release();
        await inFlight;

        Assert.Empty(await store.ReadStreamAsync(id));
        Assert.Equal(0, await store.StreamVersionAsync(id));
    }
}

internal static class SessionResults
{
    public static async Task<AppendResult> FirstAsync(this Task<IReadOnlyList<AppendResult>> session) => (await session)[0];
}
