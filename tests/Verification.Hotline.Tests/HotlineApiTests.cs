using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Verification.Hotline.Alerts.Deadlines;
using Verification.Incidents;
using Verification.Incidents.Filing;
using Verification.ServiceDefaults;
using Verification.Testing;
using Contract = Verification.Contracts;

namespace Verification.Hotline.Tests;

/// <summary>The incidents and hotline services, each with its own database, talking over one real RabbitMQ.</summary>
public sealed class HotlineServers : IAsyncLifetime
{
    public PostgresDatabaseFixture IncidentsDb { get; } = new();
    public PostgresDatabaseFixture HotlineDb { get; } = new();
    public RabbitMqFixture Rabbit { get; } = new();
    public ServiceHost Incidents { get; private set; } = null!;
    public ServiceHost Hotline { get; set; } = null!;
    public ManualClock Clock { get; } = new(DateTimeOffset.UtcNow);

    public async Task InitializeAsync()
    {
        await Task.WhenAll(IncidentsDb.InitializeAsync(), HotlineDb.InitializeAsync(), Rabbit.InitializeAsync());
        Incidents = await ServiceHost.StartAsync(IncidentsModule.Name,
            new Dictionary<string, string?> { ["ConnectionStrings:Postgres"] = IncidentsDb.ConnectionString, ["Bus:RabbitMq"] = Rabbit.Amqp.ToString() },
            b => b.AddIncidents(), a => a.MapIncidentsApi());
        Hotline = await StartHotlineAsync();
    }

    public Task<ServiceHost> StartHotlineAsync() => ServiceHost.StartAsync(HotlineModule.Name,
        new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = HotlineDb.ConnectionString, ["Bus:RabbitMq"] = Rabbit.Amqp.ToString(),
            ["Hotline:WorkerInterval"] = "00:00:00.100", ["Mediators:0:Code"] = "US",
            ["Hotline:Templates:ru:incident"] = "Инцидент {incidentId}: {category}, {region}",
        },
        module: null, a => a.MapHotlineApi(),
        [typeof(Contract.AlertRaised), typeof(Contract.AlertEscalated), typeof(Contract.AlertExpiredUnacknowledged), typeof(Contract.PreNotificationAcknowledged)],
        configure: o => o.Modules.Add(b => b.AddHotline(o)),
        services: s => s.AddSingleton<TimeProvider>(Clock));

    public async Task DisposeAsync()
    {
        await Incidents.DisposeAsync();
        await Hotline.DisposeAsync();
        await Task.WhenAll(IncidentsDb.DisposeAsync(), HotlineDb.DisposeAsync(), Rabbit.DisposeAsync());
    }

    public async Task<long> CountAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(HotlineDb.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }
}

public sealed class HotlineApiTests(HotlineServers servers) : IClassFixture<HotlineServers>
{
    private ServiceHost Hotline => servers.Hotline;

