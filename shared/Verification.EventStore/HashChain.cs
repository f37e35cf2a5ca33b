using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace Verification.EventStore;

public sealed record ChainVerification(bool Valid, long EventsChecked, long? FirstBadPosition, string? Problem);

/// <summary>
/// Recomputes every stream's hash chain from the stored rows:
/// hash = SHA-256(previous hash of the stream ‖ UTF-8 of stream_id LF version LF id LF type LF
/// recorded_at (UTC, yyyy-MM-ddTHH:mm:ss.ffffffZ) LF data LF metadata), with data and metadata as
/// PostgreSQL prints jsonb (<c>data::text</c>); the first event of a stream has no previous hash.
/// </summary>
public static class HashChain
{
    public static byte[] Compute(byte[]? previous, string streamId, long version, Guid id, string type, DateTimeOffset recordedAt, string data, string metadata)
    {
        var text = string.Join('\n', streamId, version.ToString(CultureInfo.InvariantCulture), id.ToString(), type,
            recordedAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture), data, metadata);
        var bytes = Encoding.UTF8.GetBytes(text);
        return SHA256.HashData(previous is null ? bytes : [.. previous, .. bytes]);
    }

    public static async Task<ChainVerification> VerifyHashChainAsync(this EventStore store, CancellationToken cancellationToken = default)
    {
        await using var command = store.DataSource.CreateCommand(
            $"SELECT position, stream_id, version, id, type, recorded_at, data::text, metadata::text, hash FROM {store.Schema}.events ORDER BY stream_id, version");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        string? stream = null;
        byte[]? previous = null;
        long expectedVersion = 0, count = 0;
        (long Position, string Problem)? firstBad = null;
        while (await reader.ReadAsync(cancellationToken))
        {
            var position = reader.GetInt64(0);
            var streamId = reader.GetString(1);
            if (streamId != stream)
            {
                stream = streamId;
                previous = null;
                expectedVersion = 0;
            }
            var version = reader.GetInt64(2);
            expectedVersion++;
            var hash = Compute(previous, streamId, version, reader.GetGuid(3), reader.GetString(4), reader.GetFieldValue<DateTimeOffset>(5), reader.GetString(6), reader.GetString(7));
            var stored = reader.GetFieldValue<byte[]>(8);
            string? problem = version != expectedVersion ? $"stream {streamId} jumps to version {version}, expected {expectedVersion}"
                : !hash.AsSpan().SequenceEqual(stored) ? $"hash mismatch at stream {streamId} version {version}" : null;
            if (problem is not null && (firstBad is null || position < firstBad.Value.Position)) firstBad = (position, problem);
            previous = stored;
            count++;
        }
        return firstBad is { } bad ? new ChainVerification(false, count, bad.Position, bad.Problem) : new ChainVerification(true, count, null, null);
    }
}
