using System.Diagnostics;
using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;

namespace Verification.ServiceDefaults;

/// <summary>
/// Stops the service, with exit code <see cref="ExitCode"/>, when its bus has stayed unhealthy for
/// <c>Bus:StuckAfter</c> (default 1 min; 0 turns it off) while the broker accepts a fresh connection: the bus is stuck,
/// and only a new process gets it back. MassTransit 8.4 on RabbitMQ.Client 7.1 sometimes came back from a broker
/// restart with a receive endpoint that never consumed again (the fault suite saw queues of thousands of messages with
/// no consumer for minutes, the endpoint "Degraded", nothing in the log). 8.5.12 on RabbitMQ.Client 7.2.2, whose fixes
/// include recovery and publisher-confirm races, has not shown it in the fault suite, but nothing says it cannot
/// happen, and restarting the bus in the process still drops an endpoint that was faulted when it stopped
/// (BusRecoveryTests), so this stays. The supervisor starts the service again (a container's restart policy,
/// Kubernetes, <c>scripts/run.sh --distributed</c>, the tests' distributed system); the outbox and the inbox make the
/// restart lose and repeat nothing. A broker that is down is not a stuck bus: MassTransit reconnects once it is back.
/// </summary>
public sealed partial class BusWatchdog(IBusControl bus, Uri broker, TimeSpan stuckAfter, IHostApplicationLifetime lifetime, ILogger<BusWatchdog> logger)
    : BackgroundService
{
    /// <summary>EX_TEMPFAIL: stopped because the bus was stuck; start it again.</summary>
    public const int ExitCode = 75;

    private static readonly Counter<long> StuckCounter = Telemetry.Meter.CreateCounter<long>("verification.bus.stuck", description: "services stopped because their bus was stuck");
    private volatile bool _stuck;

    /// <summary>True once this instance found the bus stuck and stopped the service.</summary>
    public bool Stuck => _stuck;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Real time, not the service's clock: this is about connections, and tests move the service's clock by hours.
        using var timer = new PeriodicTimer(TimeSpan.FromTicks(Math.Clamp(stuckAfter.Ticks / 6, TimeSpan.FromMilliseconds(250).Ticks, TimeSpan.FromSeconds(5).Ticks)));
        var since = (Stopwatch?)null;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var health = bus.CheckHealth();
                if (health.Status == BusHealthStatus.Healthy || !await BrokerAcceptsAsync(stoppingToken))
                {
                    since = null;
                    continue;
                }
                since ??= Stopwatch.StartNew();
                if (since.Elapsed < stuckAfter) continue;

                LogStuck(logger, since.Elapsed.TotalSeconds, health.Status, health.Description, ExitCode);
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

    /// <summary>Whether a new connection and channel to the bus's virtual host open within a few seconds.</summary>
    private async Task<bool> BrokerAcceptsAsync(CancellationToken stoppingToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            var factory = new ConnectionFactory { Uri = broker, ClientProvidedName = "bus-watchdog", AutomaticRecoveryEnabled = false };
            await using var connection = await factory.CreateConnectionAsync(timeout.Token);
            await using (await connection.CreateChannelAsync(cancellationToken: timeout.Token)) { }
            await connection.CloseAsync(timeout.Token);
            return true;
        }
        catch (Exception) when (!stoppingToken.IsCancellationRequested)
        {
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Critical,
        Message = "The bus has been {Status} for {Seconds:0} s ({Description}) while the broker accepts connections: it is stuck. Stopping with exit code {ExitCode} to be started afresh")]
    private static partial void LogStuck(ILogger logger, double seconds, BusHealthStatus status, string? description, int exitCode);
}
