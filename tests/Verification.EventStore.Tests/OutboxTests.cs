using MassTransit;
using Verification.EventStore;
using Verification.Testing;

namespace Verification.EventStore.Tests;

[MessageUrn("verification:test:incident-noted", false)]
public sealed record IncidentNotedMessage(string IncidentId);

public sealed class OutboxServers : IAsyncLifetime
{
    public StoreFixture Postgres { get; } = new();
    public RabbitMqFixture Rabbit { get; } = new();
    public Task InitializeAsync() => Task.WhenAll(Postgres.InitializeAsync(), Rabbit.InitializeAsync());
    public Task DisposeAsync() => Task.WhenAll(Postgres.DisposeAsync(), Rabbit.DisposeAsync());
}

public sealed class OutboxTests(OutboxServers servers) : IClassFixture<OutboxServers>
{
    private sealed class Receipts(EventStore store) : IConsumer<IncidentNotedMessage>
    {
        public static int Deliveries;

        public async Task Consume(ConsumeContext<IncidentNotedMessage> context)
        {
            await store.HandleOnceAsync("receipts", context.MessageId!.Value, EventMetadata.Empty, session =>
            {
                session.Append("receipt-" + context.Message.IncidentId, "receipt", null, new Revised(context.Message.IncidentId, 1));
                return Task.CompletedTask;
            });
            Interlocked.Increment(ref Deliveries); // counted once handled, so the test sees the duplicate's outcome
        }
    }

    [Fact]
    public async Task A_message_the_relay_cannot_read_holds_back_its_own_stream_only_says_why_and_goes_out_in_order_once_readable()
    {
        // The writer knows a message type the relay's code does not (yet): a rolling deployment, a type renamed.
        var writer = new EventStore(servers.Postgres.DataSource, StoreFixture.Options("es_unreadable"));
        writer.Types.Register<IncidentNotedMessage>("incident_noted_message").Register<Revised>("revised_message");
        await writer.MigrateAsync();
        var relay = new EventStore(servers.Postgres.DataSource, StoreFixture.Options("es_unreadable"));
        relay.Types.Register<IncidentNotedMessage>("incident_noted_message");
        await writer.OpenSession().Append("held", "incident", 0, new Noted("held", "north", 1))
            .Publish(new IncidentNotedMessage("held-1"), "held").Publish(new Revised("held", 2), "held").Publish(new IncidentNotedMessage("held-3"), "held")
            .SaveChangesAsync();
        // More of the other streams than one page holds, so a stream held back cannot take the pages from them.
        for (var i = 0; i < 12; i++)
            await writer.OpenSession().Append($"free-{i}", "incident", 0, new Noted($"free-{i}", "north", 1)).Publish(new IncidentNotedMessage($"free-{i}"), $"free-{i}").SaveChangesAsync();

        Assert.Equal(15, (await StoreFixture.GaugesAsync(relay))["unsent"]);
        var published = new System.Collections.Concurrent.ConcurrentQueue<string>();
        Task Publish(object message, Guid id, Guid? correlation, CancellationToken ct)
        {
            published.Enqueue(message switch { IncidentNotedMessage m => m.IncidentId, Revised r => $"{r.IncidentId}-{r.Count}", _ => "?" });
            return Task.CompletedTask;
        }
        var refused = await Assert.ThrowsAsync<OutboxMessageUnreadableException>(() => relay.PublishPendingAsync(Publish, limit: 5));
        Assert.Equal("revised_message", refused.MessageType);
        Assert.Contains("unknown event type 'revised_message'", refused.Message, StringComparison.Ordinal);
        // Until it is due again, the held stream is passed over and the others go out, page after page.
        while (await relay.PublishPendingAsync(Publish, limit: 5) > 0) { }
        string[] before = ["held-1", .. Enumerable.Range(0, 12).Select(i => $"free-{i}")];
        Assert.Equal(before.Order(StringComparer.Ordinal), published.Order(StringComparer.Ordinal));
        Assert.Equal(2, await servers.Postgres.ScalarAsync("SELECT count(*) FROM es_unreadable.outbox WHERE sent_at IS NULL"));
        Assert.Equal(1, await servers.Postgres.ScalarAsync(
            "SELECT count(*) FROM es_unreadable.outbox WHERE message_type = 'revised_message' AND attempts = 1 AND retry_at > now() AND failure LIKE 'System.InvalidOperationException: unknown event type%'"));

        // Code that knows the type comes: once due, the held message and the one behind it go out, in order, once.
        relay.Types.Register<Revised>("revised_message");
        await Eventually.True(async () =>
        {
            try { await relay.PublishPendingAsync(Publish); }
            catch (OutboxMessageUnreadableException) { }
            return await relay.UnsentCountAsync() == 0;
        }, TimeSpan.FromSeconds(30), "the held stream to go out once its message can be read");
        Assert.Equal(["held-2", "held-3"], published.Skip(13).ToArray());
        Assert.Equal(15, published.Count);
        Assert.Equal(0, (await StoreFixture.GaugesAsync(relay))["unsent"]);
    }

    [Fact]
    public async Task A_crash_after_commit_loses_nothing_and_a_crash_after_publish_duplicates_nothing()
    {
        var options = StoreFixture.Options("es_outbox");
        options.Types.Register<IncidentNotedMessage>("incident_noted");
        var store = new EventStore(servers.Postgres.DataSource, options);
        await store.MigrateAsync();
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(servers.Rabbit.Amqp);
            cfg.ReceiveEndpoint("receipts", e => e.Consumer(() => new Receipts(store)));
        });
        await bus.StartAsync();
        try
        {
            // Commit, then "crash" before the relay publishes: the message waits in the outbox.
            await store.OpenSession().Append("inc-1", "incident", 0, new Noted("inc-1", "Kyiv", 1)).Publish(new IncidentNotedMessage("inc-1"), "inc-1").SaveChangesAsync();
            Assert.Equal(1, await store.UnsentCountAsync());

            // The restarted relay publishes, then "crashes" before marking the message sent.
            await Assert.ThrowsAsync<IOException>(() => store.PublishPendingAsync(async (message, id, correlation, ct) =>
            {
                await bus.Publish(message, message.GetType(), c => c.MessageId = id, ct);
                throw new IOException("process killed");
            }));
            Assert.Equal(1, await store.UnsentCountAsync());

            // The next relay publishes it again and marks it.
            Assert.Equal(1, await store.PublishPendingAsync(bus));
            Assert.Equal(0, await store.UnsentCountAsync());
            Assert.Equal(0, await store.PublishPendingAsync(bus));

            await Eventually.True(() => Task.FromResult(Volatile.Read(ref Receipts.Deliveries) == 2), what: "both deliveries");
            await Eventually.True(async () => (await store.ReadStreamAsync("receipt-inc-1")).Count == 1, what: "the receipt");
            Assert.Single(await store.ReadStreamAsync("receipt-inc-1"));
            Assert.Equal(1, await servers.Postgres.ScalarAsync("SELECT count(*) FROM es_outbox.inbox WHERE consumer = 'receipts'"));
        }
        finally
        {
            await bus.StopAsync();
        }
    }
}
