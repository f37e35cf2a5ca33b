using System.Diagnostics;
using Npgsql;

namespace Verification.EventStore;

/// <summary>
/// Wakes the daemon and the relay when something commits. Waiters in this process are signalled directly. Other
/// processes hear a NOTIFY, which a listener turns back into signals, at most one per
/// <see cref="EventStoreOptions.NotifyInterval"/>: NOTIFY on every commit would take PostgreSQL's global notify lock
/// through each one and serialize all writers. A commit that finds none sent within the interval carries it in its own
/// transaction (<see cref="Carry"/>); commits in between leave it to the notifier, which sends one within two intervals
/// unless a commit carried one since. Polling stays as the fallback.
/// </summary>
internal sealed class Signals(EventStore store) : IAsyncDisposable
{
    private readonly long _intervalTicks = (long)(store.Options.NotifyInterval.TotalSeconds * Stopwatch.Frequency);
    private readonly string[] _eventsChannel = [store.EventsChannel];
    private readonly string[] _bothChannels = [store.EventsChannel, store.OutboxChannel];

    private readonly Pulse _events = new();
    private readonly Pulse _outbox = new();
    private readonly SemaphoreSlim _notify = new(0, 1);
    private readonly CancellationTokenSource _stop = new();
    private int _notifierStarted;
    private int _listenerStarted;
    // 1 when a commit has not been told to other processes yet. Set and taken with Interlocked (full fences): a commit
    // that sets its flag as the notifier takes them is either taken now or finds the signal it must release.
    private int _pendingEvents, _pendingOutbox;
    // When the last NOTIFY was sent or claimed by a commit (Stopwatch ticks).
    private long _notifiedAt = long.MinValue / 2;
    // Until when commits leave the NOTIFY to the notifier, after one was refused (see CarryFailed).
    private long _carryOffUntil = long.MinValue;

    /// <summary>
    /// The channels a transaction about to commit should NOTIFY itself, or null when one was sent less than an interval
    /// ago. A NOTIFY transaction of its own every interval cost a lone writer about 50 µs of client CPU per append (a
    /// round trip and a commit each); carried, it is one more statement in a round trip the append makes anyway. Flags
    /// pending now are cleared: those commits came before this one, so a listener woken by it reads them. Report the
    /// outcome with <see cref="Committed"/> (carried: true) or <see cref="CarryFailed"/>.
    /// </summary>
    public string[]? Carry(bool outbox)
    {
        var now = Stopwatch.GetTimestamp();
        var last = Volatile.Read(ref _notifiedAt);
        if (now < Volatile.Read(ref _carryOffUntil) || now - last < _intervalTicks || Interlocked.CompareExchange(ref _notifiedAt, now, last) != last)
            return null;
        Interlocked.Exchange(ref _pendingEvents, 0);
        outbox |= Interlocked.Exchange(ref _pendingOutbox, 0) == 1;
        return outbox ? _bothChannels : _eventsChannel;
    }

    /// <summary>
    /// A transaction that was to carry the NOTIFY failed (rolled back whole): the notifier sends one for what it cleared.
    /// True when the NOTIFY itself was refused: PostgreSQL refuses one when its queue is full (a listener somewhere
    /// stopped reading). An append must not fail for a wake-up: commits then stop carrying for a minute and the caller
    /// runs again without it, leaving the NOTIFY to the notifier, where a refusal costs only the wake-up (other
    /// processes still poll).
    /// </summary>
    public bool CarryFailed(Exception failure)
    {
        Volatile.Write(ref _notifiedAt, long.MinValue / 2);
        Tell(events: true, outbox: true);
        if (failure is not PostgresException { SqlState: PostgresErrorCodes.ProgramLimitExceeded } refused ||
            !refused.MessageText.Contains("NOTIFY", StringComparison.Ordinal)) return false;
        Volatile.Write(ref _carryOffUntil, Stopwatch.GetTimestamp() + 60 * Stopwatch.Frequency);
        return true;
    }

    /// <summary>A commit: wakes waiters here, and other processes through NOTIFY unless the commit carried it.</summary>
    public void Committed(bool events, bool outbox, bool carried = false)
    {
        if (events) _events.Fire();
        if (outbox) _outbox.Fire();
        if (!carried) Tell(events, outbox);
    }

    /// <summary>Leaves telling other processes to the notifier.</summary>
    private void Tell(bool events, bool outbox)
    {
        if (events) Interlocked.Exchange(ref _pendingEvents, 1);
        if (outbox) Interlocked.Exchange(ref _pendingOutbox, 1);
        if (Interlocked.Exchange(ref _notifierStarted, 1) == 0) _ = Task.Run(NotifyLoopAsync);
        Release(_notify);
    }

