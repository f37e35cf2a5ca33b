using Verification.Exchanges;
using Verification.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(ExchangesModule.Name, o => o.Modules.Add(b => b.AddExchanges()));
var app = builder.Build();
app.UseServiceDefaults();
app.MapExchangesApi();
app.MapVerifiableLog(ExchangesModule.Name);
app.Run();

/// <summary>The entry point, visible to the test host.</summary>
public partial class Program;
