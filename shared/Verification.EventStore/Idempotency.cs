using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace Verification.EventStore;

/// <summary>What an Idempotency-Key found: a first request, a repeat (with its stored answer, if finished), or a clash.</summary>
public enum IdempotencyOutcome { First, Repeat, DifferentRequest }

/// <summary>
/// HTTP Idempotency-Key support. The key is claimed with the request's hash; the work itself must be
/// idempotent (derive ids from the key) so a crash between claim and answer is safely redone.
/// </summary>
public static class Idempotency
{
    public static async Task<(IdempotencyOutcome Outcome, string? Response)> ClaimAsync(this EventStore store, string scope, string key, string request,
        CancellationToken cancellationToken = default)
    {
        // A request the store could not keep is refused before it takes the key, which stays free for the corrected one.
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(Storable.Json(request, "the request")));
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"""
            WITH claimed AS (
                INSERT INTO {store.Schema}.idempotency (scope, key, request_hash) VALUES (@scope, @key, @hash)
                ON CONFLICT (scope, key) DO NOTHING RETURNING true AS first)
            SELECT true, NULL::bytea, NULL::text FROM claimed
            UNION ALL
            SELECT false, request_hash, response::text FROM {store.Schema}.idempotency WHERE scope = @scope AND key = @key AND NOT EXISTS (SELECT 1 FROM claimed)
            """, connection);
        command.Parameters.AddWithValue("scope", scope);
        command.Parameters.AddWithValue("key", key);
        command.Parameters.AddWithValue("hash", hash);
        await command.PrepareAsync(cancellationToken);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken) || reader.GetBoolean(0)) return (IdempotencyOutcome.First, null);
        return reader.GetFieldValue<byte[]>(1).AsSpan().SequenceEqual(hash)
            ? (IdempotencyOutcome.Repeat, reader.IsDBNull(2) ? null : reader.GetString(2))
            : (IdempotencyOutcome.DifferentRequest, null);
    }

    public static async Task CompleteAsync(this EventStore store, string scope, string key, string responseJson, CancellationToken cancellationToken = default)
    {
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"UPDATE {store.Schema}.idempotency SET response = @r::jsonb WHERE scope = @scope AND key = @key", connection);
        command.Parameters.AddWithValue("scope", scope);
        command.Parameters.AddWithValue("key", key);
        command.Parameters.AddWithValue("r", responseJson);
        await command.PrepareAsync(cancellationToken);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>A stable id from a caller's key: the same key always files the same thing.</summary>
    public static Guid DeriveId(string scope, string key, int index = 0)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{scope}\n{key}\n{index}"));
        hash[6] = (byte)((hash[6] & 0x0F) | 0x50);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true);
    }
}
