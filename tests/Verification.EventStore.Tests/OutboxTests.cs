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