    /// <summary>The statement that carries a NOTIFY, last in the batch of the transaction it rides in.</summary>
    public static NpgsqlBatchCommand Notify(string[] channels) => new("SELECT pg_notify(c, NULL) FROM unnest($1::text[]) AS c")
    {
        Parameters = { new NpgsqlParameter { Value = channels } },
    };

    /// <summary>
    /// The next wake-up for new events (committed here or, through NOTIFY, elsewhere). Take it before looking
    /// for work, then wait on it with the poll interval, so a commit in between is never missed.
    /// </summary>
    public Task NextEvents => Listening(_events.Next);

    public Task NextOutbox => Listening(_outbox.Next);

    private Task Listening(Task next)
    {
        if (Interlocked.Exchange(ref _listenerStarted, 1) == 0) _ = Task.Run(ListenLoopAsync);
        return next;
    }

    public static async Task WaitAsync(Task wake, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try { await wake.WaitAsync(timeout, cancellationToken); }
        catch (TimeoutException) { /* the poll interval passed: look anyway */ }
    }

    /// <summary>
    /// Already signalled is the common case under load (the notifier wakes at most every few milliseconds): look before
    /// releasing: a SemaphoreFullException thrown and caught on nearly every commit cost each append microseconds of CPU.
    /// </summary>
    private static void Release(SemaphoreSlim signal)
    {
        if (signal.CurrentCount > 0) return;
        try { signal.Release(); } catch (SemaphoreFullException) { /* signalled in between: waiters read everything pending */ }
    }

    private async Task NotifyLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            bool events = false, outbox = false;
            try
            {
                await _notify.WaitAsync(_stop.Token);
                // Not before two intervals are over: under load the next commit carries the NOTIFY as soon as one interval
                // is, and this one is then not needed. It is for the commits after the last that carried one.
                long wait;
                while ((wait = Volatile.Read(ref _notifiedAt) + 2 * _intervalTicks - Stopwatch.GetTimestamp()) > 0)
                    await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency), _stop.Token);
                events = Interlocked.Exchange(ref _pendingEvents, 0) == 1;
                outbox = Interlocked.Exchange(ref _pendingOutbox, 0) == 1;
                if (!events && !outbox) continue;
                Volatile.Write(ref _notifiedAt, Stopwatch.GetTimestamp());
                // A NOTIFY commits a transaction of its own; a wake-up needs no durability, so it does not wait for the
                // WAL flush (which every append's commit would otherwise queue behind). Local to this transaction.
                var sql = "SELECT set_config('synchronous_commit', 'off', true);" +
                    (events ? $"NOTIFY {store.EventsChannel};" : "") + (outbox ? $"NOTIFY {store.OutboxChannel};" : "");
                await using var command = store.DataSource.CreateCommand(sql);
                await command.ExecuteNonQueryAsync(_stop.Token);
            }
            catch (OperationCanceledException) { return; }
            catch (Exception)
            {
                // Best effort (other processes also poll), but what was pending stays pending for the next try.
                if (events) Interlocked.Exchange(ref _pendingEvents, 1);
                if (outbox) Interlocked.Exchange(ref _pendingOutbox, 1);
                Release(_notify);
                await Task.Delay(200);
            }
        }
    }

    private async Task ListenLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await using var connection = await store.DataSource.OpenConnectionAsync(_stop.Token);
                connection.Notification += (_, e) =>
                {
                    if (e.Channel == store.EventsChannel) _events.Fire();
                    else if (e.Channel == store.OutboxChannel) _outbox.Fire();
                };
                await using (var listen = new NpgsqlCommand($"LISTEN {store.EventsChannel}; LISTEN {store.OutboxChannel}", connection))
                    await listen.ExecuteNonQueryAsync(_stop.Token);
                try
                {
                    while (!_stop.IsCancellationRequested) await connection.WaitAsync(_stop.Token);
                }
                finally
                {
                    // Pooled connections are not reset on return: leave none subscribed.
                    try
                    {
                        await using var unlisten = new NpgsqlCommand("UNLISTEN *", connection);
                        await unlisten.ExecuteNonQueryAsync(CancellationToken.None);
                    }
                    catch (Exception e) when (e is NpgsqlException or InvalidOperationException) { /* broken: it will not be reused */ }
                }
            }
            catch (OperationCanceledException) { return; }
            catch (Exception) { await Task.Delay(500); }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _stop.Dispose();
    }

    /// <summary>Wakes every waiter at once (several projections wait on the same commits).</summary>
    private sealed class Pulse
    {
        private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public Task Next => Volatile.Read(ref _next).Task;
        public void Fire() => Interlocked.Exchange(ref _next, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }
}
