using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Logs;
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

    /// <summary>Traces, metrics and logs of the service; exported over OTLP when an endpoint is configured.</summary>
    internal static void AddTelemetry(this WebApplicationBuilder builder, ServiceDefaultsOptions options)
    {
        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(options.ServiceName))
            .WithTracing(tracing =>
            {
                tracing.AddSource("MassTransit", "Npgsql", Name, Name + ".*")
                    // Request spans named by route ("POST /incidents") with method, route and status: ASP.NET Core 10 alone names
                    // them Microsoft.AspNetCore.Hosting.HttpRequestIn and gives no route or status. Probes every few seconds are
                    // not traced.
                    .AddAspNetCoreInstrumentation(o => o.Filter = context => !context.Request.Path.StartsWithSegments("/health"));
                foreach (var configure in options.Tracing) configure(tracing);
            })
            // System.Runtime: the runtime's own meter (GC, thread pool, CPU, memory), no package needed.
            .WithMetrics(metrics => metrics.AddMeter("MassTransit", "Npgsql", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel",
                "Microsoft.AspNetCore.Diagnostics", "System.Runtime", Name, EventStore.StoreMetrics.MeterName));

        var endpoint = builder.Configuration["Telemetry:OtlpEndpoint"] ?? builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
        if (string.IsNullOrWhiteSpace(endpoint)) return;
        // gRPC (default, port 4317) or http/protobuf (4318, where each signal has its own path, added by the exporter).
        var protocol = (builder.Configuration["Telemetry:OtlpProtocol"] ?? builder.Configuration["OTEL_EXPORTER_OTLP_PROTOCOL"]) switch
        {
            null or "" or "grpc" => OtlpExportProtocol.Grpc,
            "http/protobuf" => OtlpExportProtocol.HttpProtobuf,
            var other => throw new InvalidOperationException($"Telemetry:OtlpProtocol '{other}' is unknown: use grpc or http/protobuf."),
        };
        // Logs go too, each with the trace and span it was written in: from a failed span in the trace view to its error.
        telemetry.WithLogging(_ => { }, o => o.IncludeFormattedMessage = true).UseOtlpExporter(protocol, new Uri(endpoint));
    }
}
