using System.Diagnostics;
using System.Text;

namespace Verification.Testing;

/// <summary>
/// Every service as its own process (the built service DLLs, as in <c>scripts/run.sh --distributed</c>), each with its
/// own fresh database on the test PostgreSQL, all on one RabbitMQ virtual host, exporting traces to
/// <see cref="Spans"/> over OTLP. Processes are killed at the end, and by a watcher if the test run itself dies. A service
/// that stops itself because its bus is stuck (exit code <see cref="ServiceDefaults.BusWatchdog.ExitCode"/>) is started
/// again, as a container's restart policy or Kubernetes would; any other exit stays, for the test to see.
/// </summary>
public class DistributedSystem : IAsyncLifetime
{
    public static readonly string[] ServiceNames = ["incidents", "hotline", "exchanges", "pullbacks", "compliance"];

    private readonly Dictionary<string, (Process Process, StringBuilder Output)> _processes = [];
    private readonly Dictionary<string, string> _databases = [];
    private readonly HashSet<string> _killed = [];
    private volatile bool _disposing;
    private int _supervisorRestarts;
    private Uri? _vhost;
    private string _configuration = "";

    public Dictionary<string, Uri> Endpoints { get; } = [];
    public OtlpReceiver Spans { get; } = new();
    public IReadOnlyDictionary<string, string> Databases => _databases;
    public IReadOnlyDictionary<string, int> ProcessIds => _processes.ToDictionary(p => p.Key, p => p.Value.Process.Id);

    /// <summary>How many times a service stopped itself with a stuck bus and was started again.</summary>
    public int SupervisorRestarts => Volatile.Read(ref _supervisorRestarts);

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
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "1000",
            ["Logging__LogLevel__Default"] = "Warning",
        };
        foreach (var (key, value) in Settings) environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        foreach (var (key, value) in environment) info.Environment[key] = value;
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.Exited += (_, _) => OnExited(name, process);
        if (!process.Start()) throw new InvalidOperationException($"could not start {name}");
        var output = _processes.TryGetValue(name, out var earlier) ? earlier.Output : new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        lock (_processes) _processes[name] = (process, output);
        // Killed if the test run dies; the check on the command line keeps a reused pid safe.
        ServerProcess.StopWhenThisProcessExits(Path.Combine(ServerProcess.Root, $"e2e-{Environment.ProcessId}-{process.Id}"),
            $"grep -q Verification /proc/{process.Id}/cmdline && kill -9 {process.Id}");
    }

    /// <summary>Starts a service again that stopped itself with a stuck bus (not one the test killed, nor at the end).</summary>
    private void OnExited(string name, Process process)
    {
        lock (_processes)
        {
            if (_disposing || _killed.Contains(name) || _processes[name].Process != process || process.ExitCode != ServiceDefaults.BusWatchdog.ExitCode) return;
            var output = _processes[name].Output;
            lock (output) output.AppendLine($"[distributed system] {name} exited with {process.ExitCode} (its bus was stuck): starting it again");
            Interlocked.Increment(ref _supervisorRestarts);
            Start(name);
        }
    }

    /// <summary>Waits until the service answers /health/ready (it fails at once if the process exits, unless to be started again).</summary>
    public async Task WaitReadyAsync(string name, TimeSpan? timeout = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        await Eventually.True(async () =>
        {
            (Process process, StringBuilder output) current;
            lock (_processes) current = _processes[name];
            var (process, output) = current;
            if (process.HasExited && process.ExitCode != ServiceDefaults.BusWatchdog.ExitCode) throw new InvalidOperationException($"{name} exited with {process.ExitCode} during start-up:\n{Output(output)}");
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
        Process process;
        lock (_processes)
        {
            _killed.Add(name);
            process = _processes[name].Process;
        }
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
        process.Dispose();
    }

    /// <summary>Starts a killed service again on the same port and database, and waits until it is ready.</summary>
    public async Task RestartAsync(string name)
    {
        lock (_processes)
        {
            _killed.Remove(name);
            Start(name);
        }
        await WaitReadyAsync(name);
    }

    private static string Output(StringBuilder output)
    {
        lock (output) return output.ToString();
    }

    /// <summary>What a service process wrote, for a failing test's message.</summary>
    public string OutputOf(string name)
    {
        lock (_processes) return Output(_processes[name].Output);
    }

    public async Task DisposeAsync()
    {
        _disposing = true;
        List<Process> processes;
        lock (_processes) processes = _processes.Values.Select(p => p.Process).ToList();
        foreach (var process in processes)
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
