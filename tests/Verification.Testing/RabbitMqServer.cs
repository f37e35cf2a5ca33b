namespace Verification.Testing;

/// <summary>
/// One RabbitMQ node per test process: the one named by VERIFICATION_TEST_RABBITMQ (with
/// VERIFICATION_TEST_RABBITMQ_NODE naming the node for rabbitmqctl), or a private node
/// started on loopback and stopped when the process exits.
/// </summary>
public sealed class RabbitMqServer
{
    public const string Variable = "VERIFICATION_TEST_RABBITMQ";
    public const string NodeVariable = "VERIFICATION_TEST_RABBITMQ_NODE";
    private static readonly Lazy<Task<RabbitMqServer>> Shared = new(StartAsync, LazyThreadSafetyMode.ExecutionAndPublication);
    private RabbitMqServer(Uri amqp, string? node)
    {
        Amqp = amqp;
        Node = node;
    }

    /// <summary>The broker's AMQP URI on the default virtual host.</summary>
    public Uri Amqp { get; }

    /// <summary>The node name for rabbitmqctl, when the node is local.</summary>
    public string? Node { get; }

    public static Task<RabbitMqServer> GetAsync() => Shared.Value;

    /// <summary>Creates a virtual host (full permissions for the guest user) and returns its URI.</summary>
    public Uri CreateVirtualHost(string prefix)
    {
        if (Node is null)
            throw new InvalidOperationException($"{Variable} is set but {NodeVariable} is not: a virtual host per test class needs rabbitmqctl and the node name.");
        var name = $"{prefix}-{Guid.NewGuid():N}";
        ServerProcess.RunChecked("rabbitmqctl", $"-n {Node} add_vhost {name}");
        ServerProcess.RunChecked("rabbitmqctl", $"-n {Node} set_permissions -p {name} guest \".*\" \".*\" \".*\"");
        return new UriBuilder(Amqp) { Path = "/" + Uri.EscapeDataString(name) }.Uri;
    }

    public void DeleteVirtualHost(Uri uri)
    {
        if (Node is null) return;
        var name = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        ServerProcess.Run("rabbitmqctl", $"-n {Node} delete_vhost {name}");
    }

    /// <summary>Stops the broker application (every connection dropped, the node stays up), for fault injection.</summary>
    public void StopApp() => ServerProcess.RunChecked("rabbitmqctl", $"-n {Node ?? throw new InvalidOperationException($"{NodeVariable} is not set")} stop_app", timeout: TimeSpan.FromSeconds(60));

    /// <summary>Starts the broker application again and waits until it accepts connections.</summary>
    public async Task StartAppAsync()
    {
        ServerProcess.RunChecked("rabbitmqctl", $"-n {Node ?? throw new InvalidOperationException($"{NodeVariable} is not set")} start_app", timeout: TimeSpan.FromSeconds(60));
        await ServerProcess.WaitForPortAsync(Amqp.Port, TimeSpan.FromSeconds(60), () => "(rabbitmqctl start_app returned)");
    }

