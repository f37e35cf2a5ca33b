using Npgsql;

namespace Verification.Testing;

/// <summary>One service on its own database and RabbitMQ virtual host, for a test class.</summary>
public abstract class ServiceFixture : IAsyncLifetime
{
    public PostgresDatabaseFixture Postgres { get; } = new();
    public RabbitMqFixture Rabbit { get; } = new();
    public ServiceHost Host { get; private set; } = null!;

    /// <summary>Starts the service with these settings (its database and broker) added to its own.</summary>
    protected abstract Task<ServiceHost> StartAsync(IDictionary<string, string?> settings);

    public async Task InitializeAsync()
    {
        await Task.WhenAll(Postgres.InitializeAsync(), Rabbit.InitializeAsync());
        Host = await StartAsync(new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = Postgres.ConnectionString, ["Bus:RabbitMq"] = Rabbit.Amqp.ToString() });
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        await Task.WhenAll(Postgres.DisposeAsync(), Rabbit.DisposeAsync());
    }

    public async Task<long> CountAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(Postgres.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
