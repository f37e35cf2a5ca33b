using Npgsql;
using Verification.Testing;

namespace Verification.ServiceDefaults.Tests;

/// <summary>Both classes create the same table: that only works if each has its own database.</summary>
public abstract class PostgresIsolation(PostgresDatabaseFixture database)
{
    [Fact]
    public async Task Each_test_class_has_its_own_empty_database()
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using (var create = new NpgsqlCommand("CREATE TABLE marker (owner text NOT NULL); INSERT INTO marker VALUES (@owner)", connection))
        {
            create.Parameters.AddWithValue("owner", GetType().Name);
            await create.ExecuteNonQueryAsync();
        }
        await using var read = new NpgsqlCommand("SELECT array_agg(owner) FROM marker", connection);
        Assert.Equal([GetType().Name], (string[])(await read.ExecuteScalarAsync())!);
        Assert.NotEqual("postgres", connection.Database);
    }
}

public sealed class PostgresIsolationA(PostgresDatabaseFixture database) : PostgresIsolation(database), IClassFixture<PostgresDatabaseFixture>;

public sealed class PostgresIsolationB(PostgresDatabaseFixture database) : PostgresIsolation(database), IClassFixture<PostgresDatabaseFixture>;