    private async Task<string> FileIncidentAsync(string allegedParty = "RU")
    {
        var request = new FileIncidentRequest(DateTimeOffset.UtcNow.AddHours(-1), Incidents.Domain.TimePrecision.Exact,
            new Incidents.Domain.Location(49.99, 36.23, "Kharkiv", Incidents.Domain.LocationPrecision.Exact), Incidents.Domain.Category.MissileStrike,
            [Incidents.Domain.TargetType.Medical], "Strike on a maternity hospital", AllegedParty: allegedParty);
        using var response = await servers.Incidents.SendAsync(HttpMethod.Post, "/incidents", request, Roles.Monitor);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<FiledResponse>(ServiceHost.Json))!.Id;
    }

    private async Task<JsonElement?> AlertAsync(string alertId, string party)
    {
        using var response = await Hotline.SendAsync(HttpMethod.Get, $"/alerts/{alertId}", null, Roles.Liaison, party);
        return response.StatusCode == HttpStatusCode.OK ? JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone() : null;
    }

    private async Task<JsonElement> WaitForAlertAsync(string alertId, string party) =>
        (await Eventually.Get(async () => await AlertAsync(alertId, party) is { } a ? (object)a : null, TimeSpan.FromSeconds(30), $"alert {alertId}") as JsonElement?)!.Value;

    [Fact]
    public async Task A_filed_incident_becomes_an_alert_for_the_concerned_partys_officers_only()
    {
        var incident = await FileIncidentAsync();
        var alertId = $"alert-{incident}-RU";
        var alert = await WaitForAlertAsync(alertId, "RU");
        Assert.Equal("critical", alert.GetProperty("severity").GetString());
        Assert.Equal("ru", alert.GetProperty("language").GetString());
        Assert.StartsWith("Инцидент", alert.GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.NotNull(await AlertAsync($"alert-{incident}-US", "US"));

        using var list = await Hotline.SendAsync(HttpMethod.Get, "/alerts", null, Roles.Liaison, "RU");
        Assert.Contains(alertId, (await list.Content.ReadAsStringAsync()));
        using var uaList = await Hotline.SendAsync(HttpMethod.Get, "/alerts", null, Roles.Liaison, "UA");
        Assert.DoesNotContain(incident, await uaList.Content.ReadAsStringAsync());
        using var uaRead = await Hotline.SendAsync(HttpMethod.Get, $"/alerts/{alertId}", null, Roles.Liaison, "UA");
        Assert.Equal(HttpStatusCode.Forbidden, uaRead.StatusCode);
        using var uaOtherList = await Hotline.SendAsync(HttpMethod.Get, "/alerts?party=RU", null, Roles.Liaison, "UA");
        Assert.Equal(HttpStatusCode.Forbidden, uaOtherList.StatusCode);

        var before = await servers.CountAsync("SELECT count(*) FROM hotline.events");
        using var uaAck = await Hotline.SendAsync(HttpMethod.Post, $"/alerts/{alertId}/acknowledgement", new { response = "received" }, Roles.Liaison, "UA");
        Assert.Equal(HttpStatusCode.Forbidden, uaAck.StatusCode);
        using var monitorAck = await Hotline.SendAsync(HttpMethod.Post, $"/alerts/{alertId}/acknowledgement", new { response = "received" }, Roles.Monitor);
        Assert.Equal(HttpStatusCode.Forbidden, monitorAck.StatusCode);
        using var badAck = await Hotline.SendAsync(HttpMethod.Post, $"/alerts/{alertId}/acknowledgement", new { response = "maybe" }, Roles.Liaison, "RU");
        Assert.Equal(HttpStatusCode.BadRequest, badAck.StatusCode);
        Assert.Equal(before, await servers.CountAsync("SELECT count(*) FROM hotline.events"));

        using var ack = await Hotline.SendAsync(HttpMethod.Post, $"/alerts/{alertId}/acknowledgement", new { response = "investigating", text = "checking" }, Roles.Liaison, "RU");
        Assert.Equal(HttpStatusCode.OK, ack.StatusCode);
        Assert.Equal("acknowledged", (await WaitForAlertAsync(alertId, "RU")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Of_two_officers_acknowledging_at_once_exactly_one_wins()
    {
        var incident = await FileIncidentAsync();
        var alertId = $"alert-{incident}-RU";
        await WaitForAlertAsync(alertId, "RU");
        var answers = await Task.WhenAll(Enumerable.Range(0, 2).Select(i =>
            Hotline.SendAsync(HttpMethod.Post, $"/alerts/{alertId}/acknowledgement", new { response = "received" }, Roles.Liaison, "RU", $"officer-{i}")));
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.Conflict], answers.Select(a => a.StatusCode).Order());
        Assert.Equal(1, await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id = '{alertId}' AND type = 'alert_acknowledged'"));
        foreach (var answer in answers) answer.Dispose();
    }

    [Fact]
    public async Task The_same_IncidentFiled_delivered_again_raises_no_second_alert()
    {
        var incidentId = "inc-dup-" + Guid.NewGuid().ToString("N")[..8];
        var message = new Contract.IncidentFiled(incidentId, DateTimeOffset.UtcNow, null, 50, 30, "Kyiv", "droneStrike", ["energySubstation"], "RU", "high", 0, 0, DateTimeOffset.UtcNow);
        var bus = Hotline.Services.GetRequiredService<IBus>();
        var messageId = Guid.NewGuid();
        var otherId = Guid.NewGuid();
        await bus.Publish(message, c => c.MessageId = messageId);
        await bus.Publish(message, c => c.MessageId = messageId);
        await bus.Publish(message, c => c.MessageId = otherId); // the same facts under a new message id
        await WaitForAlertAsync($"alert-{incidentId}-RU", "RU");
        await Eventually.True(async () => await servers.CountAsync(
                $"SELECT count(*) FROM hotline.inbox WHERE consumer = 'hotline-incident-filed' AND message_id IN ('{messageId}', '{otherId}')") == 2,
            what: "both message ids handled");
        var addressees = 1 + Hotline.Services.GetRequiredService<PartyDirectory>().Mediators.Count();
        Assert.Equal(addressees, await servers.CountAsync($"SELECT count(*) FROM hotline.streams WHERE id LIKE 'alert-{incidentId}-%'"));
        Assert.Equal(addressees, await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id LIKE 'alert-{incidentId}-%'"));
    }

    [Fact]
    public async Task A_missed_deadline_escalates_exactly_once_across_a_restart_of_the_worker()
    {
        var incident = await FileIncidentAsync();
        var alertId = $"alert-{incident}-RU";
        await WaitForAlertAsync(alertId, "RU");
        await servers.Hotline.DisposeAsync();                // the worker stops mid-deadline
        servers.Clock.Advance(TimeSpan.FromMinutes(16));      // the critical deadline (15 min) passes while it is down

        var restarted = await servers.StartHotlineAsync();
        servers.Hotline = restarted;
        await Eventually.True(async () => await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id = '{alertId}' AND type = 'alert_escalated'") == 1,
            TimeSpan.FromSeconds(30), "the escalation");
        // More passes of the worker (and a direct one) change nothing for this alert until its next deadline.
        var worker = restarted.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().OfType<DeadlineWorker>().Single();
        await worker.FireDueAsync(CancellationToken.None);
        Assert.Equal(1, await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id = '{alertId}' AND type = 'alert_expired_unacknowledged'"));
        Assert.Equal(1, await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id = '{alertId}' AND type = 'alert_escalated'"));
        var alert = await WaitForAlertAsync(alertId, "RU");
        Assert.Equal("dutyOfficer", alert.GetProperty("escalationLevel").GetString());
        await Eventually.Get(() => Task.FromResult(restarted.Messages.Of<Contract.AlertExpiredUnacknowledged>().FirstOrDefault(m => m.AlertId == alertId)),
            what: "AlertExpiredUnacknowledged on the bus");
    }

    [Fact]
    public async Task An_alert_whose_missed_deadline_cannot_be_recorded_is_set_aside_and_the_others_still_escalate()
    {
        var blocked = $"alert-{await FileIncidentAsync()}-RU";
        await WaitForAlertAsync(blocked, "RU");
        servers.Clock.Advance(TimeSpan.FromMinutes(1));   // so it is due before the other
        var other = $"alert-{await FileIncidentAsync()}-RU";
        await WaitForAlertAsync(other, "RU");
        // Its stream refuses every append from now on (archived), so its silence cannot be recorded.
        Assert.True(await Hotline.Services.GetRequiredKeyedService<EventStore.EventStore>(HotlineModule.Name).ArchiveStreamAsync(blocked));
        servers.Clock.Advance(TimeSpan.FromMinutes(16));

        await Eventually.True(async () => await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id = '{other}' AND type = 'alert_escalated'") == 1,
            TimeSpan.FromSeconds(30), "the other alert to escalate past the one that cannot");
        Assert.Equal(0, await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id = '{blocked}' AND type <> 'alert_raised'"));
        // A pass while it is set aside passes it over without failing.
        var worker = Hotline.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().OfType<DeadlineWorker>().Single();
        await worker.FireDueAsync(CancellationToken.None);
        Assert.Equal(0, await servers.CountAsync($"SELECT count(*) FROM hotline.events WHERE stream_id = '{blocked}' AND type <> 'alert_raised'"));
    }

    [Fact]
    public async Task The_live_feed_pushes_a_new_alert_to_the_addressed_partys_officers_only()
    {
        using var ruFeed = await OpenFeedAsync("RU");
        using var uaFeed = await OpenFeedAsync("UA");
        var forRu = await FileIncidentAsync("RU");
        var ruEvent = await ReadEventAsync(ruFeed);
        Assert.Contains($"alert-{forRu}-RU", ruEvent, StringComparison.Ordinal);
        var forUa = await FileIncidentAsync("UA");
        var uaEvent = await ReadEventAsync(uaFeed);
        Assert.Contains($"alert-{forUa}-UA", uaEvent, StringComparison.Ordinal); // its first event: it never got RU's
    }

    [Fact]
    public async Task An_officer_on_one_replica_hears_an_alert_raised_on_another()
    {
        using var ruFeed = await OpenFeedAsync("RU");
        await using var other = await servers.StartHotlineAsync();   // a second replica on the same database and queues
        var id = await SendPreNotificationAsync(other, 50.45, 30.52, "Kyiv", TimeSpan.FromHours(4), "Heating plant repair");
        Assert.Contains("\"status\":\"open\"", await ReadEventAboutAsync(ruFeed, id), StringComparison.Ordinal);

        // Its acknowledgement on the first replica reaches the feed once, with the new state.
        using var ack = await Hotline.SendAsync(HttpMethod.Post, $"/alerts/{id}/acknowledgement", new { }, Roles.Liaison, "RU");
        Assert.Equal(HttpStatusCode.OK, ack.StatusCode);
        Assert.DoesNotContain("\"status\":\"open\"", await ReadEventAboutAsync(ruFeed, id), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_event_this_replica_cannot_read_is_passed_over_by_its_feed_and_later_alerts_still_arrive()
    {
        using var ruFeed = await OpenFeedAsync("RU");
        // A newer replica (a rolling deployment) writes a channel change at a schema version this code does not know.
        var running = Hotline.Services.GetRequiredKeyedService<Verification.EventStore.EventStore>(HotlineModule.Name);
        var newerOptions = new Verification.EventStore.EventStoreOptions { Schema = running.Schema };
        newerOptions.Types.Register<Verification.Hotline.Domain.ChannelStatusChanged>("channel_status_changed", version: 2);
        var newer = new Verification.EventStore.EventStore(running.DataSource, newerOptions);
        await newer.AppendAsync("channel-newer", "channel", null,
            [new Verification.Hotline.Domain.ChannelStatusChanged("ZZ", Verification.Hotline.Domain.ChannelStatus.Active, null, "tester", DateTimeOffset.UtcNow)]);
        await Assert.ThrowsAsync<Verification.EventStore.UnreadableEventException>(() => running.ReadStreamAsync("channel-newer"));

        // An alert raised after it on another replica reaches this replica's officers through the log's tail. (Only the
        // tail reads the whole log here, so the event stays for the other tests: their replicas' tails start after it.)
        await using var other = await servers.StartHotlineAsync();
        var id = await SendPreNotificationAsync(other, 50.45, 30.52, "Kyiv", TimeSpan.FromHours(2), "Water main repair");
        Assert.Contains("\"status\":\"open\"", await ReadEventAboutAsync(ruFeed, id), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_pre_notification_is_acknowledged_by_the_other_party_and_the_window_is_published()
    {
        var id = await SendPreNotificationAsync(Hotline, 47.51, 34.58, "Zaporizhzhia", TimeSpan.FromHours(6), "Repair of the 750 kV line");
        Assert.NotNull(await AlertAsync(id, "UA")); // the sender can read its own notice
        using var selfAck = await Hotline.SendAsync(HttpMethod.Post, $"/alerts/{id}/acknowledgement", new { }, Roles.Liaison, "UA");
        Assert.Equal(HttpStatusCode.Forbidden, selfAck.StatusCode);
        using var ack = await Hotline.SendAsync(HttpMethod.Post, $"/alerts/{id}/acknowledgement", new { }, Roles.Liaison, "RU");
        Assert.Equal(HttpStatusCode.OK, ack.StatusCode);
        var agreed = await Eventually.Get(() => Task.FromResult(Hotline.Messages.Of<Contract.PreNotificationAcknowledged>().FirstOrDefault(m => m.AlertId == id)),
            what: "PreNotificationAcknowledged");
        Assert.Equal(("UA", "RU", "repairCrew"), (agreed.FromParty, agreed.ToParty, agreed.ActivityKind));
    }

    [Fact]
    public async Task A_suspended_channel_still_records_and_counts_alerts()
    {
        using var suspend = await Hotline.SendAsync(HttpMethod.Put, "/channels/UA", new { status = "suspended", reason = "maintenance" }, Roles.Liaison, "UA");
        Assert.Equal(HttpStatusCode.OK, suspend.StatusCode);
        using var foreign = await Hotline.SendAsync(HttpMethod.Put, "/channels/RU", new { status = "suspended" }, Roles.Liaison, "UA");
        Assert.Equal(HttpStatusCode.Forbidden, foreign.StatusCode);
        try
        {
            var incident = await FileIncidentAsync("UA");
            var alert = await WaitForAlertAsync($"alert-{incident}-UA", "UA");
            Assert.True(alert.GetProperty("channelSuspended").GetBoolean());
        }
        finally
        {
            using var resume = await Hotline.SendAsync(HttpMethod.Put, "/channels/UA", new { status = "active" }, Roles.Liaison, "UA");
            Assert.Equal(HttpStatusCode.OK, resume.StatusCode);
        }
    }

    /// <summary>UA's liaison notifies RU of a repair crew's window starting in an hour; returns the alert id.</summary>
    private static async Task<string> SendPreNotificationAsync(ServiceHost host, double latitude, double longitude, string region, TimeSpan length, string details)
    {
        var from = DateTimeOffset.UtcNow.AddHours(1);
        using var sent = await host.SendAsync(HttpMethod.Post, "/pre-notifications", new
        {
            toParty = "RU", activity = "repairCrew", latitude, longitude, radiusKm = 5, region, windowFrom = from, windowTo = from + length, details,
        }, Roles.Liaison, "UA");
        Assert.Equal(HttpStatusCode.Created, sent.StatusCode);
        return JsonDocument.Parse(await sent.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>The next feed event about <paramref name="id"/>: alerts raised by other tests may come first.</summary>
    private static async Task<string> ReadEventAboutAsync(StreamReader reader, string id)
    {
        string line;
        do line = await ReadEventAsync(reader);
        while (!line.Contains(id, StringComparison.Ordinal));
        return line;
    }

    private async Task<StreamReader> OpenFeedAsync(string party)
    {
        var request = Hotline.Request(HttpMethod.Get, "/alerts/feed", null, Roles.Liaison, party);
        var response = await Hotline.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.Equal(": connected", await reader.ReadLineAsync());
        return reader;
    }

    private static async Task<string> ReadEventAsync(StreamReader reader)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (await reader.ReadLineAsync(timeout.Token) is { } line)
            if (line.StartsWith("data: ", StringComparison.Ordinal)) return line;
        throw new InvalidOperationException("the feed ended");
    }
}
