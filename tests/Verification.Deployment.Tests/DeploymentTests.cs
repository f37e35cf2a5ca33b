using System.Text.RegularExpressions;
using Npgsql;
using Verification.Testing;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace Verification.Deployment.Tests;

/// <summary>
/// docker-compose.yml and deploy/k8s cannot run here (no container engine): these tests keep them consistent with
/// the services: every service present, its image buildable from a real project, ports that line up, databases
/// that exist, hosts that are other services, and only configuration keys the services read (the README's table).
/// </summary>
public sealed partial class DeploymentTests
{
    private static readonly string Root = DistributedSystem.RepositoryRoot();
    private static readonly string[] Services = DistributedSystem.ServiceNames;

    private static List<object> Documents(string path)
    {
        var parser = new MergingParser(new Parser(new StringReader(File.ReadAllText(path))));   // compose uses "<<: *anchor"
        var deserializer = new DeserializerBuilder().Build();
        parser.Consume<StreamStart>();
        var documents = new List<object>();
        while (parser.Accept<DocumentStart>(out _))
        {
            var document = deserializer.Deserialize<object>(parser);
            if (document is not null) documents.Add(document);
        }
        return documents;
    }

    private static object? At(object? node, params string[] path)
    {
        foreach (var key in path) node = node is Dictionary<object, object> map && map.TryGetValue(key, out var next) ? next : null;
        return node;
    }

    private static string Text(object? node, params string[] path) => At(node, path)?.ToString() ?? throw new Xunit.Sdk.XunitException($"{string.Join('.', path)} is missing");
    private static List<object> List(object? node, params string[] path) => At(node, path) as List<object> ?? [];

