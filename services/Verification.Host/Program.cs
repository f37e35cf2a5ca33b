// The whole system in one process (the embedded mode): every service module, one in-memory bus,
// each module with its own schema in one PostgreSQL database. The same code runs as separate services.
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Verification.Compliance;
using Verification.Exchanges;
using Verification.Hotline;
using Verification.Incidents;
using Verification.Pullbacks;
using Verification.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("verification", o =>
{
    o.Modules.Add(b => b.AddIncidents());
    o.Modules.Add(b => b.AddHotline(o));
    o.Modules.Add(b => b.AddExchanges());
    o.Modules.Add(b => b.AddPullbacks());
    o.Modules.Add(b => b.AddCompliance(o));
});
var app = builder.Build();
app.UseServiceDefaults();
app.MapIncidentsApi();
app.MapHotlineApi();
app.MapExchangesApi();
app.MapPullbacksApi();
app.MapComplianceApi();
app.MapVerifiableLog(IncidentsModule.Name, HotlineModule.Name, ExchangesModule.Name, PullbacksModule.Name, ComplianceModule.Name);
app.Lifetime.ApplicationStarted.Register(() =>
{
    var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? "http://127.0.0.1:5100";
    var auth = app.Services.GetRequiredService<AuthSettings>();
    var parties = app.Services.GetRequiredService<PartyDirectory>();
    Console.WriteLine($"""

        Verification is running (embedded: all services in one process, in-memory bus).
          Incidents API   {address}/incidents
          Hotline API     {address}/alerts   {address}/pre-notifications   {address}/channels
          Exchanges API   {address}/exchanges   {address}/persons
          Pullbacks API   {address}/pullbacks
          Compliance API  {address}/agreements   {address}/compliance/summary   {address}/compliance/daily
          Verifiable log  {address}/log/<incidents|hotline|exchanges|pullbacks|compliance>/tree-head   /events   /export   {address}/log/public-key
          OpenAPI         {address}/openapi/v1.json
          Health          {address}/health/ready

        Development tokens (Authorization: Bearer <token>):
        """);
    Console.WriteLine($"  monitor           {auth.CreateToken("monitor-1", Roles.Monitor, null)}");
    Console.WriteLine($"  verifier          {auth.CreateToken("verifier-1", Roles.Verifier, null)}");
    foreach (var party in parties.All)
        Console.WriteLine($"  liaison {party.Code,-9} {auth.CreateToken($"liaison-{party.Code.ToLowerInvariant()}", Roles.Liaison, party.Code)}");
    Console.WriteLine($"  auditor           {auth.CreateToken("auditor-1", Roles.Auditor, parties.Mediators.FirstOrDefault()?.Code)}");
    Console.WriteLine($"  intermediary      {auth.CreateToken("icrc-1", Roles.Intermediary, "ICRC")}");
    Console.WriteLine($"  admin             {auth.CreateToken("admin-1", Roles.Admin, null)}");
    Console.WriteLine("\nPress Ctrl-C to stop.");
});
app.Run();
