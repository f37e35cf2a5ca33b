using Verification.Incidents;
using Verification.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(IncidentsModule.Name, o => o.Modules.Add(b => b.AddIncidents()));
var app = builder.Build();
app.UseServiceDefaults();
app.MapIncidentsApi();
app.MapVerifiableLog(IncidentsModule.Name);
app.Run();

/// <summary>The entry point, visible to the test host.</summary>
public partial class Program;
