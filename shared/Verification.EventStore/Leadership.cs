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
            await ReleaseAsync(connection);   // a cancelled wait may have been granted the lock on the server all the same
            throw;
        }
        await connection.DisposeAsync();
        return null;
    }

    /// <summary>Waits for the lock; <paramref name="shared"/> holders exclude only exclusive ones.</summary>
    public static async Task<Lease> AcquireAsync(EventStore store, string name, bool shared, CancellationToken cancellationToken)
    {
        var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand($"SELECT {(shared ? "pg_advisory_lock_shared" : "pg_advisory_lock")}(hashtextextended(@key, 0))", connection);
            command.Parameters.AddWithValue("key", $"verification:{store.Schema}:{name}");
            await command.ExecuteNonQueryAsync(cancellationToken);
            return new Lease(connection);
        }
        catch
        {
            await ReleaseAsync(connection);   // a cancelled wait may have been granted the lock on the server all the same
            throw;
        }
    }

    /// <summary>Throws if the connection holding the lock is gone (the lock went with it).</summary>
    public async Task EnsureHeldAsync(CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT 1", _connection);
        await command.ExecuteScalarAsync(cancellationToken);
    }

    public ValueTask DisposeAsync() => ReleaseAsync(_connection);

    /// <summary>Pooled connections are not reset on return (see AddEventStore): session locks are released here.</summary>
    private static async ValueTask ReleaseAsync(NpgsqlConnection connection)
    {
        try
        {
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", connection);
            await unlock.ExecuteNonQueryAsync();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // The connection is gone, and its locks with it.
        }
        await connection.DisposeAsync();
    }
}
