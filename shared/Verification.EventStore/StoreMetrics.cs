using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Verification.EventStore;

/// <summary>
/// What an operator alerts on, sampled from the database every <see cref="Interval"/> as gauges of the meter
/// <c>Verification.EventStore</c>, one series per schema: outbox messages not yet published, and for each projection
/// generation the positions between the newest event and its checkpoint and whether it is stopped on a failure.
/// </summary>
public sealed class StoreMetrics(EventStore store) : BackgroundService
{
    public const string MeterName = "Verification.EventStore";
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(15);
    private static readonly Meter Meter = new(MeterName);
    private static readonly ConcurrentDictionary<EventStore, Sample> Samples = new();

    private sealed record Sample(long Unsent, IReadOnlyList<(string Name, int Generation, bool Live, long Lag, bool Failing)> Projections);

    static StoreMetrics()
    {
        Meter.CreateObservableGauge("verification.eventstore.outbox.unsent",
            () => Samples.Select(s => new Measurement<long>(s.Value.Unsent, new KeyValuePair<string, object?>("schema", s.Key.Schema))),
            "{message}", "outbox messages not yet published");
        Meter.CreateObservableGauge("verification.eventstore.projection.lag",
            () => Samples.SelectMany(s => s.Value.Projections.Select(p => new Measurement<long>(p.Lag, Tags(s.Key.Schema, p.Name, p.Generation, p.Live)))),
            "{position}", "positions between the newest event and the projection's checkpoint");
        Meter.CreateObservableGauge("verification.eventstore.projection.failing",
            () => Samples.SelectMany(s => s.Value.Projections.Select(p => new Measurement<int>(p.Failing ? 1 : 0, Tags(s.Key.Schema, p.Name, p.Generation, p.Live)))),
            "{projection}", "1 while the projection is stopped at an event it failed on");
    }

    private static KeyValuePair<string, object?>[] Tags(string schema, string projection, int generation, bool live) =>
        [new("schema", schema), new("projection", projection), new("generation", generation), new("live", live)];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await SampleAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Samples.TryRemove(store, out _);   // no figure rather than an old one passed off as current
            }
            await Task.Delay(Interval, stoppingToken);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        Samples.TryRemove(store, out _);
    }

    internal async Task SampleAsync(CancellationToken cancellationToken)
    {
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new($"SELECT (SELECT count(*) FROM {store.Schema}.outbox WHERE sent_at IS NULL), (SELECT coalesce(max(position), 0) FROM {store.Schema}.events)"),
                new($"SELECT name, generation, live, last_position, failure IS NOT NULL FROM {store.Schema}.projections ORDER BY name, generation"),
            },
        };
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var (unsent, newest) = (reader.GetInt64(0), reader.GetInt64(1));
        await reader.NextResultAsync(cancellationToken);
        var projections = new List<(string, int, bool, long, bool)>();
        while (await reader.ReadAsync(cancellationToken))
        {
            var (name, live) = (reader.GetString(0), reader.GetBoolean(2));
            // A live inline projection is written with the events: at the newest by construction.
            var inline = live && store.Options.InlineProjections.Exists(p => p.Name == name);
            projections.Add((name, reader.GetInt32(1), live, inline ? 0 : Math.Max(0, newest - reader.GetInt64(3)), reader.GetBoolean(4)));
        }
        Samples[store] = new Sample(unsent, projections);
    }
}
