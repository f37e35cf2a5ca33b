using Npgsql;

namespace Verification.EventStore;

/// <summary>
/// Single-active work across instances: a session advisory lock held on an open connection. When the holder's
/// process dies its connection closes, the lock frees, and the next instance to try takes over.
/// </summary>
public sealed class Lease : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;

    private Lease(NpgsqlConnection connection) => _connection = connection;

    public static async Task<Lease?> TryAcquireAsync(EventStore store, string name, CancellationToken cancellationToken)
    {
        var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock(hashtextextended(@key, 0))", connection);
            command.Parameters.AddWithValue("key", $"verification:{store.Schema}:{name}");
            if ((bool)(await command.ExecuteScalarAsync(cancellationToken))!) return new Lease(connection);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
        await connection.DisposeAsync();
        return null;
    }

    /// <summary>Throws if the connection holding the lock is gone (the lock went with it).</summary>
    public async Task EnsureHeldAsync(CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT 1", _connection);
        await command.ExecuteScalarAsync(cancellationToken);
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
