using Verification.Pullbacks;
using Verification.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(PullbacksModule.Name, o => o.Modules.Add(b => b.AddPullbacks()));
var app = builder.Build();
app.UseServiceDefaults();
app.MapPullbacksApi();
app.MapVerifiableLog(PullbacksModule.Name);
app.Run();

/// <summary>The entry point, visible to the test host.</summary>
public partial class Program;
