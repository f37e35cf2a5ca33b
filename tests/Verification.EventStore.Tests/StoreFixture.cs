using Npgsql;
using Verification.EventStore;
using Verification.Testing;

namespace Verification.EventStore.Tests;

public sealed record Noted(string IncidentId, string Region, int Count);
public sealed record Revised(string IncidentId, int Count);
/// <summary>Version 2 of a note: the count became low/high.</summary>
public sealed record NotedV2(string IncidentId, string Region, int Low, int High);

public sealed record IncidentView(string Id, string Region, int Count, int Revisions);
public sealed record RegionTally(string Region, long Events, long Count);

/// <summary>A fresh database per test class and a store with the test's event types and projections.</summary>
public class StoreFixture : PostgresDatabaseFixture
{
    public EventStore Store { get; private set; } = null!;
    public NpgsqlDataSource DataSource { get; private set; } = null!;

    public static DocumentProjection<IncidentView> IncidentViews() => DocumentProjection<IncidentView>.SingleStream("incident_view", (view, e) => e.Data switch
    {
        Noted n => new IncidentView(n.IncidentId, n.Region, n.Count, 0),
        Revised r when view is not null => view with { Count = r.Count, Revisions = view.Revisions + 1 },
        _ => view,
    }).Index("region", "data->>'region'");

    public static DocumentProjection<RegionTally> RegionTallies() => new("region_tally",
        e => e.Data switch { Noted n => n.Region, _ => null },
        (tally, e) => e.Data is Noted n ? new RegionTally(n.Region, (tally?.Events ?? 0) + 1, (tally?.Count ?? 0) + n.Count) : tally);

    public static EventStoreOptions Options(string schema = "es")
    {
        var options = new EventStoreOptions { Schema = schema, PollInterval = TimeSpan.FromMilliseconds(200) };
        options.Types.Register<Noted>("noted").Register<Revised>("revised");
        options.InlineProjections.Add(IncidentViews());
        options.AsyncProjections.Add(RegionTallies());
        return options;
    }

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        DataSource = NpgsqlDataSource.Create(ServiceCollectionExtensions.WithStoreSettings(ConnectionString));   // as services run it
        Store = new EventStore(DataSource, Options());
        await Store.MigrateAsync();
    }

    public override async Task DisposeAsync()
    {
        await DataSource.DisposeAsync();
        await base.DisposeAsync();
    }

    /// <summary>
    /// The store's gauges as an exporter reads them, just sampled, for this store's schema: "unsent", and "lag/{projection}/{generation}"
    /// and "failing/{projection}/{generation}".
    /// </summary>
    public static async Task<Dictionary<string, long>> GaugesAsync(EventStore store)
    {
        await new StoreMetrics(store).SampleAsync(CancellationToken.None);
        var values = new Dictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == StoreMetrics.MeterName) l.EnableMeasurementEvents(instrument);
        };
        void Record(System.Diagnostics.Metrics.Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var tag = new Dictionary<string, object?>(tags.ToArray());
            if ((string?)tag["schema"] != store.Schema) return;
            var name = instrument.Name["verification.eventstore.".Length..].Replace("projection.", "", StringComparison.Ordinal).Replace("outbox.", "", StringComparison.Ordinal);
            values[tag.TryGetValue("projection", out var projection) ? $"{name}/{projection}/{tag["generation"]}" : name] = value;
        }
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
        listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Record(instrument, value, tags));
        listener.Start();
        listener.RecordObservableInstruments();
        return values;
    }

    public async Task<long> ScalarAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
