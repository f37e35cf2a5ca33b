using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Verification.ServiceDefaults;

/// <summary>The project's own activity source and meter.</summary>
public static class Telemetry
{
    public const string Name = "Verification";
    public static readonly ActivitySource Source = new(Name);
    public static readonly Meter Meter = new(Name);

    /// <summary>Builds tracer and meter providers with the SDK directly (written when the hosting package was not served).</summary>
    internal static void AddTelemetry(this WebApplicationBuilder builder, ServiceDefaultsOptions options)
    {
        var endpoint = builder.Configuration["Telemetry:OtlpEndpoint"] ?? builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
        var resource = ResourceBuilder.CreateDefault().AddService(options.ServiceName);

        var tracing = Sdk.CreateTracerProviderBuilder()
            .SetResourceBuilder(resource)
            .AddSource("MassTransit", "Npgsql", Name, Name + ".*")
            // Request spans named by route ("POST /incidents") with method, route and status: ASP.NET Core 10 alone names
            // them Microsoft.AspNetCore.Hosting.HttpRequestIn and gives no route or status. Probes every few seconds are
            // not traced.
            .AddAspNetCoreInstrumentation(o => o.Filter = context => !context.Request.Path.StartsWithSegments("/health"));
        foreach (var configure in options.Tracing) configure(tracing);
        var metrics = Sdk.CreateMeterProviderBuilder()
            .SetResourceBuilder(resource)
            .AddMeter("MassTransit", "Npgsql", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel", Name);
        if (!string.IsNullOrWhiteSpace(endpoint))
        {
            // gRPC (default, port 4317) or http/protobuf (4318), whose signals each have their own path.
            var http = (builder.Configuration["Telemetry:OtlpProtocol"] ?? builder.Configuration["OTEL_EXPORTER_OTLP_PROTOCOL"]) switch
            {
                null or "" or "grpc" => false,
                "http/protobuf" => true,
                var other => throw new InvalidOperationException($"Telemetry:OtlpProtocol '{other}' is unknown: use grpc or http/protobuf."),
            };
            var root = endpoint.TrimEnd('/');
            tracing.AddOtlpExporter(o => (o.Endpoint, o.Protocol) = http ? (new Uri(root + "/v1/traces"), OtlpExportProtocol.HttpProtobuf) : (new Uri(endpoint), OtlpExportProtocol.Grpc));
            metrics.AddOtlpExporter(o => (o.Endpoint, o.Protocol) = http ? (new Uri(root + "/v1/metrics"), OtlpExportProtocol.HttpProtobuf) : (new Uri(endpoint), OtlpExportProtocol.Grpc));
        }
        builder.Services.AddSingleton(new TelemetryProviders(tracing.Build(), metrics.Build()));
        builder.Services.AddHostedService(sp => sp.GetRequiredService<TelemetryProviders>());
    }
}

/// <summary>Holds the providers for the host's lifetime; flushes and disposes them on shutdown.</summary>
internal sealed class TelemetryProviders(TracerProvider tracer, MeterProvider meter) : IHostedService, IDisposable
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken)
    {
        tracer.ForceFlush(2000);
        meter.ForceFlush(2000);
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        tracer.Dispose();
        meter.Dispose();
    }
}
