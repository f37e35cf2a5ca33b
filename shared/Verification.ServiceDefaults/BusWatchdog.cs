using System.Diagnostics;
using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Verification.ServiceDefaults;

/// <summary>
/// Stops the service, with exit code <see cref="ExitCode"/>, when its bus has been stuck for <c>Bus:StuckAfter</c>
/// (default 1 min; 0 turns it off) while the broker accepts connections; only a new process gets it back. Stuck is
/// either of:
/// <list type="bullet">
/// <item>The bus is unhealthy. Restarting the bus in the process drops an endpoint that was faulted when it stopped
/// (BusRecoveryTests), and MassTransit 8.4 on RabbitMQ.Client 7.1 came back from broker restarts with endpoints that
/// never consumed again.</item>
/// <item>The bus says healthy, but a queue one of its receive endpoints consumes has no consumer on the broker.
/// MassTransit 8.5.12 came back so from three broker restarts seconds apart (the fault suite: 1,377 messages ready,
/// no consumer, two minutes, nothing logged); a consumer the broker cancelled without the client learning of it
/// looks the same. Consumers are counted per queue, so with several instances this sees it once none
/// consumes.</item>
/// </list>
/// The supervisor starts the service again (a container's restart policy, Kubernetes, <c>scripts/run.sh
/// --distributed</c>, the tests' distributed system); the outbox and the inbox make the restart lose and repeat
/// nothing. A broker that is down is not a stuck bus: MassTransit reconnects once it is back.
/// </summary>
public sealed partial class BusWatchdog(IBusControl bus, Uri broker, TimeSpan stuckAfter, IHostApplicationLifetime lifetime, ILogger<BusWatchdog> logger)
    : BackgroundService
{
    /// <summary>EX_TEMPFAIL: stopped because the bus was stuck; start it again.</summary>
    public const int ExitCode = 75;

    private static readonly Counter<long> StuckCounter = Telemetry.Meter.CreateCounter<long>("verification.bus.stuck", description: "services stopped because their bus was stuck");
    private volatile bool _stuck;

    /// <summary>The watchdog's own connection, kept between checks (a connection every few seconds fills the broker's log).</summary>
    private IConnection? _connection;

    /// <summary>True once this instance found the bus stuck and stopped the service.</summary>
    public bool Stuck => _stuck;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Real time, not the service's clock: this is about connections, and tests move the service's clock by hours.
        using var timer = new PeriodicTimer(TimeSpan.FromTicks(Math.Clamp(stuckAfter.Ticks / 6, TimeSpan.FromMilliseconds(250).Ticks, TimeSpan.FromSeconds(5).Ticks)));
        var since = (Stopwatch?)null;
        var warned = false;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var problem = await ProblemAsync(bus.CheckHealth(), stoppingToken);
                if (problem is null)
                {
                    since = null;
                    warned = false;
                    continue;
                }
                since ??= Stopwatch.StartNew();
                if (since.Elapsed < stuckAfter)
                {
                    // Half-way, not at once: a queue's consumer count lags a new consumer by a moment.
                    if (!warned && since.Elapsed >= stuckAfter / 2) LogSuspect(logger, problem);
                    warned |= since.Elapsed >= stuckAfter / 2;
                    continue;
                }

                LogStuck(logger, problem, since.Elapsed.TotalSeconds, ExitCode);
                _stuck = true;
                StuckCounter.Add(1);
                Environment.ExitCode = ExitCode;
                lifetime.StopApplication();
                return;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }

    /// <summary>What makes the bus look stuck now, or null: healthy and consuming, or the broker out of reach.</summary>
    private async Task<string?> ProblemAsync(BusHealthResult health, CancellationToken stoppingToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        IChannel channel;
        try
        {
            _connection ??= await new ConnectionFactory { Uri = broker, ClientProvidedName = "bus-watchdog", AutomaticRecoveryEnabled = false }
                .CreateConnectionAsync(timeout.Token);
            channel = await _connection.CreateChannelAsync(cancellationToken: timeout.Token);
        }
        catch (Exception) when (!stoppingToken.IsCancellationRequested)
        {
            await ForgetConnectionAsync();
            return null;
        }
        await using (channel)
        {
            if (health.Status != BusHealthStatus.Healthy) return $"{health.Status} ({health.Description})";
            foreach (var queue in ConsumedQueues(health))
            {
                try
                {
                    var declared = await channel.QueueDeclarePassiveAsync(queue, timeout.Token);
                    if (declared.ConsumerCount == 0) return $"Healthy, but its queue {queue} has no consumer on the broker";
                }
                catch (OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 404)
                {
                    return $"Healthy, but its queue {queue} is not on the broker";
                }
                catch (Exception) when (!stoppingToken.IsCancellationRequested)
                {
                    await ForgetConnectionAsync();
                    return null;
                }
            }
            return null;
        }
    }

    /// <summary>The durable queues of the bus's receive endpoints (not its own temporary one), from their addresses.</summary>
    private static IEnumerable<string> ConsumedQueues(BusHealthResult health) =>
        health.Endpoints.Values
            .Select(e => e.InputAddress)
            .Where(a => !a.Query.Contains("temporary=true", StringComparison.OrdinalIgnoreCase))
            .Select(a => Uri.UnescapeDataString(a.Segments[^1]));

    private async Task ForgetConnectionAsync()
    {
        if (_connection is not { } connection) return;
        _connection = null;
        try { await connection.DisposeAsync(); } catch (Exception) { /* it is being given up */ }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await ForgetConnectionAsync();
    }

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "The bus looks stuck: {Problem}, while the broker accepts connections. It is given Bus:StuckAfter to come back")]
    private static partial void LogSuspect(ILogger logger, string problem);

    [LoggerMessage(Level = LogLevel.Critical,
        Message = "The bus is stuck: {Problem} for {Seconds:0} s while the broker accepts connections. Stopping with exit code {ExitCode} to be started afresh")]
    private static partial void LogStuck(ILogger logger, string problem, double seconds, int exitCode);
}
