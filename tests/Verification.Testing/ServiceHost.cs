using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Verification.ServiceDefaults;

namespace Verification.Testing;

/// <summary>Every message of the captured types that reached this host over the bus.</summary>
public sealed class MessageLog
{
    private readonly ConcurrentQueue<(object Message, Guid? MessageId)> _messages = new();
    public void Add(object message, Guid? messageId) => _messages.Enqueue((message, messageId));
    public IReadOnlyList<T> Of<T>() => _messages.Select(m => m.Message).OfType<T>().ToList();
    public IReadOnlyList<(object Message, Guid? MessageId)> All => _messages.ToList();
}

public sealed class CaptureConsumer<T>(MessageLog log) : IConsumer<T> where T : class
{
    public Task Consume(ConsumeContext<T> context)
    {
        log.Add(context.Message, context.MessageId);
        return Task.CompletedTask;
    }
}

/// <summary>
/// A service (or several modules) on real Kestrel, with the shared defaults, the given settings (PostgreSQL,
/// RabbitMQ) and dev-mode tokens: the same composition as the service's Program.cs.
/// </summary>
public sealed class ServiceHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ServiceHost(WebApplication app)
    {
        _app = app;
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Client = new HttpClient { BaseAddress = new Uri(address) };
    }

    public HttpClient Client { get; }
    public IServiceProvider Services => _app.Services;
    public MessageLog Messages => _app.Services.GetRequiredService<MessageLog>();

    public static readonly JsonSerializerOptions Json = CreateJson();

    private static JsonSerializerOptions CreateJson()
    {
        var json = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        ServiceDefaultsExtensions.ConfigureJson(json);
        json.UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Skip;
        return json;
    }

    public static async Task<ServiceHost> StartAsync(string serviceName, IDictionary<string, string?> settings, Action<WebApplicationBuilder>? module,
        Action<WebApplication> map, Type[]? capture = null, Action<ServiceDefaultsOptions>? configure = null, Action<IServiceCollection>? services = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = typeof(ServiceHost).Assembly.GetName().Name });
        // Only the settings given here: which service's appsettings.json lands in a test's output is up to the build.
        foreach (var file in builder.Configuration.Sources.OfType<FileConfigurationSource>().ToList()) builder.Configuration.Sources.Remove(file);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Auth:DevMode"] = "true",
            ["Parties:0:Code"] = "UA", ["Parties:0:Name"] = "Ukraine", ["Parties:0:Language"] = "uk",
            ["Parties:1:Code"] = "RU", ["Parties:1:Name"] = "Russia", ["Parties:1:Language"] = "ru",
            ["Mediators:0:Code"] = "US", ["Mediators:0:Name"] = "United States", ["Mediators:0:Language"] = "en",
            // Tests count appended events: daily reports are issued on request unless a test turns the worker on.
            ["Compliance:DailyReportCheck"] = "0",
        });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddSingleton<MessageLog>();
        builder.AddServiceDefaults(serviceName, o =>
        {
            if (module is not null) o.Modules.Add(module);
            foreach (var type in capture ?? []) o.Bus.Add(bus => bus.AddConsumer(typeof(CaptureConsumer<>).MakeGenericType(type)));
            configure?.Invoke(o);
        });
        services?.Invoke(builder.Services);
        var app = builder.Build();
        app.UseServiceDefaults();
        map(app);
        await app.StartAsync();
        return new ServiceHost(app);
    }

    public string Token(string role, string? party = null, string? subject = null) =>
        _app.Services.GetRequiredService<AuthSettings>().CreateToken(subject ?? $"{role}-{party ?? "x"}", role, party);

    public HttpRequestMessage Request(HttpMethod method, string path, object? body, string? role, string? party = null, string? subject = null)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is string raw) request.Content = new StringContent(raw, System.Text.Encoding.UTF8, "application/json");
        else if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: Json);
        if (role is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token(role, party, subject));
        return request;
    }

    public async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body, string? role, string? party = null, string? subject = null,
        Action<HttpRequestMessage>? configure = null)
    {
        using var request = Request(method, path, body, role, party, subject);
        configure?.Invoke(request);
        return await Client.SendAsync(request);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
