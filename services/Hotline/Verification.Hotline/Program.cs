using Verification.Hotline;
using Verification.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(HotlineModule.Name, o => o.Modules.Add(b => b.AddHotline(o)));
var app = builder.Build();
app.UseServiceDefaults();
app.MapHotlineApi();
app.MapVerifiableLog(HotlineModule.Name);
app.Run();

/// <summary>The entry point, visible to the test host.</summary>
public partial class Program;
