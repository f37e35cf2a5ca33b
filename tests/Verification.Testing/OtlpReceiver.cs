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

/// <summary>
/// An OTLP/HTTP (protobuf) trace receiver on loopback: services export to it as they would to a collector, and
/// tests read the spans. Only the fields a test needs are decoded (trace, span and parent ids, name, kind, service.name).
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly ConcurrentQueue<ExportedSpan> _spans = new();
    private WebApplication? _app;

    public Uri Endpoint { get; private set; } = null!;
    public IReadOnlyList<ExportedSpan> All => _spans.ToList();
    public IReadOnlyList<ExportedSpan> OfTrace(string traceId) => _spans.Where(s => s.TraceId == traceId).ToList();

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        _app = builder.Build();
        _app.MapPost("/v1/traces", async (HttpContext http) =>
        {
            using var buffer = new MemoryStream();
            await http.Request.Body.CopyToAsync(buffer);
            foreach (var span in Decode(buffer.ToArray())) _spans.Enqueue(span);
            return Results.Bytes([], "application/x-protobuf");
        });
        _app.MapPost("/v1/metrics", () => Results.Bytes([], "application/x-protobuf"));
        await _app.StartAsync();
        Endpoint = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    /// <summary>ExportTraceServiceRequest: 1 ResourceSpans { 1 Resource { 1 KeyValue }, 2 ScopeSpans { 2 Span } }.</summary>
    public static IEnumerable<ExportedSpan> Decode(ReadOnlyMemory<byte> request)
    {
        foreach (var resourceSpans in Fields(request).Where(f => f.Number == 1).Select(f => f.Bytes))
        {
            var service = "";
            foreach (var resource in Fields(resourceSpans).Where(f => f.Number == 1))
                foreach (var attribute in Fields(resource.Bytes).Where(f => f.Number == 1))
                {
                    var kv = Fields(attribute.Bytes).ToList();
                    if (Text(kv.FirstOrDefault(f => f.Number == 1).Bytes) == "service.name")
                        service = Text(Fields(kv.First(f => f.Number == 2).Bytes).FirstOrDefault(f => f.Number == 1).Bytes);
                }
            foreach (var scope in Fields(resourceSpans).Where(f => f.Number == 2))
                foreach (var span in Fields(scope.Bytes).Where(f => f.Number == 2))
                {
                    var fields = Fields(span.Bytes).ToList();
                    var parent = fields.FirstOrDefault(f => f.Number == 4).Bytes;
                    yield return new ExportedSpan(service, Hex(fields.First(f => f.Number == 1).Bytes), Hex(fields.First(f => f.Number == 2).Bytes),
                        parent.Length == 0 ? null : Hex(parent), Text(fields.FirstOrDefault(f => f.Number == 5).Bytes), (int)fields.FirstOrDefault(f => f.Number == 6).Value);
                }
        }
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
