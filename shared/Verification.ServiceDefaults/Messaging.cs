using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Verification.ServiceDefaults;

/// <summary>
/// The bus from settings. <c>Bus:Transport</c> is <c>RabbitMq</c> (default when <c>Bus:RabbitMq</c>
/// is set) or <c>InMemory</c> (single-process mode). Transport policy lives here, never in consumers.
/// </summary>
public static class Messaging
{
    /// <summary>
    /// Messages RabbitMQ hands each consumer before an ack (<c>Bus:PrefetchCount</c>). MassTransit's default is twice
    /// the core count, 4 here: consumers then wait on acks rather than work, a third of the broker's rate on this machine.
    /// </summary>
    public const int DefaultPrefetchCount = 32;

    internal static void AddMessaging(this WebApplicationBuilder builder, ServiceDefaultsOptions options)
    {
        var settings = builder.Configuration.GetSection("Bus");
        var rabbit = settings["RabbitMq"];
        var transport = settings["Transport"] ?? (string.IsNullOrWhiteSpace(rabbit) ? "InMemory" : "RabbitMq");
        var retries = settings.GetValue("RetryLimit", 3);
        var prefetch = settings.GetValue("PrefetchCount", DefaultPrefetchCount);

        builder.Services.AddMassTransit(bus =>
        {
            // Queues are named "<service>-<consumer>" in kebab case, so every service owns its own.
            bus.SetEndpointNameFormatter(new KebabCaseEndpointNameFormatter(options.ServiceName, false));
            foreach (var configure in options.Bus) configure(bus);

            bus.AddConfigureEndpointsCallback((_, _, endpoint) =>
            {
                if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbitEndpoint) rabbitEndpoint.SetQuorumQueue();
                // Bounded in-process retry; afterwards the message goes to the endpoint's _error queue.
                endpoint.UseMessageRetry(r => r.Exponential(retries, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(100)));
            });

            if (string.Equals(transport, "InMemory", StringComparison.OrdinalIgnoreCase))
            {
                bus.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));
            }
            else if (string.Equals(transport, "RabbitMq", StringComparison.OrdinalIgnoreCase))
            {
                if (string.IsNullOrWhiteSpace(rabbit))
                    throw new InvalidOperationException("Bus:Transport is RabbitMq but Bus:RabbitMq (an amqp:// URI) is not set.");
                bus.UsingRabbitMq((context, cfg) =>
                {
                    cfg.Host(new Uri(rabbit), h => h.PublisherConfirmation = true);
                    cfg.PrefetchCount = prefetch;
                    cfg.ConfigureEndpoints(context);
                });
            }
            else
            {
                throw new InvalidOperationException($"Bus:Transport '{transport}' is unknown: use RabbitMq or InMemory.");
            }
        });
        var stuckAfter = settings.GetValue("StuckAfter", TimeSpan.FromMinutes(1));
        if (string.Equals(transport, "RabbitMq", StringComparison.OrdinalIgnoreCase) && stuckAfter > TimeSpan.Zero)
        {
            builder.Services.AddSingleton(sp => ActivatorUtilities.CreateInstance<BusWatchdog>(sp, new Uri(rabbit!), stuckAfter));
            builder.Services.AddHostedService(sp => sp.GetRequiredService<BusWatchdog>());
        }
        builder.Services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(30);
            o.StopTimeout = TimeSpan.FromSeconds(10);
        });
    }
}
