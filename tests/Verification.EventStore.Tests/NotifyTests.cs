using System.Diagnostics;
using Npgsql;
using Verification.EventStore;
using Verification.Testing;

namespace Verification.EventStore.Tests;

/// <summary>
/// What other processes hear of commits: a NOTIFY at most once per interval, carried by a commit or sent after the last
/// ones. A LISTEN connection stands in for another instance's daemon (channels are per database, and the fixture's
/// database is this class's own).
/// </summary>
public sealed class NotifyTests(StoreFixture fixture) : IClassFixture<StoreFixture>
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);

    private async Task<EventStore> StoreAsync(string schema)
    {
        var options = StoreFixture.Options(schema);
        options.NotifyInterval = Interval;
        var store = new EventStore(fixture.DataSource, options);
        await store.MigrateAsync();
        return store;
    }

    /// <summary>Listens on the store's events channel; each notification's arrival time, by a stopwatch started now.</summary>
    private sealed class Listener : IAsyncDisposable
    {
        private readonly NpgsqlConnection _connection;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<TimeSpan> _arrivals = [];
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private Task _loop = Task.CompletedTask;

        private Listener(NpgsqlConnection connection) => _connection = connection;

        public static async Task<Listener> StartAsync(string connectionString, string channel)
        {
            var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
            await connection.OpenAsync();
            var listener = new Listener(connection);
            connection.Notification += (_, e) => { if (e.Channel == channel) lock (listener._arrivals) listener._arrivals.Add(listener._clock.Elapsed); };
            await using (var listen = new NpgsqlCommand($"LISTEN {channel}", connection)) await listen.ExecuteNonQueryAsync();
            listener._loop = Task.Run(async () =>
            {
                try { while (true) await connection.WaitAsync(listener._stop.Token); }
                catch (OperationCanceledException) { /* stopped */ }
            });
            return listener;
        }

        public TimeSpan Now => _clock.Elapsed;

        public IReadOnlyList<TimeSpan> Arrivals
        {
            get { lock (_arrivals) return [.. _arrivals]; }
        }

        public Task WaitForAsync(int count, string what) =>
            Eventually.True(() => Task.FromResult(Arrivals.Count >= count), TimeSpan.FromSeconds(15), what);

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _loop;
            await _connection.DisposeAsync();
            _stop.Dispose();
        }
    }

    [Fact]
    public async Task A_commit_after_a_quiet_spell_notifies_at_once_and_commits_inside_the_interval_are_told_once_after_it()
    {
        var store = await StoreAsync("es_notify");
        await using var listener = await Listener.StartAsync(fixture.ConnectionString, store.EventsChannel);

        await store.AppendAsync("n-1", "incident", 0, [new Noted("n-1", "north", 1)]);
        await listener.WaitForAsync(1, "the first commit's notification");
        // Inside the interval: none of these notifies on its own...
        for (var i = 2; i <= 4; i++) await store.AppendAsync($"n-{i}", "incident", 0, [new Noted($"n-{i}", "north", i)]);
        var lastCommitted = listener.Now;
        // ...but one follows them, or another instance's daemon would sleep until its poll.
        await listener.WaitForAsync(2, "a notification after the commits inside the interval");
        var arrivals = listener.Arrivals;
        Assert.True(arrivals[1] >= lastCommitted, $"the second notification ({arrivals[1]}) came after the last commit ({lastCommitted})");
        Assert.True(arrivals[1] - arrivals[0] >= Interval * 0.9, $"coalesced: {arrivals[1] - arrivals[0]} between the two, the interval is {Interval}");
    }

    [Fact]
    public async Task An_append_whose_carried_notification_is_refused_is_stored_and_other_processes_are_still_told()
    {
        // PostgreSQL refuses a NOTIFY when its queue is full. Stand-in: a pg_notify ahead of pg_catalog on this data
        // source's search path that raises what PostgreSQL raises then (the notifier's NOTIFY statement is not a call).
        await using (var shadow = fixture.DataSource.CreateCommand(
            """
            CREATE SCHEMA IF NOT EXISTS notify_full;
            CREATE OR REPLACE FUNCTION notify_full.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $f$
            BEGIN RAISE EXCEPTION 'too many notifications in the NOTIFY queue' USING ERRCODE = '54000'; END $f$;
            """))
            await shadow.ExecuteNonQueryAsync();
        await using var full = NpgsqlDataSource.Create(ServiceCollectionExtensions.WithStoreSettings(
            new NpgsqlConnectionStringBuilder(fixture.ConnectionString) { SearchPath = "notify_full, pg_catalog" }.ConnectionString));
        var options = StoreFixture.Options("es_notify_refused");
        options.NotifyInterval = Interval;
        var store = new EventStore(full, options);
        await store.MigrateAsync();
        await using var listener = await Listener.StartAsync(fixture.ConnectionString, store.EventsChannel);

        var first = await store.AppendAsync("r-1", "incident", 0, [new Noted("r-1", "north", 1)]);
        Assert.Equal(1, first.Version);
        await listener.WaitForAsync(1, "a notification from the notifier instead");
        // Carrying stays off for a while: the next appends are stored at once too.
        Assert.Equal(1, (await store.AppendAsync("r-2", "incident", 0, [new Noted("r-2", "north", 2)])).Version);
        Assert.Equal(2, await fixture.ScalarAsync("SELECT count(*) FROM es_notify_refused.events"));
    }

    [Fact]
    public async Task A_commit_that_was_to_carry_the_notification_and_failed_does_not_swallow_the_earlier_ones()
    {
        var store = await StoreAsync("es_notify_failed");
        await using var listener = await Listener.StartAsync(fixture.ConnectionString, store.EventsChannel);

        await store.AppendAsync("f-1", "incident", 0, [new Noted("f-1", "north", 1)]);
        var firstReturned = Stopwatch.StartNew();
        await listener.WaitForAsync(1, "the first commit's notification");
        await store.AppendAsync("f-2", "incident", 0, [new Noted("f-2", "north", 2)]);   // inside the interval: pending
        // Past the interval, the next commit would carry the notification for f-2 too; this one fails instead.
        var rest = Interval * 1.1 - firstReturned.Elapsed;
        if (rest > TimeSpan.Zero) await Task.Delay(rest);
        await Assert.ThrowsAsync<ConcurrencyException>(() => store.AppendAsync("f-1", "incident", 0, [new Noted("f-1", "north", 3)]));
        await listener.WaitForAsync(2, "a notification for f-2 after the failed commit");
    }
}