    /// <summary>
    /// Cancels every consumer of <paramref name="queue"/> on the broker without telling its client: a basic.cancel with
    /// nowait, done by the consumer's own channel as if its client had sent it (rabbit_channel:do/2, RabbitMQ 3.x). The
    /// client goes on believing it consumes, as MassTransit was seen to after broker restarts. Returns how many.
    /// </summary>
    public int CancelConsumersBehindClientsBack(Uri virtualHost, string queue)
    {
        var node = Node ?? throw new InvalidOperationException($"{NodeVariable} is not set");
        var vhost = Uri.UnescapeDataString(virtualHost.AbsolutePath.TrimStart('/'));
        var consumers = ServerProcess.RunChecked("rabbitmqctl", $"-n {node} list_consumers -q -p {(vhost.Length == 0 ? "/" : vhost)} queue_name channel_pid consumer_tag")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split('\t'))
            .Where(fields => fields.Length == 3 && fields[0] == queue)
            .ToList();
        foreach (var fields in consumers)
        {
            // Atoms in single quotes carry the pid and the tag: no double quotes to survive argument parsing.
            var cancel = $"rabbit_channel:do(rabbit_misc:string_to_pid(atom_to_list('{fields[1]}')), {{'basic.cancel', atom_to_binary('{fields[2]}', utf8), true}}).";
            var answer = ServerProcess.RunChecked("rabbitmqctl", $"-n {node} eval \"{cancel}\"").Trim();
            if (answer != "ok") throw new InvalidOperationException($"the broker did not cancel consumer {fields[2]} of {queue}: {answer}");
        }
        return consumers.Count;
    }

    private static Task<RabbitMqServer> StartAsync()
    {
        var configured = Environment.GetEnvironmentVariable(Variable);
        return string.IsNullOrWhiteSpace(configured)
            ? StartPrivateAsync()
            : Task.FromResult(new RabbitMqServer(new Uri(configured), Environment.GetEnvironmentVariable(NodeVariable)));
    }

    /// <summary>A node of this process alone (whatever <see cref="Variable"/> says), e.g. one a test may stop and start.</summary>
    public static async Task<RabbitMqServer> StartPrivateAsync()
    {
        ServerProcess.CleanStale("rmq", dir => ServerProcess.Run("rabbitmqctl", $"-n {File.ReadAllText(Path.Combine(dir, "node"))} stop", timeout: TimeSpan.FromSeconds(20)));
        var dir = ServerProcess.NewServerDirectory("rmq");
        var node = $"vt{Environment.ProcessId}x{Guid.NewGuid().ToString("N")[..6]}@localhost";
        File.WriteAllText(Path.Combine(dir, "node"), node);
        var port = ServerProcess.FreePort();
        var distPort = ServerProcess.FreePort();
        Directory.CreateDirectory(Path.Combine(dir, "mnesia"));
        Directory.CreateDirectory(Path.Combine(dir, "log"));
        File.WriteAllText(Path.Combine(dir, "enabled_plugins"), "[].");
        var environment = new Dictionary<string, string>
        {
            ["RABBITMQ_NODENAME"] = node,
            ["RABBITMQ_NODE_IP_ADDRESS"] = "127.0.0.1",
            ["RABBITMQ_NODE_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RABBITMQ_DIST_PORT"] = distPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RABBITMQ_MNESIA_BASE"] = Path.Combine(dir, "mnesia"),
            ["RABBITMQ_LOG_BASE"] = Path.Combine(dir, "log"),
            ["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(dir, "enabled_plugins"),
            ["ERL_EPMD_ADDRESS"] = "127.0.0.1",
        };
        try
        {
            // Debian's scripts switch to the rabbitmq user: everything it touches must be theirs.
            ServerProcess.Chown("rabbitmq", dir);
            ServerProcess.RunChecked("rabbitmq-server", "-detached", environment);
            await ServerProcess.WaitForPortAsync(port, TimeSpan.FromSeconds(60), () => ReadLogs(dir));
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(
                "RabbitMQ is needed for this test and could not be started. Either set " + Variable + " (and " + NodeVariable +
                ") to a running broker, or install it: apt-get update && apt-get install -y rabbitmq-server. Cause: " + e.Message, e);
        }
        ServerProcess.StopWhenThisProcessExits(dir, $"rabbitmqctl -n {node} stop");
        return new RabbitMqServer(new Uri($"amqp://guest:guest@127.0.0.1:{port}/"), node);
    }

    private static string ReadLogs(string dir)
    {
        var logs = Path.Combine(dir, "log");
        return Directory.Exists(logs)
            ? string.Join('\n', Directory.GetFiles(logs).Select(f => $"--- {f}\n{string.Join('\n', File.ReadLines(f).TakeLast(20))}"))
            : "(no logs)";
    }
}

/// <summary>Gives each test class its own virtual host on the shared broker.</summary>
public class RabbitMqFixture : IAsyncLifetime
{
    public Uri Amqp { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var server = await RabbitMqServer.GetAsync();
        Amqp = server.CreateVirtualHost(GetType().Name.ToLowerInvariant());
    }

    public async Task DisposeAsync()
    {
        var server = await RabbitMqServer.GetAsync();
        server.DeleteVirtualHost(Amqp);
    }
}