    /// <summary>The configuration keys the services read, from the README's table ("Configuration of a service").</summary>
    private static HashSet<string> DocumentedKeys()
    {
        var readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        var table = readme[readme.IndexOf("## Configuration of a service", StringComparison.Ordinal)..];
        table = table[..table.IndexOf("\n\n", table.IndexOf("| key", StringComparison.Ordinal), StringComparison.Ordinal)];
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var row in table.Split('\n').Where(r => r.StartsWith("| `", StringComparison.Ordinal)))
            foreach (Match m in Backticked().Matches(row.Split('|')[1])) keys.Add(m.Groups[1].Value);
        return keys;
    }

    private static bool Documented(HashSet<string> keys, string environmentName)
    {
        var key = environmentName.Replace("__", ":", StringComparison.Ordinal);
        return keys.Contains(key) || keys.Any(k => k.Contains(":N:", StringComparison.Ordinal) && Regex.IsMatch(key, "^" + Regex.Escape(k).Replace(":N:", @":\d+:", StringComparison.Ordinal) + "$"));
    }

    [Fact]
    public void Compose_runs_every_service_from_a_real_project_with_its_own_database_and_documented_settings()
    {
        var compose = Documents(Path.Combine(Root, "docker-compose.yml")).Single();
        var services = (Dictionary<object, object>)At(compose, "services")!;
        Assert.True(At(services, "rabbitmq") is not null && At(services, "postgres") is not null && At(services, "otel-collector") is not null && At(services, "jaeger") is not null);
        Assert.Contains("management", Text(services, "rabbitmq", "image"), StringComparison.Ordinal);
        var databases = InitDatabases().ToHashSet();
        var keys = DocumentedKeys();
        var hostPorts = new List<string>();

        foreach (var name in Services)
        {
            var service = At(services, name) ?? throw new Xunit.Sdk.XunitException($"docker-compose.yml has no service '{name}'");
            Assert.True(File.Exists(Path.Combine(Root, Text(service, "build", "dockerfile"))), $"{name}: its Dockerfile does not exist");
            var project = Text(service, "build", "args", "SERVICE");
            Assert.True(File.Exists(Path.Combine(Root, "services", project, $"Verification.{project}", $"Verification.{project}.csproj")), $"{name}: services/{project} is not a project");
            Assert.Equal(name, project.ToLowerInvariant());

            var environment = ((Dictionary<object, object>)At(service, "environment")!).ToDictionary(e => e.Key.ToString()!, e => e.Value.ToString()!);
            foreach (var key in environment.Keys) Assert.True(Documented(keys, key), $"{name}: {key} is not a setting the services read (README, Configuration of a service)");

            var listen = new Uri(environment["ASPNETCORE_URLS"].Replace("+", "localhost", StringComparison.Ordinal));
            var ports = List(service, "ports").Select(p => p.ToString()!.Split(':')).ToList();
            Assert.Contains(ports, p => p[^1] == listen.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
            hostPorts.AddRange(ports.Select(p => p[^2]));

            var database = new NpgsqlConnectionStringBuilder(environment["ConnectionStrings__Postgres"]);
            Assert.Equal(("postgres", name), (database.Host, database.Database));
            Assert.Contains(name, databases);
            var bus = new Uri(environment["Bus__RabbitMq"]);
            Assert.Equal(("amqp", "rabbitmq", 5672), (bus.Scheme, bus.Host, bus.Port));
            var otlp = new Uri(environment["Telemetry__OtlpEndpoint"]);
            Assert.NotNull(At(services, otlp.Host));
            Assert.Equal(4317, otlp.Port);   // gRPC, the collector's receiver below
            Assert.Contains(At(service, "depends_on") is Dictionary<object, object> d ? d.Keys.Select(k => k.ToString()) : [], k => k == "postgres");
        }
        Assert.Equal(hostPorts.Count, hostPorts.Distinct().Count());
        var collector = File.ReadAllText(Path.Combine(Root, "deploy", "otel-collector.yaml"));
        Assert.Contains("0.0.0.0:4317", collector, StringComparison.Ordinal);
        Assert.Contains(List(services["otel-collector"], "volumes"), v => v.ToString()!.StartsWith("./deploy/otel-collector.yaml:", StringComparison.Ordinal));
    }

    private static IEnumerable<string> InitDatabases() =>
        CreateDatabase().Matches(File.ReadAllText(Path.Combine(Root, "deploy", "postgres", "init.sql"))).Select(m => m.Groups[1].Value);

    [Fact]
    public void Kubernetes_runs_replicas_with_probes_resources_and_a_database_cluster_per_service_on_a_quorum_broker()
    {
        var dir = Path.Combine(Root, "deploy", "k8s");
        var kustomization = Documents(Path.Combine(dir, "kustomization.yaml")).Single();
        var resources = List(kustomization, "resources").Select(r => r.ToString()!).ToList();
        Assert.Equal(Directory.GetFiles(dir, "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order(), resources.Order());
        var objects = resources.SelectMany(r => Documents(Path.Combine(dir, r))).ToList();
        object Find(string kind, string name) => objects.SingleOrDefault(o => Text(o, "kind") == kind && Text(o, "metadata", "name") == name)
            ?? throw new Xunit.Sdk.XunitException($"no {kind} named {name} in deploy/k8s");
        var keys = DocumentedKeys();

        var rabbit = Find("RabbitmqCluster", "rabbitmq");
        Assert.True(int.Parse(Text(rabbit, "spec", "replicas"), System.Globalization.CultureInfo.InvariantCulture) >= 3);
        Assert.Contains("default_queue_type = quorum", Text(rabbit, "spec", "rabbitmq", "additionalConfig"), StringComparison.Ordinal);

        foreach (var name in Services)
        {
            var deployment = Find("Deployment", name);
            Assert.True(int.Parse(Text(deployment, "spec", "replicas"), System.Globalization.CultureInfo.InvariantCulture) >= 2, $"{name}: competing consumers need replicas");
            var labels = (Dictionary<object, object>)At(deployment, "spec", "template", "metadata", "labels")!;
            Assert.Equal(labels, (Dictionary<object, object>)At(deployment, "spec", "selector", "matchLabels")!);
            var container = List(deployment, "spec", "template", "spec", "containers").Single();
            var port = List(container, "ports").Single();
            Assert.Equal(("http", "8080"), (Text(port, "name"), Text(port, "containerPort")));
            Assert.Equal(("/health/ready", "http"), (Text(container, "readinessProbe", "httpGet", "path"), Text(container, "readinessProbe", "httpGet", "port")));
            Assert.Equal("/health/live", Text(container, "livenessProbe", "httpGet", "path"));
            Assert.NotNull(At(container, "resources", "requests", "cpu"));
            Assert.NotNull(At(container, "resources", "requests", "memory"));
            Assert.NotNull(At(container, "resources", "limits", "memory"));

            // Settings: documented keys; $(VAR) only after VAR is defined (Kubernetes expands earlier entries only).
            var defined = new HashSet<string>();
            var env = new Dictionary<string, object>();
            foreach (var entry in List(container, "env"))
            {
                var key = Text(entry, "name");
                if (At(entry, "value") is { } value)
                    foreach (Match m in Reference().Matches(value.ToString()!)) Assert.True(defined.Contains(m.Groups[1].Value), $"{name}: {key} uses $({m.Groups[1].Value}) before it is defined");
                if (At(entry, "valueFrom", "secretKeyRef", "name") is { } secret)
                {
                    var s = secret.ToString()!;
                    if (s.EndsWith("-app", StringComparison.Ordinal)) Assert.Equal(name, Text(Find("Cluster", s[..^4]), "spec", "bootstrap", "initdb", "database"));
                    if (s.StartsWith("rabbitmq-", StringComparison.Ordinal)) Find("RabbitmqCluster", s[..s.IndexOf("-default-user", StringComparison.Ordinal)]);
                }
                defined.Add(key);
                env[key] = entry;
                if (!key.StartsWith("PG_", StringComparison.Ordinal) && !key.StartsWith("RABBIT_", StringComparison.Ordinal))
                    Assert.True(Documented(keys, key), $"{name}: {key} is not a setting the services read");
            }
            Assert.EndsWith($"Database={name}", Text(env["ConnectionStrings__Postgres"], "value"), StringComparison.Ordinal);
            Assert.Equal("rabbitmq", new Uri(Text(env["Bus__RabbitMq"], "value").Replace("$(", "x", StringComparison.Ordinal).Replace(")", "", StringComparison.Ordinal)).Host);
            var collector = new Uri(Text(env["Telemetry__OtlpEndpoint"], "value"));
            Assert.Contains(List(Find("Service", collector.Host), "spec", "ports"), p => Text(p, "port") == collector.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));

            var service = Find("Service", name);
            Assert.Equal(labels, (Dictionary<object, object>)At(service, "spec", "selector")!);
            Assert.Equal("http", Text(List(service, "spec", "ports").Single(), "targetPort"));
            Assert.Equal(labels, (Dictionary<object, object>)At(Find("PodDisruptionBudget", name), "spec", "selector", "matchLabels")!);
            Assert.True(int.Parse(Text(Find("Cluster", $"{name}-db"), "spec", "instances"), System.Globalization.CultureInfo.InvariantCulture) >= 2);
        }
    }

    [GeneratedRegex("`([^`]+)`")]
    private static partial Regex Backticked();

    [GeneratedRegex(@"CREATE DATABASE (\w+);")]
    private static partial Regex CreateDatabase();

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex Reference();
}
