// Plays a scenario against a running system through its public HTTP APIs and prints the resulting compliance
// summary per party and every log's signed tree head.
// verification-demo [--url URL | --endpoints FILE] [--scenario FILE]
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Spectre.Console;
using Verification.Demo;
using Verification.ServiceDefaults;

string? url = null, endpointsFile = null, scenarioFile = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--url" when i + 1 < args.Length: url = args[++i]; break;
        case "--endpoints" when i + 1 < args.Length: endpointsFile = args[++i]; break;
        case "--scenario" when i + 1 < args.Length: scenarioFile = args[++i]; break;
        default:
            await Console.Error.WriteLineAsync("usage: verification-demo [--url URL | --endpoints FILE] [--scenario FILE]");
            return 2;
    }
}
string[] services = ["incidents", "hotline", "exchanges", "pullbacks", "compliance"];
var endpoints = endpointsFile is not null
    ? File.ReadAllLines(endpointsFile).Where(l => l.Contains('=', StringComparison.Ordinal)).ToDictionary(l => l[..l.IndexOf('=', StringComparison.Ordinal)], l => new Uri(l[(l.IndexOf('=', StringComparison.Ordinal) + 1)..]))
    : services.ToDictionary(s => s, _ => new Uri(url ?? "http://127.0.0.1:5100"));
scenarioFile ??= Path.Combine(AppContext.BaseDirectory, "scenarios", "overnight-barrage.json");

// Development tokens, or tokens signed with Auth__SigningKey from the environment.
var auth = AuthSettings.From(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Auth:DevMode"] = "true" }).AddEnvironmentVariables().Build());
var runner = new ScenarioRunner(endpoints, (role, party, subject) => auth.CreateToken(subject, role, party), Console.Out);
try
{
    var result = await runner.RunAsync(JsonNode.Parse(await File.ReadAllTextAsync(scenarioFile))!.AsObject());
    Console.WriteLine();
    static string Seconds(JsonNode? n) => n is null ? "" : $"{n.GetValue<double>():0.0}";
    var table = new Table().Title("Compliance summary").AddColumns("party", "term", "violations", "breaches", "honoured", "ack median s", "ack p90 s", "missed");
    foreach (var line in result.Summary?["lines"]?.AsArray() ?? [])
        table.AddRow(Markup.Escape($"{line!["party"]}"), Markup.Escape($"{line["termId"]}"), $"{line["violations"]}", $"{line["breaches"]}",
            $"{line["honoured"]}", Seconds(line["medianResponseSeconds"]), Seconds(line["p90ResponseSeconds"]), $"{line["missed"]}");
    AnsiConsole.Write(table);
    var heads = new Table().Title("Signed tree heads").AddColumns("log", "size", "root", "signed at");
    foreach (var (service, head) in result.TreeHeads)
        heads.AddRow(service, $"{head?["size"]}", $"{head?["rootHash"]?.ToString()[..16]}…", $"{head?["timestamp"]}");
    AnsiConsole.Write(heads);
    return 0;
}
catch (ScenarioException e)
{
    await Console.Error.WriteLineAsync($"the scenario stopped: {e.Message}");
    return 1;
}
catch (HttpRequestException e)
{
    await Console.Error.WriteLineAsync($"the system did not answer ({e.Message}): is it running? (bash scripts/run.sh)");
    return 1;
}
