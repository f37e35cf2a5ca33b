using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Verification.EventStore;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// A store keyed by <paramref name="key"/> (the service's name; several can live in one process), on its own
    /// data source: migrated at start-up, then its projection daemon, outbox relay (which publishes through
    /// MassTransit's IPublishEndpoint) and <see cref="StoreMetrics"/>. Resolve it with <c>[FromKeyedServices(key)] EventStore</c>.
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
        services.AddSingleton<IHostedService>(sp => new StoreMetrics(sp.GetRequiredKeyedService<EventStore>(key)));
        return services;
    }

    /// <summary>
    /// The store opens a pooled connection per call: Npgsql's reset on return (seven statements: RESET ALL, UNLISTEN,
    /// advisory unlock, ...) ran thousands of times a second under load, for session state the store never leaves behind
    /// (leases unlock before they return their connection, the listener unlistens). A connection string that sets it keeps
    /// its choice. The statements the store runs all the time it prepares itself, explicitly (unprepared, PostgreSQL parsed
    /// and planned each one on every call: a third of an append's server time). Npgsql's auto-preparation stays off: when
    /// the execution that auto-prepares a statement fails on its input (PostgreSQL refusing a NUL in text, at bind), the
    /// connection's next execution of it runs on the server and then fails in the client, so a write was stored while its
    /// caller was told it failed (Npgsql 10.0.0 and 10.0.3; with it on, the test
    /// A_statement_refused_on_its_input_leaves_the_connection_fit_for_the_next_one fails).
    /// </summary>
    public static string WithStoreSettings(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (!connectionString.Contains("Reset On Close", StringComparison.OrdinalIgnoreCase)) builder.NoResetOnClose = true;
        return builder.ConnectionString;
    }

    private sealed class Migrator(EventStore store) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => store.MigrateAsync(cancellationToken);
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
