using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Verification.Testing;

/// <summary>A span as exported over OTLP. Kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.</summary>
public sealed record ExportedSpan(string Service, string TraceId, string SpanId, string? ParentSpanId, string Name, int Kind);

/// <summary>A log record as exported over OTLP: the trace and span it was written in (null outside one). Severity: 17 is error.</summary>
public sealed record ExportedLog(string Service, string? TraceId, string? SpanId, int Severity, string Body);

/// <summary>
/// An OTLP/HTTP (protobuf) receiver of traces, logs and metrics on loopback: services export to it as they would to a
/// collector, and tests read what came. Only the fields a test needs are decoded (trace, span and parent ids, name,
/// kind, service.name; a log's severity and text body; a metric's name).
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly ConcurrentQueue<ExportedSpan> _spans = new();
    private readonly ConcurrentQueue<ExportedLog> _logs = new();
    private readonly ConcurrentDictionary<(string Service, string Metric), bool> _metrics = new();
    private WebApplication? _app;

    public Uri Endpoint { get; private set; } = null!;
    public IReadOnlyList<ExportedSpan> All => _spans.ToList();
    public IReadOnlyList<ExportedSpan> OfTrace(string traceId) => _spans.Where(s => s.TraceId == traceId).ToList();
    public IReadOnlyList<ExportedLog> Logs => _logs.ToList();
    /// <summary>The names of the metrics each service has exported.</summary>
    public ISet<string> MetricsOf(string service) => _metrics.Keys.Where(k => k.Service == service).Select(k => k.Metric).ToHashSet();

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        _app = builder.Build();
        Receive("/v1/traces", request => { foreach (var span in Decode(request)) _spans.Enqueue(span); });
        Receive("/v1/logs", request => { foreach (var log in DecodeLogs(request)) _logs.Enqueue(log); });
        Receive("/v1/metrics", request => { foreach (var metric in DecodeMetricNames(request)) _metrics[metric] = true; });
        await _app.StartAsync();
        Endpoint = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    private void Receive(string path, Action<ReadOnlyMemory<byte>> decode) => _app!.MapPost(path, async (HttpContext http) =>
    {
        using var buffer = new MemoryStream();
        await http.Request.Body.CopyToAsync(buffer);
        decode(buffer.ToArray());
        return Results.Bytes([], "application/x-protobuf");
    });

    /// <summary>ExportTraceServiceRequest: 1 ResourceSpans { 1 Resource { 1 KeyValue }, 2 ScopeSpans { 2 Span } }.</summary>
    public static IEnumerable<ExportedSpan> Decode(ReadOnlyMemory<byte> request) => Items(request).Select(item =>
    {
        var fields = Fields(item.Bytes).ToList();
        var parent = fields.FirstOrDefault(f => f.Number == 4).Bytes;
        return new ExportedSpan(item.Service, Hex(fields.First(f => f.Number == 1).Bytes), Hex(fields.First(f => f.Number == 2).Bytes),
            parent.Length == 0 ? null : Hex(parent), Text(fields.FirstOrDefault(f => f.Number == 5).Bytes), (int)fields.FirstOrDefault(f => f.Number == 6).Value);
    });

    /// <summary>ExportLogsServiceRequest: the same nesting; LogRecord { 2 severity, 5 body { 1 string }, 9 trace id, 10 span id }.</summary>
    public static IEnumerable<ExportedLog> DecodeLogs(ReadOnlyMemory<byte> request) => Items(request).Select(item =>
    {
        var fields = Fields(item.Bytes).ToList();
        var trace = fields.FirstOrDefault(f => f.Number == 9).Bytes;
        var span = fields.FirstOrDefault(f => f.Number == 10).Bytes;
        return new ExportedLog(item.Service, trace.Length == 0 ? null : Hex(trace), span.Length == 0 ? null : Hex(span),
            (int)fields.FirstOrDefault(f => f.Number == 2).Value, Text(Fields(fields.FirstOrDefault(f => f.Number == 5).Bytes).FirstOrDefault(f => f.Number == 1).Bytes));
    });

    /// <summary>ExportMetricsServiceRequest: the same nesting; Metric { 1 name }.</summary>
    public static IEnumerable<(string Service, string Metric)> DecodeMetricNames(ReadOnlyMemory<byte> request) =>
        Items(request).Select(item => (item.Service, Text(Fields(item.Bytes).FirstOrDefault(f => f.Number == 1).Bytes)));

    /// <summary>What each OTLP export request nests alike: 1 Resource{Spans,Logs,Metrics} { 1 Resource, 2 Scope… { 2 item } }.</summary>
    private static IEnumerable<(string Service, ReadOnlyMemory<byte> Bytes)> Items(ReadOnlyMemory<byte> request) =>
        from resource in Fields(request).Where(f => f.Number == 1)
        let service = ServiceName(resource.Bytes)
        from scope in Fields(resource.Bytes).Where(f => f.Number == 2)
        from item in Fields(scope.Bytes).Where(f => f.Number == 2)
        select (service, item.Bytes);

    /// <summary>The service.name attribute of a resource's 1 Resource { 1 KeyValue { 1 key, 2 AnyValue { 1 string } } }.</summary>
    private static string ServiceName(ReadOnlyMemory<byte> resourceSignals)
    {
        var service = "";
        foreach (var resource in Fields(resourceSignals).Where(f => f.Number == 1))
            foreach (var attribute in Fields(resource.Bytes).Where(f => f.Number == 1))
            {
                var kv = Fields(attribute.Bytes).ToList();
                if (Text(kv.FirstOrDefault(f => f.Number == 1).Bytes) == "service.name")
                    service = Text(Fields(kv.First(f => f.Number == 2).Bytes).FirstOrDefault(f => f.Number == 1).Bytes);
            }
        return service;
    }

    private static string Hex(ReadOnlyMemory<byte> bytes) => Convert.ToHexStringLower(bytes.Span);
    private static string Text(ReadOnlyMemory<byte> bytes) => System.Text.Encoding.UTF8.GetString(bytes.Span);

    /// <summary>The fields of one protobuf message: varints, fixed 32/64 and length-delimited bytes.</summary>
    private static IEnumerable<(int Number, ulong Value, ReadOnlyMemory<byte> Bytes)> Fields(ReadOnlyMemory<byte> message)
    {
        var offset = 0;
        while (offset < message.Length)
        {
            var key = Varint(message.Span, ref offset);
            var number = (int)(key >> 3);
            switch (key & 7)
            {
                case 0: yield return (number, Varint(message.Span, ref offset), default); break;
                case 1: yield return (number, BitConverter.ToUInt64(message.Span.Slice(offset, 8)), default); offset += 8; break;
                case 5: yield return (number, BitConverter.ToUInt32(message.Span.Slice(offset, 4)), default); offset += 4; break;
                case 2:
                    var length = (int)Varint(message.Span, ref offset);
                    yield return (number, 0, message.Slice(offset, length));
                    offset += length;
                    break;
                default: throw new InvalidDataException($"protobuf wire type {key & 7} is not supported");
            }
        }
    }

    private static ulong Varint(ReadOnlySpan<byte> data, ref int offset)
    {
        ulong value = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = data[offset++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return value;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }
}
