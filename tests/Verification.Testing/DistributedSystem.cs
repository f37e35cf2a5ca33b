using System.Diagnostics;
using System.Text;

namespace Verification.Testing;

/// <summary>
/// Every service as its own process (the built service DLLs, as in <c>scripts/run.sh --distributed</c>), each with its
/// own fresh database on the test PostgreSQL, all on one RabbitMQ virtual host, exporting traces to
/// <see cref="Spans"/> over OTLP. Processes are killed at the end, and by a watcher if the test run itself dies.
/// </summary>
public class DistributedSystem : IAsyncLifetime
{
    public static readonly string[] ServiceNames = ["incidents", "hotline", "exchanges", "pullbacks", "compliance"];

    private readonly List<(string Name, Process Process, StringBuilder Output)> _processes = [];
    private readonly Dictionary<string, string> _databases = [];
    private Uri? _vhost;

    public Dictionary<string, Uri> Endpoints { get; } = [];
    public OtlpReceiver Spans { get; } = new();
    public IReadOnlyDictionary<string, string> Databases => _databases;

    /// <summary>Settings every service gets on top of its appsettings.json (e.g. short hotline deadlines).</summary>
    protected virtual IDictionary<string, string> Settings => new Dictionary<string, string>();

    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Verification.sln"))) return dir.FullName;
        throw new InvalidOperationException($"Verification.sln not found above {AppContext.BaseDirectory}");
    }

    public async Task InitializeAsync()
    {
        var root = RepositoryRoot();
        // The services are built in the same configuration as this test assembly.
        var configuration = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
        var rabbit = await RabbitMqServer.GetAsync();
        _vhost = rabbit.CreateVirtualHost("e2e");
        await Spans.StartAsync();
        var watched = new List<int>();
        foreach (var name in ServiceNames)
        {
            var project = char.ToUpperInvariant(name[0]) + name[1..];
            var projectDir = Path.Combine(root, "services", project, $"Verification.{project}");
            var dll = Path.Combine(projectDir, "bin", configuration, "net10.0", $"Verification.{project}.dll");
            if (!File.Exists(dll)) throw new InvalidOperationException($"{dll} is not built: build Verification.sln first");
            _databases[name] = await PostgresServer.Instance.CreateDatabaseAsync("e2e_" + name);
            var port = ServerProcess.FreePort();
            var info = new ProcessStartInfo("dotnet", [dll, "--contentRoot", projectDir])
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = projectDir,
            };
            var environment = new Dictionary<string, string>
            {
                ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
                ["ConnectionStrings__Postgres"] = _databases[name],
                ["Bus__RabbitMq"] = _vhost.ToString(),
                ["Auth__DevMode"] = "true",
                ["Telemetry__OtlpEndpoint"] = Spans.Endpoint.ToString(),
                ["Telemetry__OtlpProtocol"] = "http/protobuf",
                ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
                ["Logging__LogLevel__Default"] = "Warning",
            };
            foreach (var (key, value) in Settings) environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
            foreach (var (key, value) in environment) info.Environment[key] = value;
            var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {name}");
            var output = new StringBuilder();
            process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _processes.Add((name, process, output));
            watched.Add(process.Id);
            Endpoints[name] = new Uri($"http://127.0.0.1:{port}");
        }
        ServerProcess.StopWhenThisProcessExits(Path.Combine(ServerProcess.Root, $"e2e-{Environment.ProcessId}"), $"kill -9 {string.Join(' ', watched)}");

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        foreach (var (name, process, output) in _processes)
        {
            await Eventually.True(async () =>
            {
                if (process.HasExited) throw new InvalidOperationException($"{name} exited with {process.ExitCode} during start-up:\n{Output(output)}");
                try
                {
                    using var response = await http.GetAsync(new Uri(Endpoints[name], "/health/ready"));
                    return response.IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, TimeSpan.FromSeconds(120), $"{name} to be ready");
        }
    }

    private static string Output(StringBuilder output)
    {
        lock (output) return output.ToString();
    }

    /// <summary>What a service process wrote, for a failing test's message.</summary>
    public string OutputOf(string name) => Output(_processes.Single(p => p.Name == name).Output);

    public async Task DisposeAsync()
    {
        foreach (var (_, process, _) in _processes)
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            process.Dispose();
        }
        await Spans.DisposeAsync();
        foreach (var connectionString in _databases.Values) await PostgresServer.Instance.DropDatabaseAsync(connectionString);
        if (_vhost is not null) (await RabbitMqServer.GetAsync()).DeleteVirtualHost(_vhost);
    }
}
