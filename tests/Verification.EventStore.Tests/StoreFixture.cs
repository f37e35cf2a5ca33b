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

    public async Task<long> ScalarAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
