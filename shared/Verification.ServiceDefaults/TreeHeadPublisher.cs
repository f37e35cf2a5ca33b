using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Verification.EventStore;

namespace Verification.ServiceDefaults;

/// <summary>The logs a host serves (filled by <c>MapVerifiableLog</c>), for the publisher.</summary>
public sealed class VerifiableLogs
{
    public List<string> Names { get; } = [];
}

/// <summary>
/// At start and every <c>Log:PublishInterval</c> (default 5 min; 0 turns it off) signs each served log's tree head and
/// publishes it when the log has grown (and every 12th interval regardless), with a consistency proof from the head it published before, so the compliance
/// service holds heads the service cannot later deny. One replica publishes per log (an advisory lock), so published
/// sizes only grow. Published directly, not through the outbox: a lost head is replaced by the next one.
/// </summary>
public sealed partial class TreeHeadPublisher(VerifiableLogs logs, LogSigner signer, IServiceProvider services, IConfiguration configuration, TimeProvider clock,
    IHostApplicationLifetime lifetime, ILogger<TreeHeadPublisher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = configuration.GetValue("Log:PublishInterval", TimeSpan.FromMinutes(5));
        if (interval <= TimeSpan.Zero || logs.Names.Count == 0) return;
        // Only once the host has started: the schemas are migrated and the bus is connected.
        var started = new TaskCompletionSource();
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult())) await started.Task.WaitAsync(stoppingToken);

        var leases = new Dictionary<string, Lease>();
        var published = new Dictionary<string, long>();
        using var timer = new PeriodicTimer(interval, clock);
        try
        {
            do
            {
                foreach (var log in logs.Names) await PublishAsync(log, leases, published, stoppingToken);
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
        finally
        {
            foreach (var lease in leases.Values) await lease.DisposeAsync();
        }
    }

    private readonly Dictionary<string, int> _ticks = [];

    private async Task PublishAsync(string log, Dictionary<string, Lease> leases, Dictionary<string, long> published, CancellationToken stoppingToken)
    {
        _ticks.TryAdd(log, 0);
        var store = services.GetRequiredKeyedService<EventStore.EventStore>(log);
        try
        {
            if (leases.TryGetValue(log, out var lease))
            {
                await lease.EnsureHeldAsync(stoppingToken);
            }
            else
            {
                var acquired = await Lease.TryAcquireAsync(store, "tree-head-publisher", stoppingToken);
                if (acquired is null) return;   // another replica publishes this log
                leases[log] = acquired;
                published.Remove(log);
            }
            var (size, root) = await store.Tree.HeadAsync(stoppingToken);
            var known = published.TryGetValue(log, out var previous);
            // An unchanged head goes out again every 12 intervals: a head published before anyone listened is not the last word.
            var heartbeat = ++_ticks[log] % 12 == 0;
            if (known && previous == size && !heartbeat) return;
            var head = VerifiableLog.Sign(log, size, root, signer.Key, clock.GetUtcNow());
            string[]? proof = null;
            if (known && previous > 0 && previous < size)
            {
                var (leaves, _) = await store.Tree.LeavesAsync(size, stoppingToken);
                proof = [.. Merkle.ConsistencyProof(leaves, (int)previous, (int)size).Select(Convert.ToHexStringLower)];
            }
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            await services.GetRequiredService<IBus>().Publish(new Contracts.TreeHeadSigned(head.Log, head.Size, head.RootHash, head.Timestamp, head.Signature,
                signer.PublicKeyPem, proof is null ? null : previous, proof), timeout.Token);
            published[log] = head.Size;
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested)
        {
            LogFailed(logger, log, e);
            // The lease's connection may be what failed: take the lock afresh next time.
            if (leases.Remove(log, out var broken)) await broken.DisposeAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not publish the tree head of the {Log} log")]
    private static partial void LogFailed(ILogger logger, string log, Exception exception);
}
