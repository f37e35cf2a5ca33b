using Npgsql;

namespace Verification.Testing;

/// <summary>
/// One PostgreSQL server per test process: the one named by VERIFICATION_TEST_POSTGRES,
/// or a private cluster started from the local binaries and removed when the process exits.
/// </summary>
public sealed class PostgresServer
{
    public const string Variable = "VERIFICATION_TEST_POSTGRES";
    private static readonly Lazy<PostgresServer> Shared = new(Start, LazyThreadSafetyMode.ExecutionAndPublication);
    private readonly string? _directory;

    private PostgresServer(string connectionString, string? directory = null)
    {
        ConnectionString = connectionString;
        _directory = directory;
    }

    /// <summary>Connection string of a superuser on the server's maintenance database.</summary>
    public string ConnectionString { get; }

    public static PostgresServer Instance => Shared.Value;

    /// <summary>Creates a fresh, empty database and returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix)
    {
        var name = $"{Sanitize(prefix)}_{Guid.NewGuid():N}"[..Math.Min(Sanitize(prefix).Length + 33, 63)];
        await using (var connection = new NpgsqlConnection(ConnectionString))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
            await command.ExecuteNonQueryAsync();
        }
        return new NpgsqlConnectionStringBuilder(ConnectionString) { Database = name, Pooling = true, MaxPoolSize = 40 }.ConnectionString;
    }

    public async Task DropDatabaseAsync(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database;
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync();
    }

    private static string Sanitize(string prefix) =>
        new string(prefix.ToLowerInvariant().Where(c => char.IsAsciiLetterOrDigit(c) || c == '_').ToArray()) is { Length: > 0 } s ? s[..Math.Min(s.Length, 24)] : "t";

    /// <summary>
    /// A fast restart (clean shutdown, then start on the same port) of a server this process started, for fault injection;
    /// connections are cut and clients reconnect.
    /// </summary>
    public void Restart()
    {
        if (_directory is null) throw new InvalidOperationException($"only a private server can be restarted, not the one {Variable} names");
        ServerProcess.RunAs("postgres", "pg_ctl", $"-D {_directory}/data -l {_directory}/server.log -m fast -w restart", TimeSpan.FromSeconds(60));
    }

    private static PostgresServer Start()
    {
        var configured = Environment.GetEnvironmentVariable(Variable);
        return string.IsNullOrWhiteSpace(configured) ? StartPrivate() : new PostgresServer(configured);
    }

    /// <summary>A server of this process alone (whatever <see cref="Variable"/> says), e.g. one a test may restart.</summary>
    public static PostgresServer StartPrivate()
    {
        ServerProcess.CleanStale("pg", dir => ServerProcess.RunAs("postgres", "pg_ctl", $"-D {dir}/data -m immediate -w stop"));
        var dir = ServerProcess.NewServerDirectory("pg");
        var data = Path.Combine(dir, "data");
        var port = ServerProcess.FreePort();
        try
        {
            Directory.CreateDirectory(data);
            ServerProcess.Chown("postgres", dir);
            ServerProcess.RunAs("postgres", "initdb", $"-D {data} -A trust -U postgres --no-sync -E UTF8");
            // fsync off: test data is thrown away; durability is measured in the benchmark, not here.
            ServerProcess.RunAs("postgres", "pg_ctl",
                $"-D {data} -l {dir}/server.log -o \"-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400\" -w start");
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(
                "PostgreSQL is needed for this test and could not be started. Either set " + Variable +
                " to a connection string, or install the PostgreSQL 15 server binaries (initdb, pg_ctl on PATH; " +
                "Debian: apt-get install -y postgresql). Cause: " + e.Message, e);
        }
        var stop = ServerProcess.IsRoot ? $"runuser -u postgres -- pg_ctl -D {data} -m immediate -w stop" : $"pg_ctl -D {data} -m immediate -w stop";
        ServerProcess.StopWhenThisProcessExits(dir, stop);
        return new PostgresServer($"Host=127.0.0.1;Port={port};Username=postgres;Database=postgres;Pooling=false", dir);
    }
}

/// <summary>Gives each test class its own fresh database on the shared server.</summary>
public class PostgresDatabaseFixture : IAsyncLifetime
{
    public string ConnectionString { get; private set; } = "";

    public virtual async Task InitializeAsync() =>
        ConnectionString = await PostgresServer.Instance.CreateDatabaseAsync(GetType().Name);

    public virtual Task DisposeAsync() => PostgresServer.Instance.DropDatabaseAsync(ConnectionString);
}
