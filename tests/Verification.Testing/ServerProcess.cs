using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Verification.Testing;

/// <summary>Process and directory helpers shared by the throwaway servers.</summary>
internal static class ServerProcess
{
    public static readonly string Root = Path.Combine(Path.GetTempPath(), "verification-tests");

    public static bool IsRoot => Environment.UserName == "root";

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>A directory for one server of this process; its owner pid lets a later run clean it up.</summary>
    public static string NewServerDirectory(string kind)
    {
        Directory.CreateDirectory(Root);
        var dir = Path.Combine(Root, $"{kind}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "owner.pid"), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return dir;
    }

    /// <summary>Stops servers left behind by test runs whose process no longer exists.</summary>
    public static void CleanStale(string kind, Action<string> stop)
    {
        if (!Directory.Exists(Root)) return;
        foreach (var dir in Directory.GetDirectories(Root, kind + "-*"))
        {
            var pidFile = Path.Combine(dir, "owner.pid");
            if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile), out var pid) && Directory.Exists($"/proc/{pid}"))
                continue;
            try { stop(dir); } catch (Exception) { /* best effort: a half-started server may have nothing to stop */ }
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>
    /// A detached watcher that runs <paramref name="stopScript"/> and deletes <paramref name="dir"/> once this
    /// process is gone, however it ended (normal exit, crash or kill -9): no server outlives its test run.
    /// </summary>
    public static void StopWhenThisProcessExits(string dir, string stopScript)
    {
        var script = $"exec >/dev/null 2>&1 </dev/null; while kill -0 {Environment.ProcessId} 2>/dev/null; do sleep 0.5; done; {stopScript}; rm -rf '{dir}'";
        var info = new ProcessStartInfo("setsid", ["bash", "-c", script]) { UseShellExecute = false };
        using var _ = Process.Start(info) ?? throw new InvalidOperationException("could not start the server watcher");
    }

    public static (int ExitCode, string Output) Run(string file, string arguments, IDictionary<string, string>? environment = null, TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (environment is not null)
            foreach (var (key, value) in environment) info.Environment[key] = value;
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"'{file}' is not installed or not on PATH ({e.Message}).", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(timeout ?? TimeSpan.FromSeconds(60)))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"'{file} {arguments}' did not finish in time");
            }
            return (process.ExitCode, stdout.Result + stderr.Result);
        }
    }

    public static string RunChecked(string file, string arguments, IDictionary<string, string>? environment = null, TimeSpan? timeout = null)
    {
        var (code, output) = Run(file, arguments, environment, timeout);
        if (code != 0) throw new InvalidOperationException($"'{file} {arguments}' exited with {code}:\n{output}");
        return output;
    }

    /// <summary>Runs a command as <paramref name="user"/> when we are root (servers refuse root or switch users).</summary>
    public static string RunAs(string user, string file, string arguments, TimeSpan? timeout = null) =>
        IsRoot ? RunChecked("runuser", $"-u {user} -- {file} {arguments}", timeout: timeout) : RunChecked(file, arguments, timeout: timeout);

    public static void Chown(string user, string dir)
    {
        if (IsRoot) RunChecked("chown", $"-R {user}:{user} {dir}");
    }

    public static async Task WaitForPortAsync(int port, TimeSpan timeout, Func<string> diagnostics)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }
        throw new InvalidOperationException($"server did not open port {port} within {timeout.TotalSeconds:0} s.\n{diagnostics()}");
    }
}
