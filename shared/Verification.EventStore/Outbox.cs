using System.Diagnostics;
using System.Text.Json;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Verification.EventStore;

/// <summary>
/// Publishes outbox messages after their transaction commits: in outbox order (so in order per stream), at
/// least once, each with its outbox message id as the MassTransit MessageId so consumers' inboxes dedupe.
/// One instance publishes at a time (advisory lock).
/// </summary>
public sealed partial class OutboxRelay(EventStore store, IServiceScopeFactory scopes, ILogger<OutboxRelay> logger) : BackgroundService
{
    private static readonly ActivitySource Source = new("Verification.Outbox");

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var lease = await Lease.TryAcquireAsync(store, "outbox", stoppingToken);
                if (lease is null)
                {
                    await Task.Delay(store.Options.PollInterval * 2, stoppingToken);
                    continue;
                }
                using var scope = scopes.CreateScope();
                var publisher = scope.ServiceProvider.GetRequiredService<IPublishEndpoint>();
                while (!stoppingToken.IsCancellationRequested)
                {
                    var wake = store.Signals.NextOutbox;
                    using var batch = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    batch.CancelAfter(store.Options.PublishTimeout);
                    if (await store.PublishPendingAsync(publisher, batch.Token) == 0)
                    {
                        await lease.EnsureHeldAsync(stoppingToken);
                        await Signals.WaitAsync(wake, store.Options.PollInterval, stoppingToken);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, e);
                await Task.Delay(store.Options.PollInterval, stoppingToken);
            }
        }
    }

    internal static Activity? StartPublishActivity(string? traceparent, string messageType) =>
        Source.StartActivity("outbox publish " + messageType, ActivityKind.Internal, traceparent ?? default(string));

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay failed; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}

public static class Outbox
{
    /// <summary>Publishes unsent messages through MassTransit in order and marks each sent. Returns how many were published.</summary>
    public static Task<int> PublishPendingAsync(this EventStore store, IPublishEndpoint publisher, CancellationToken cancellationToken = default, int limit = 200) =>
        store.PublishPendingAsync((message, id, correlation, ct) => publisher.Publish(message, message.GetType(), context =>
        {
            context.MessageId = id;
            context.CorrelationId = correlation;
        }, ct), cancellationToken, limit);

    /// <summary>
    /// The relay's loop body with the publish step given: (message, message id, correlation id). Streams are published
    /// side by side (their confirms overlap), each stream's messages one after another in order; one UPDATE marks the
    /// batch. A failure marks what was published and rethrows: the rest goes out, in order, next time.
    /// </summary>
    public static async Task<int> PublishPendingAsync(this EventStore store, Func<object, Guid, Guid?, CancellationToken, Task> publish,
        CancellationToken cancellationToken = default, int limit = 200)
    {
        var pending = new List<(long Position, Guid Id, string? Stream, string Type, string Message, string Headers)>();
        await using (var connection = await store.DataSource.OpenConnectionAsync(cancellationToken))
        await using (var read = new NpgsqlCommand(
            $"SELECT position, message_id, stream_id, message_type, message::text, headers::text FROM {store.Schema}.outbox WHERE sent_at IS NULL ORDER BY position LIMIT @limit", connection))
        {
            read.Parameters.AddWithValue("limit", limit);
            await read.PrepareAsync(cancellationToken);
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
                pending.Add((reader.GetInt64(0), reader.GetGuid(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.GetString(5)));
        }
        if (pending.Count == 0) return 0;
        var sent = new System.Collections.Concurrent.ConcurrentBag<long>();
        var streams = pending.GroupBy(p => p.Stream ?? p.Id.ToString()).Select(async group =>
        {
            foreach (var (position, id, _, type, json, headersJson) in group)
            {
                var headers = JsonSerializer.Deserialize<Dictionary<string, string?>>(headersJson, EventTypes.Json) ?? [];
                var message = store.Types.Deserialize(type, json);
                // The publish joins the trace of the request that wrote the message.
                using (OutboxRelay.StartPublishActivity(headers.GetValueOrDefault("traceparent"), type))
                {
                    await publish(message, id, Guid.TryParse(headers.GetValueOrDefault("correlationId"), out var correlation) ? correlation : null, cancellationToken);
                }
                sent.Add(position);
            }
        }).ToList();
        try
        {
            // WaitAsync: a publish that ignores cancellation (a confirm lost with its channel) is abandoned, not awaited
            // forever; what it sends after that goes again next time, and the consumer's inbox absorbs the repeat.
            await Task.WhenAll(streams).WaitAsync(cancellationToken);
        }
        finally
        {
            if (!sent.IsEmpty)
            {
                await using var connection = await store.DataSource.OpenConnectionAsync(CancellationToken.None);
                await using var mark = new NpgsqlCommand($"UPDATE {store.Schema}.outbox SET sent_at = now() WHERE position = ANY(@positions)", connection);
                mark.Parameters.AddWithValue("positions", sent.ToArray());
                await mark.PrepareAsync(CancellationToken.None);
                await mark.ExecuteNonQueryAsync(CancellationToken.None);
            }
        }
        return pending.Count;
    }

    public static async Task<long> UnsentCountAsync(this EventStore store, CancellationToken cancellationToken = default)
    {
        await using var command = store.DataSource.CreateCommand($"SELECT count(*) FROM {store.Schema}.outbox WHERE sent_at IS NULL");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Runs <paramref name="work"/> once per message id and consumer: the inbox mark is written in the same
    /// transaction as the consumer's appends, so a redelivered message changes nothing. False if already done.
    /// </summary>
    public static async Task<bool> HandleOnceAsync(this EventStore store, string consumer, Guid messageId, EventMetadata metadata,
        Func<EventSession, Task> work, CancellationToken cancellationToken = default)
    {
        await using (var connection = await store.DataSource.OpenConnectionAsync(cancellationToken))
        await using (var seen = new NpgsqlCommand($"SELECT 1 FROM {store.Schema}.inbox WHERE consumer = @c AND message_id = @m", connection))
        {
            seen.Parameters.AddWithValue("c", consumer);
            seen.Parameters.AddWithValue("m", messageId);
            await seen.PrepareAsync(cancellationToken);   // every message a consumer takes runs it
            if (await seen.ExecuteScalarAsync(cancellationToken) is not null) return false;
        }
        var session = store.OpenSession(metadata).MarkProcessed(consumer, messageId);
        await work(session);
        try
        {
            await session.SaveChangesAsync(cancellationToken);
            return true;
        }
        catch (DuplicateMessageException)
        {
            return false;
        }
    }
}
