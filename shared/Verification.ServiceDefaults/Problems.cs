using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using Verification.EventStore;

namespace Verification.ServiceDefaults;

internal static class Problems
{
    internal static void AddProblems(this WebApplicationBuilder builder)
    {
        builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = context =>
            context.ProblemDetails.Extensions["traceId"] = Activity.Current?.TraceId.ToString() ?? context.HttpContext.TraceIdentifier);
        builder.Services.AddExceptionHandler<ProblemExceptionHandler>();
    }
}

/// <summary>Turns known failures into RFC 9457 problems with the right status; the rest are 500s.</summary>
internal sealed partial class ProblemExceptionHandler(IProblemDetailsService problems, ILogger<ProblemExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        var (status, title, detail) = exception switch
        {
            BadHttpRequestException { InnerException: JsonException json } => (400, "The request body is not valid", Describe(json)),
            BadHttpRequestException bad => (bad.StatusCode, bad.StatusCode == 413 ? "The request body is too large" : "The request is not valid", bad.Message),
            ConcurrencyException conflict => (409, "The stream was changed by someone else", conflict.Message),
            StreamArchivedException archived => (409, "The stream is archived", archived.Message),
            RebuildFailedException rebuild => (409, "The projection cannot be rebuilt", rebuild.Message),
            // Written by newer code (a rolling deployment): another replica, or this one once upgraded, reads it.
            UnreadableEventException unreadable => (503, "This instance cannot read part of the record yet", unreadable.Message),
            UnstorableTextException text => (400, Unstorable, text.Message),
            // A NUL in a value a query compares with (an id in the path, a filter): PostgreSQL refuses it before looking.
            PostgresException { SqlState: PostgresErrorCodes.CharacterNotInRepertoire or PostgresErrorCodes.UntranslatableCharacter } =>
                (400, Unstorable, "text must not contain U+0000 (NUL)"),
            Rejection rejection => (rejection.Status, rejection.Title, rejection.Message),
            _ => (500, "An unexpected error occurred", null),
        };
        if (status >= 500) LogUnhandled(logger, exception);
        httpContext.Response.StatusCode = status;
        if (status == 503) httpContext.Response.Headers.RetryAfter = "5";
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            Exception = exception,
            ProblemDetails = exception is Rejection { Errors: { } errors }
                ? new HttpValidationProblemDetails(errors) { Status = status, Title = title, Detail = detail }
                : new ProblemDetails { Status = status, Title = title, Detail = detail },
        });
    }

    private const string Unstorable = "The request contains text that cannot be stored";

    private static string Describe(JsonException json) =>
        json.Path is { Length: > 0 } path ? $"{path}: {json.Message}" : json.Message;

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled exception")]
    private static partial void LogUnhandled(ILogger logger, Exception exception);
}
