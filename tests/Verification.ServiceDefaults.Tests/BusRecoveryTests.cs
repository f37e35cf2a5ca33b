using System.Net;
using System.Text.Json;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Verification.Testing;

namespace Verification.ServiceDefaults.Tests;

/// <summary>The bus watchdog, on a broker of this test's own (it is stopped and started, which would cut every other test off).</summary>
public sealed class BusRecoveryTests : IClassFixture<PostgresDatabaseFixture>
{
    private readonly PostgresDatabaseFixture _postgres;

    public BusRecoveryTests(PostgresDatabaseFixture postgres) => _postgres = postgres;

    [Fact]
    public async Task A_broker_outage_is_waited_out_but_a_bus_stuck_while_the_broker_answers_stops_the_service_with_exit_code_75()
    {
        var broker = await RabbitMqServer.StartPrivateAsync();
        await using var host = await SmokeHost.StartAsync(broker.Amqp, _postgres.ConnectionString,
            settings: new Dictionary<string, string?> { ["Bus:StuckAfter"] = "00:00:12" });
        var watchdog = host.Services.GetRequiredService<BusWatchdog>();
        var bus = host.Services.GetRequiredService<IBusControl>();
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        await PingAsync(host, "before");

        async Task StopBrokerAsync()
        {
            broker.StopApp();
            await Eventually.True(() => Task.FromResult(bus.CheckHealth().Status != BusHealthStatus.Healthy), TimeSpan.FromSeconds(30), "the bus to notice the broker is gone");
        }

        // Down for longer than StuckAfter: the bus is unhealthy, but nothing can connect, so it is not stuck; MassTransit
        // reconnects by itself once the broker is back, at its next retry. (A bounded wait for something that must not
        // happen.) Its receive endpoints retry 3 s after the first failure, then about 12 s later (measured: healthy
        // 0.2–10 s after a 6 s outage ended, which a StuckAfter of 2 s took for stuck), and at most 30 s apart, below the
        // 1 min default; a 13 s outage ends just before the second retry.
        await StopBrokerAsync();
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(13));
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the service stopped while the broker was merely down");
        }
        finally
        {
            await broker.StartAppAsync();
        }
        await PingAsync(host, "after the outage");
        Assert.False(watchdog.Stuck);

        // A stuck bus: restarted while the broker is down, it never gets its faulted receive endpoint back (MassTransit
        // 8.4 counts it as started and refuses to start it; 8.5.12 stays unhealthy too), the state the fault suite met
        // after broker restarts on 8.4. The broker answers, the bus stays unhealthy: the watchdog stops the service for
        // its supervisor to start it afresh.
        await StopBrokerAsync();
        await bus.StopAsync();
        var starting = bus.StartAsync();
        await broker.StartAppAsync();
        var refused = await Record.ExceptionAsync(() => starting);
        Assert.True(refused is null or InvalidOperationException, $"the restart failed otherwise: {refused}");
        await AssertStoppedAsStuckAsync(lifetime, watchdog, "the watchdog to stop the service whose bus is stuck");
    }

    [Fact]
    public async Task A_queue_left_without_its_consumer_while_the_bus_says_healthy_stops_the_service_with_exit_code_75()
    {
        var server = await RabbitMqServer.GetAsync();
        var vhost = server.CreateVirtualHost("bus-unconsumed");
        try
        {
            await using var host = await SmokeHost.StartAsync(vhost, _postgres.ConnectionString,
                settings: new Dictionary<string, string?> { ["Bus:StuckAfter"] = "00:00:06" });
            var watchdog = host.Services.GetRequiredService<BusWatchdog>();
            var bus = host.Services.GetRequiredService<IBusControl>();
            var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
            await PingAsync(host, "before");

            // Healthy and consuming for longer than StuckAfter: no false alarm (a bounded wait for what must not happen).
            await Task.Delay(TimeSpan.FromSeconds(8));
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the service stopped while its bus consumed");

            // The broker drops the consumer and the client is not told: MassTransit still reports healthy.
            Assert.Equal(1, server.CancelConsumersBehindClientsBack(vhost, "smoke-pinged"));
            Assert.Equal(BusHealthStatus.Healthy, bus.CheckHealth().Status);
            await AssertStoppedAsStuckAsync(lifetime, watchdog, "the watchdog to stop the service whose queue has no consumer");
        }
        finally
        {
            server.DeleteVirtualHost(vhost);
        }
    }

    private static async Task AssertStoppedAsStuckAsync(IHostApplicationLifetime lifetime, BusWatchdog watchdog, string what)
    {
        try
        {
            await Eventually.True(() => Task.FromResult(lifetime.ApplicationStopping.IsCancellationRequested), TimeSpan.FromSeconds(60), what);
            Assert.True(watchdog.Stuck);
            Assert.Equal(BusWatchdog.ExitCode, Environment.ExitCode);
        }
        finally
        {
            Environment.ExitCode = 0;   // this is the test host's process
        }
    }

    private static async Task PingAsync(SmokeHost host, string text)
    {
        // A publish cut off by the broker going away is tried again, as a client of the API would; one accepted is
        // confirmed by the broker, so it must then be consumed.
        Guid id = default;
        await Eventually.True(async () =>
        {
            using var request = host.Post("/pings", $$"""{"text":"{{text}}","tone":"calm"}""", Roles.Monitor);
            using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                using var response = await host.Client.SendAsync(request, cancel.Token);
                if (response.StatusCode != HttpStatusCode.Accepted) return false;
                using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                id = body.RootElement.GetProperty("id").GetGuid();
                return true;
            }
            catch (Exception e) when (e is OperationCanceledException or HttpRequestException) { return false; }
        }, TimeSpan.FromSeconds(90), $"the '{text}' ping to be accepted");
        var received = host.Services.GetRequiredService<ReceivedPings>();
        await Eventually.True(() => Task.FromResult(received.TryGet(id, out _)), TimeSpan.FromSeconds(60), $"the '{text}' ping to be consumed");
    }
}
