using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using OpenTelemetry;
using OpenTelemetry.Trace;
using Verification.ServiceDefaults;

namespace Verification.ServiceDefaults.Tests;

[MessageUrn("verification:smoke:pinged", false)]
public sealed record Pinged(Guid PingId, string Text);

public enum Tone { Calm, Urgent }

public sealed record Ping(string Text, Tone Tone);

public sealed class PingedConsumer(ReceivedPings received) : IConsumer<Pinged>
{
    public Task Consume(ConsumeContext<Pinged> context)
    {
        received.Add(context.Message, Activity.Current?.TraceId.ToString());
        return Task.CompletedTask;
    }
}

public sealed class ReceivedPings
{
    private readonly ConcurrentDictionary<Guid, string?> _traceIds = new();
    public void Add(Pinged message, string? traceId) => _traceIds[message.PingId] = traceId;
    public bool TryGet(Guid id, out string? traceId) => _traceIds.TryGetValue(id, out traceId);
}

public sealed class CollectedActivities : BaseProcessor<Activity>
{
    private readonly ConcurrentQueue<Activity> _ended = new();
    public override void OnEnd(Activity data) => _ended.Enqueue(data);
    public IReadOnlyList<Activity> ForTrace(string traceId) => _ended.Where(a => a.TraceId.ToString() == traceId).ToList();
    public IReadOnlyList<Activity> All => [.. _ended];
}

/// <summary>A tiny service on the shared defaults, on real Kestrel, real RabbitMQ and real PostgreSQL.</summary>
public sealed class SmokeHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SmokeHost(WebApplication app, CollectedActivities activities)
    {
        _app = app;
        Activities = activities;
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        Client = new HttpClient { BaseAddress = new Uri(address) };
    }

    public HttpClient Client { get; }
    public CollectedActivities Activities { get; }
    public IServiceProvider Services => _app.Services;

    public static async Task<SmokeHost> StartAsync(Uri rabbit, string postgres, long maxBody = 1024 * 1024, IReadOnlyDictionary<string, string?>? settings = null)
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Bus:RabbitMq"] = rabbit.ToString(),
            ["ConnectionStrings:Postgres"] = postgres,
            ["Auth:DevMode"] = "true",
        }.Concat(settings ?? new Dictionary<string, string?>()));
        var activities = new CollectedActivities();
        builder.AddServiceDefaults("smoke", o =>
        {
            o.Bus.Add(bus => bus.AddConsumer<PingedConsumer>());
            o.Tracing.Add(t => t.AddProcessor(activities));
            o.MaxRequestBodyBytes = maxBody;
        });
        builder.Services.AddSingleton<ReceivedPings>();

        var app = builder.Build();
        app.UseServiceDefaults();
        app.MapPost("/pings", async (Ping ping, IPublishEndpoint bus) =>
        {
            var id = Guid.NewGuid();
            await bus.Publish(new Pinged(id, ping.Text));
            return TypedResults.Accepted($"/pings/{id}", new { id, traceId = Activity.Current?.TraceId.ToString() });
        }).RequireAuthorization(Roles.Monitor);
        // What a use case's append can throw, for the problem mapping.
        app.MapPost("/store-refusals/{kind}", IResult (string kind) => kind switch
        {
            "archived" => throw new Verification.EventStore.StreamArchivedException("inc-1"),
            "rebuild" => throw new Verification.EventStore.RebuildFailedException("tally", 31, "inc-1", "noted", new InvalidOperationException("cannot tally")),
            "unreadable" => throw new Verification.EventStore.UnreadableEventException(new Verification.EventStore.LogPosition(9, 31), "inc-1", "noted",
                new NotSupportedException("noted has no schema version 2 here")),
            _ => throw new Verification.EventStore.ConcurrencyException("inc-1", 1, 2),
        }).RequireAuthorization(Roles.Monitor);
        app.MapPost("/failures", IResult () => throw new InvalidOperationException("a fault no handler expected")).RequireAuthorization(Roles.Monitor);
        await app.StartAsync();
        return new SmokeHost(app, activities);
    }

    public string Token(string role, string? party = null) =>
        _app.Services.GetRequiredService<AuthSettings>().CreateToken("tester", role, party);

    public HttpRequestMessage Post(string path, string json, string? role)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json") };
        if (role is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token(role));
        return request;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
