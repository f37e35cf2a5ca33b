using Npgsql;

namespace Verification.EventStore;

/// <summary>
/// Wakes the daemon and the relay when something commits. NOTIFY inside the append would take PostgreSQL's
/// global notify lock through every commit and serialize all writers, so commits signal waiters in this
/// process directly, and a coalesced NOTIFY outside the transaction tells other processes; a listener turns
/// those back into signals. Polling stays as the fallback.
/// </summary>
internal sealed class Signals(EventStore store) : IAsyncDisposable
{
    private readonly Pulse _events = new();
    private readonly Pulse _outbox = new();
    private readonly SemaphoreSlim _notify = new(0, 1);
    private readonly CancellationTokenSource _stop = new();
    private int _notifierStarted;
    private int _listenerStarted;
    // 1 when a commit has not been told to other processes yet. Set and taken with Interlocked (full fences): a commit
    // that sets its flag as the notifier takes them is either taken now or finds the signal it must release.
    private int _pendingEvents, _pendingOutbox;

    public void Committed(bool events, bool outbox)
    {
        if (events) _events.Fire();
        if (outbox) _outbox.Fire();
        if (events) Interlocked.Exchange(ref _pendingEvents, 1);
        if (outbox) Interlocked.Exchange(ref _pendingOutbox, 1);
        if (Interlocked.Exchange(ref _notifierStarted, 1) == 0) _ = Task.Run(NotifyLoopAsync);
        Release(_notify);
    }

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
            try
            {
                await _notify.WaitAsync(_stop.Token);
                var events = Interlocked.Exchange(ref _pendingEvents, 0) == 1;
                var outbox = Interlocked.Exchange(ref _pendingOutbox, 0) == 1;
                var sql = (events ? $"NOTIFY {store.EventsChannel};" : "") + (outbox ? $"NOTIFY {store.OutboxChannel};" : "");
                if (sql.Length == 0) continue;
                // A NOTIFY commits a transaction of its own; a wake-up needs no durability, so it does not wait for the
                // WAL flush (which every append's commit would otherwise queue behind). Local to this transaction.
                sql = "SELECT set_config('synchronous_commit', 'off', true);" + sql;
                await using (var command = store.DataSource.CreateCommand(sql))
                    await command.ExecuteNonQueryAsync(_stop.Token);
                // At most one NOTIFY per few milliseconds: under load it costs other processes ≤ 5 ms of latency,
                // not a server transaction per append (waiters in this process were woken already).
                await Task.Delay(5, _stop.Token);
            }
            catch (OperationCanceledException) { return; }
            catch (Exception) { await Task.Delay(200); /* best effort: other processes also poll */ }
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
