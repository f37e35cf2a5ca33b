using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Verification.EventStore;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// The store on the registered <see cref="NpgsqlDataSource"/>: migrated at start-up, then the projection
    /// daemon and the outbox relay (which publishes through MassTransit's IPublishEndpoint).
    /// </summary>
    public static IServiceCollection AddEventStore(this IServiceCollection services, Action<EventStoreOptions> configure)
    {
        var options = new EventStoreOptions();
        configure(options);
        services.AddSingleton(options);
        services.AddSingleton(sp => new EventStore(sp.GetRequiredService<NpgsqlDataSource>(), options));
        services.AddHostedService<Migrator>();
        services.AddHostedService<ProjectionDaemon>();
        services.AddHostedService<OutboxRelay>();
        return services;
    }

    private sealed class Migrator(EventStore store) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => store.MigrateAsync(cancellationToken);
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
