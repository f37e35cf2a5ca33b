using RabbitMQ.Client;

namespace Verification.Testing;

/// <summary>What an operator does with a broker's queues: read their depths, and redrive dead letters once the cause is gone.</summary>
public static class ErrorQueues
{
    /// <summary>Messages waiting in each queue of the virtual host (rabbitmqctl list_queues).</summary>
    public static IReadOnlyDictionary<string, long> Depths(this RabbitMqServer server, Uri vhost)
    {
        var output = ServerProcess.RunChecked("rabbitmqctl", $"-n {server.Node} list_queues -p {VirtualHostName(vhost)} -q --no-table-headers name messages");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t', StringSplitOptions.TrimEntries))
            .Where(p => p.Length == 2 && long.TryParse(p[1], out _)).ToDictionary(p => p[0], p => long.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>Each queue's ready and unacknowledged messages and consumers, as rabbitmqctl prints them: for a test's failure report.</summary>
    public static string Describe(this RabbitMqServer server, Uri vhost) =>
        ServerProcess.RunChecked("rabbitmqctl", $"-n {server.Node} list_queues -p {VirtualHostName(vhost)} -q name messages_ready messages_unacknowledged consumers");

    private static string VirtualHostName(Uri vhost) => Uri.UnescapeDataString(vhost.AbsolutePath.TrimStart('/'));

    /// <summary>
    /// Moves every message of each <c>&lt;queue&gt;_error</c> back to <c>&lt;queue&gt;</c> (through the exchange MassTransit
    /// binds to it), each one acknowledged only after the broker confirmed its republish: nothing is lost on the way.
    /// Returns how many were moved.
    /// </summary>
    public static async Task<int> RedriveAsync(this RabbitMqServer server, Uri vhost)
    {
        var errorQueues = server.Depths(vhost).Where(q => q.Key.EndsWith("_error", StringComparison.Ordinal) && q.Value > 0).Select(q => q.Key).ToList();
        if (errorQueues.Count == 0) return 0;
        var factory = new ConnectionFactory { Uri = vhost };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var moved = 0;
        foreach (var errorQueue in errorQueues)
        {
            var target = errorQueue[..^"_error".Length];
            while (await channel.BasicGetAsync(errorQueue, autoAck: false) is { } message)
            {
                var properties = new BasicProperties(message.BasicProperties);
                // The fault's description stays in the error queue's history, not on the retried message.
                if (properties.Headers is { } headers)
                    foreach (var key in headers.Keys.Where(k => k.StartsWith("MT-Fault", StringComparison.Ordinal) || k == "MT-Reason").ToList()) headers.Remove(key);
                await channel.BasicPublishAsync(target, "", mandatory: false, properties, message.Body);
                await channel.BasicAckAsync(message.DeliveryTag, multiple: false);
                moved++;
            }
        }
        return moved;
    }
}
