// Mints development tokens: dev-token ROLE [PARTY] [SUBJECT]. Signs with Auth:SigningKey from the
// environment (Auth__SigningKey) or the well-known development key the services accept in DevMode.
using Microsoft.Extensions.Configuration;
using Verification.ServiceDefaults;

if (args.Length == 0 || !Roles.All.Contains(args[0]))
{
    await Console.Error.WriteLineAsync($"usage: dev-token ROLE [PARTY] [SUBJECT]   (ROLE: {string.Join(", ", Roles.All)})");
    return 2;
}
var configuration = new ConfigurationBuilder()
    .AddInMemoryCollection(new Dictionary<string, string?> { ["Auth:DevMode"] = "true" })
    .AddEnvironmentVariables()
    .Build();
var party = args.Length > 1 && args[1].Length > 0 ? args[1] : null;   // "" names no party, to give a subject
var subject = args.Length > 2 ? args[2] : $"{args[0]}-{party ?? "mission"}".ToLowerInvariant();
Console.WriteLine(AuthSettings.From(configuration).CreateToken(subject, args[0], party));
return 0;
