using System.Text.Json;
using System.Text.Json.Serialization;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using OpenTelemetry.Trace;

namespace Verification.ServiceDefaults;

/// <summary>What a service adds to the defaults: its name, its consumers, extra tracing.</summary>
public sealed class ServiceDefaultsOptions
{
    public required string ServiceName { get; init; }

    /// <summary>Registers the service's consumers (and anything else on the bus configurator).</summary>
    public List<Action<IBusRegistrationConfigurator>> Bus { get; } = [];

    /// <summary>Registrations of the service's modules (one in a service process, all of them embedded).</summary>
    public List<Action<WebApplicationBuilder>> Modules { get; } = [];

    /// <summary>Extra tracing setup, e.g. a test's collecting processor.</summary>
    public List<Action<TracerProviderBuilder>> Tracing { get; } = [];

    public long MaxRequestBodyBytes { get; set; } = 1024 * 1024;
}

public static class ServiceDefaultsExtensions
{
    /// <summary>
    /// Telemetry, the bus, authentication, ProblemDetails, strict JSON, OpenAPI and health checks:
    /// everything a Verification service shares, configured from settings.
    /// </summary>
    public static WebApplicationBuilder AddServiceDefaults(this WebApplicationBuilder builder, string serviceName, Action<ServiceDefaultsOptions>? configure = null)
    {
        var options = new ServiceDefaultsOptions { ServiceName = serviceName };
        configure?.Invoke(options);
        var services = builder.Services;

        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes);
        services.AddSingleton(options);
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<PartyDirectory>();
        services.AddSingleton<LogSigner>();
        services.AddSingleton<VerifiableLogs>();
        services.AddHostedService<TreeHeadPublisher>();

        foreach (var module in options.Modules) module(builder);
        builder.AddTelemetry(options);
        builder.AddMessaging(options);
        builder.AddSecurity();
        builder.AddProblems();

        services.ConfigureHttpJsonOptions(json => ConfigureJson(json.SerializerOptions));
        // Binding failures become exceptions so the problem handler can name the bad field.
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddOpenApi();

        var health = services.AddHealthChecks();
        var connectionString = builder.Configuration.GetConnectionString("Postgres");
        if (!string.IsNullOrWhiteSpace(connectionString))
        {
            services.AddSingleton(_ => new NpgsqlDataSourceBuilder(connectionString) { Name = serviceName }.Build());
            health.AddCheck<PostgresHealthCheck>("postgres", tags: ["ready"]);
        }
        return builder;
    }

    /// <summary>The JSON rules of every API: camelCase, enums as strings, numbers as numbers, unknown properties rejected.</summary>
    public static void ConfigureJson(JsonSerializerOptions json)
    {
        json.PropertyNamingPolicy = JsonNamingPolicy.CamelCase;
        json.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false));
        json.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
        json.NumberHandling = JsonNumberHandling.Strict;   // the web defaults read "12" as 12: a type error here
        json.RespectRequiredConstructorParameters = true;
        json.RespectNullableAnnotations = true;
        json.MaxDepth = 32;
    }

    /// <summary>Middleware and endpoints every service has: problems, auth, OpenAPI, health.</summary>
    public static WebApplication UseServiceDefaults(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapOpenApi().AllowAnonymous();
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") }).AllowAnonymous();
        return app;
    }
}
