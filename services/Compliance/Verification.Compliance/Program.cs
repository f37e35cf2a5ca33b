using Verification.Compliance;
using Verification.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(ComplianceModule.Name, o => o.Modules.Add(b => b.AddCompliance(o)));
var app = builder.Build();
app.UseServiceDefaults();
app.MapComplianceApi();
app.MapVerifiableLog(ComplianceModule.Name);
app.Run();

/// <summary>The entry point, visible to the test host.</summary>
public partial class Program;
