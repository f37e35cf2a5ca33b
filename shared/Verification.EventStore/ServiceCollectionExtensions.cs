using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Verification.EventStore;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// A store keyed by <paramref name="key"/> (the service's name; several can live in one process), on its own
    /// data source: migrated at start-up, then its projection daemon and outbox relay (which publishes through
    /// MassTransit's IPublishEndpoint). Resolve it with <c>[FromKeyedServices(key)] EventStore</c>.
    /// </summary>
    public static IServiceCollection AddEventStore(this IServiceCollection services, string key, string connectionString, Action<EventStoreOptions> configure)
    {
        var options = new EventStoreOptions { Schema = key };
        configure(options);
        services.AddKeyedSingleton(key, (_, _) => new NpgsqlDataSourceBuilder(WithStoreSettings(connectionString)) { Name = key }.Build());
        services.AddKeyedSingleton(key, (sp, _) => new EventStore(sp.GetRequiredKeyedService<NpgsqlDataSource>(key), options));
        services.AddSingleton<IHostedService>(sp => new Migrator(sp.GetRequiredKeyedService<EventStore>(key)));
        services.AddSingleton<IHostedService>(sp => new ProjectionDaemon(sp.GetRequiredKeyedService<EventStore>(key), sp.GetRequiredService<ILogger<ProjectionDaemon>>()));
        services.AddSingleton<IHostedService>(sp => new OutboxRelay(sp.GetRequiredKeyedService<EventStore>(key), sp.GetRequiredService<IServiceScopeFactory>(), sp.GetRequiredService<ILogger<OutboxRelay>>()));
        return services;
    }

    /// <summary>
    /// The store runs a handful of statements all the time; unprepared, PostgreSQL parsed and planned each one on every
    /// call (a third of an append's server time). And it opens a pooled connection per call: Npgsql's reset on return
    /// (seven statements: RESET ALL, UNLISTEN, advisory unlock, ...) ran thousands of times a second under load, for
    /// session state the store never leaves behind (leases unlock before they return their connection, the listener
    /// unlistens). A connection string that sets either option keeps its choice.
    /// </summary>
    public static string WithStoreSettings(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (builder.MaxAutoPrepare == 0 && !connectionString.Contains("Auto Prepare", StringComparison.OrdinalIgnoreCase))
        {
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }
        if (!connectionString.Contains("Reset On Close", StringComparison.OrdinalIgnoreCase)) builder.NoResetOnClose = true;
        return builder.ConnectionString;
    }

    private sealed class Migrator(EventStore store) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => store.MigrateAsync(cancellationToken);
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
