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

    private readonly Dictionary<string, (Process Process, StringBuilder Output)> _processes = [];
    private readonly Dictionary<string, string> _databases = [];
    private Uri? _vhost;
    private string _configuration = "";

    public Dictionary<string, Uri> Endpoints { get; } = [];
    public OtlpReceiver Spans { get; } = new();
    public IReadOnlyDictionary<string, string> Databases => _databases;
    public IReadOnlyDictionary<string, int> ProcessIds => _processes.ToDictionary(p => p.Key, p => p.Value.Process.Id);

    /// <summary>The broker's virtual host the services share (for queue depths).</summary>
    public Uri? VirtualHost => _vhost;

    public PostgresServer Postgres { get; private set; } = null!;
    public RabbitMqServer RabbitMq { get; private set; } = null!;

    /// <summary>Settings every service gets on top of its appsettings.json (e.g. short hotline deadlines).</summary>
    protected virtual IDictionary<string, string> Settings => new Dictionary<string, string>();

    /// <summary>The servers the system runs on: by default the test run's shared ones.</summary>
    protected virtual async Task<(PostgresServer Postgres, RabbitMqServer RabbitMq)> ServersAsync() => (PostgresServer.Instance, await RabbitMqServer.GetAsync());

    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Verification.sln"))) return dir.FullName;
        throw new InvalidOperationException($"Verification.sln not found above {AppContext.BaseDirectory}");
    }

    public async Task InitializeAsync()
    {
        // The services are built in the same configuration as this test assembly.
        _configuration = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
        (Postgres, RabbitMq) = await ServersAsync();
        _vhost = RabbitMq.CreateVirtualHost("e2e");
        await Spans.StartAsync();
        foreach (var name in ServiceNames)
        {
            _databases[name] = await Postgres.CreateDatabaseAsync("e2e_" + name);
            Endpoints[name] = new Uri($"http://127.0.0.1:{ServerProcess.FreePort()}");
            Start(name);
        }
        foreach (var name in ServiceNames) await WaitReadyAsync(name);
    }

    private void Start(string name)
    {
        var project = char.ToUpperInvariant(name[0]) + name[1..];
        var projectDir = Path.Combine(RepositoryRoot(), "services", project, $"Verification.{project}");
        var dll = Path.Combine(projectDir, "bin", _configuration, "net10.0", $"Verification.{project}.dll");
        if (!File.Exists(dll)) throw new InvalidOperationException($"{dll} is not built: build Verification.sln first");
        var info = new ProcessStartInfo("dotnet", [dll, "--contentRoot", projectDir])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = projectDir,
        };
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = Endpoints[name].ToString().TrimEnd('/'),
            ["ConnectionStrings__Postgres"] = _databases[name],
            ["Bus__RabbitMq"] = _vhost!.ToString(),
            ["Auth__DevMode"] = "true",
            ["Telemetry__OtlpEndpoint"] = Spans.Endpoint.ToString(),
            ["Telemetry__OtlpProtocol"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["Logging__LogLevel__Default"] = "Warning",
        };
        foreach (var (key, value) in Settings) environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        foreach (var (key, value) in environment) info.Environment[key] = value;
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {name}");
        var output = _processes.TryGetValue(name, out var earlier) ? earlier.Output : new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _processes[name] = (process, output);
        // Killed if the test run dies; the check on the command line keeps a reused pid safe.
        ServerProcess.StopWhenThisProcessExits(Path.Combine(ServerProcess.Root, $"e2e-{Environment.ProcessId}-{process.Id}"),
            $"grep -q Verification /proc/{process.Id}/cmdline && kill -9 {process.Id}");
    }

    /// <summary>Waits until the service answers /health/ready (it fails at once if the process exits).</summary>
    public async Task WaitReadyAsync(string name, TimeSpan? timeout = null)
    {
        var (process, output) = _processes[name];
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        await Eventually.True(async () =>
        {
            if (process.HasExited) throw new InvalidOperationException($"{name} exited with {process.ExitCode} during start-up:\n{Output(output)}");
            try
            {
                using var response = await http.GetAsync(new Uri(Endpoints[name], "/health/ready"));
                return response.IsSuccessStatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                return false;
            }
        }, timeout ?? TimeSpan.FromSeconds(120), $"{name} to be ready");
    }

    /// <summary>kill -9: no shutdown, no flush, whatever was in flight is cut.</summary>
    public async Task KillAsync(string name)
    {
        var (process, _) = _processes[name];
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
        process.Dispose();
    }

    /// <summary>Starts a killed service again on the same port and database, and waits until it is ready.</summary>
    public async Task RestartAsync(string name)
    {
        Start(name);
        await WaitReadyAsync(name);
    }

    private static string Output(StringBuilder output)
    {
        lock (output) return output.ToString();
    }

    /// <summary>What a service process wrote, for a failing test's message.</summary>
    public string OutputOf(string name) => Output(_processes[name].Output);

    public async Task DisposeAsync()
    {
        foreach (var (process, _) in _processes.Values)
        {
            try
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // killed and disposed by a test already
            }
            process.Dispose();
        }
        await Spans.DisposeAsync();
        foreach (var connectionString in _databases.Values) await Postgres.DropDatabaseAsync(connectionString);
        if (_vhost is not null) RabbitMq.DeleteVirtualHost(_vhost);
    }
}
