using Microsoft.Extensions.Configuration;
using Verification.Hotline.Alerts.Raising;
using Verification.Hotline.Domain;
using Verification.Hotline.PreNotifications.Sending;
using Verification.ServiceDefaults;

namespace Verification.Hotline.Tests;

public sealed class DecisionTests
{
    private static readonly DateTimeOffset Now = new(2026, 2, 3, 4, 0, 0, TimeSpan.Zero);
    private static readonly IConfiguration Configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Parties:0:Code"] = "UA", ["Parties:0:Language"] = "uk", ["Parties:1:Code"] = "RU", ["Parties:1:Language"] = "ru",
        ["Mediators:0:Code"] = "US", ["Mediators:1:Code"] = "AE",
        ["Hotline:Deadlines:critical"] = "00:15:00", ["Hotline:Deadlines:high"] = "01:00:00", ["Hotline:Deadlines:routine"] = "06:00:00",
        ["Hotline:Escalation:0:Level"] = "dutyOfficer", ["Hotline:Escalation:0:After"] = "00:15:00",
        ["Hotline:Escalation:1:Level"] = "seniorLiaison", ["Hotline:Escalation:1:After"] = "00:30:00",
        ["Hotline:Escalation:2:Level"] = "mediator", ["Hotline:Escalation:2:After"] = "01:00:00",
        ["Hotline:Templates:uk:incident"] = "Інцидент {incidentId} у {region}",
    }).Build();
    private static readonly PartyDirectory Parties = new(Configuration);
    private static readonly HotlineRules Rules = new(Configuration);
    private static readonly AlertFields Fields = new("inc-1", "missileStrike", ["medical"], "Kharkiv", 49.99, 36.23, Now.AddHours(-1), 0, 19);

    private static Alert Raised(string severity = "critical") =>
        Alert.Evolve(null, RaiseAlerts.Decide("inc-1", "RU", severity, Fields, Parties, new HashSet<string>(), new HashSet<string>(), Rules, Now)[0])!;

    private static Alert Apply(Alert alert, IEnumerable<object> events) => events.Aggregate(alert, (a, e) => Alert.Evolve(a, e)!);

    [Fact]
    public void An_incident_alerts_the_concerned_party_and_every_mediator_with_a_deadline_by_severity()
    {
        var alerts = RaiseAlerts.Decide("inc-1", "RU", "critical", Fields, Parties, new HashSet<string> { "US" }, new HashSet<string>(), Rules, Now);
        Assert.Equal(["RU", "US", "AE"], alerts.Select(a => a.Addressee));
        Assert.All(alerts, a => Assert.Equal(Now.AddMinutes(15), a.DueAt));
        Assert.Equal([false, true, false], alerts.Select(a => a.ChannelSuspended));
        Assert.Equal("alert-inc-1-RU", alerts[0].AlertId);
        Assert.Equal(Now.AddHours(6), RaiseAlerts.Decide("inc-1", null, "routine", Fields, Parties, new HashSet<string>(), new HashSet<string>(), Rules, Now)[0].DueAt);
    }

    [Fact]
    public void Addressees_already_alerted_get_no_second_alert()
    {
        var alerts = RaiseAlerts.Decide("inc-1", "RU", "high", Fields, Parties, new HashSet<string>(), new HashSet<string> { "RU", "US" }, Rules, Now);
        Assert.Equal(["AE"], alerts.Select(a => a.Addressee));
    }

    [Fact]
    public void Only_the_addressed_partys_officer_acknowledges_and_only_once()
    {
        var alert = Raised();
        Assert.Equal(403, Assert.Throws<Rejection>(() => Alert.Acknowledge(alert, new Actor("lo-ua", Roles.Liaison, "UA"), AcknowledgementResponse.Received, null, Now)).Status);
        var acknowledged = Apply(alert, Alert.Acknowledge(alert, new Actor("lo-ru", Roles.Liaison, "RU"), AcknowledgementResponse.Disputes, "not ours", Now.AddMinutes(20)));
        Assert.Equal(AlertStatus.Acknowledged, acknowledged.Status);
        Assert.True(acknowledged.Acknowledgement!.Late);
        Assert.Equal(409, Assert.Throws<Rejection>(() => Alert.Acknowledge(acknowledged, new Actor("lo-ru2", Roles.Liaison, "RU"), AcknowledgementResponse.Received, null, Now)).Status);
        Assert.Empty(Alert.Expire(acknowledged, Rules, Now.AddDays(1)));
    }

    [Fact]
    public void Silence_is_recorded_then_climbs_the_ladder_one_step_per_missed_deadline_then_lapses()
    {
        var alert = Raised();
        Assert.Empty(Alert.Expire(alert, Rules, Now.AddMinutes(14)));

        var first = Alert.Expire(alert, Rules, Now.AddMinutes(15));
        Assert.IsType<AlertExpiredUnacknowledged>(first[0]);
        var step1 = Assert.IsType<AlertEscalated>(first[1]);
        Assert.Equal((1, "dutyOfficer", Now.AddMinutes(30)), (step1.Step, step1.Level, step1.DueAt));
        alert = Apply(alert, first);
        Assert.Empty(Alert.Expire(alert, Rules, Now.AddMinutes(29)));

        var second = Alert.Expire(alert, Rules, Now.AddMinutes(31));
        Assert.Equal((2, "seniorLiaison"), (((AlertEscalated)Assert.Single(second)).Step, ((AlertEscalated)second[0]).Level));
        alert = Apply(alert, second);
        alert = Apply(alert, Alert.Expire(alert, Rules, Now.AddHours(2)));
        Assert.Equal((3, "mediator"), (alert.Step, alert.Escalations[^1].Level));
        var last = Alert.Expire(alert, Rules, Now.AddHours(4));
        Assert.IsType<AlertLapsed>(Assert.Single(last));
        Assert.Equal(AlertStatus.Lapsed, Apply(alert, last).Status);
    }

    [Fact]
    public void A_pre_notification_goes_to_the_other_party_and_can_be_objected_to_but_an_incident_alert_cannot()
    {
        var request = new SendPreNotificationRequest("RU", ActivityKind.RepairCrew, 47.5, 35.1, 5, "Zaporizhzhia", Now.AddHours(2), Now.AddHours(8), "Repair of 750 kV line");
        var raised = SendPreNotification.Decide("alert-pn-1", request, new Actor("lo-ua", Roles.Liaison, "UA"), Parties, Rules, false, Now);
        Assert.Equal(("RU", "UA", AlertKind.PreNotification), (raised.Addressee, raised.FromParty, raised.Kind));
        Assert.Contains("toParty", Assert.Throws<Rejection>(() => SendPreNotification.Decide("x", request with { ToParty = "UA" }, new Actor("lo-ua", Roles.Liaison, "UA"), Parties, Rules, false, Now)).Errors!.Keys);
        Assert.Contains("windowTo", Assert.Throws<Rejection>(() => SendPreNotification.Decide("x", request with { WindowTo = Now.AddHours(1) }, new Actor("lo-ua", Roles.Liaison, "UA"), Parties, Rules, false, Now)).Errors!.Keys);

        var notice = Alert.Evolve(null, raised)!;
        Assert.Equal(AlertStatus.Objected, Apply(notice, Alert.Object(notice, new Actor("lo-ru", Roles.Liaison, "RU"), "sector under fire", Now)).Status);
        Assert.Equal(422, Assert.Throws<Rejection>(() => Alert.Object(Raised(), new Actor("lo-ru", Roles.Liaison, "RU"), "no", Now)).Status);
    }

    [Fact]
    public void Each_side_reads_the_same_fields_in_its_own_language()
    {
        var alert = Raised();
        Assert.Equal("Інцидент inc-1 у Kharkiv", Rules.Render(alert.Raised, "uk"));
        Assert.StartsWith("Incident inc-1: missileStrike at Kharkiv", Rules.Render(alert.Raised, "ru"), StringComparison.Ordinal);
    }
    [Fact]
    public async Task The_feed_sends_each_version_once_and_never_an_older_one_after_a_newer()
    {
        var feed = new Verification.Hotline.Alerts.Reading.AlertFeed();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        // The iterator runs up to its first wait on MoveNextAsync: the subscription is in place before anything is published.
        await using var subscription = feed.SubscribeAsync("RU", stop.Token).GetAsyncEnumerator(stop.Token);
        var next = subscription.MoveNextAsync();
        var raised = Raised();
        feed.Publish(raised, 1);
        var acknowledged = Alert.Evolve(raised, new AlertAcknowledged(raised.Id, "RU", "ru-officer", AcknowledgementResponse.Received, null, false, Now))!;
        feed.Publish(raised, 1);          // the log's tail, late: the same version again
        feed.Publish(acknowledged, 2);
        feed.Publish(raised, 1);          // the tail, later still: an older version
        feed.Publish(acknowledged, 2);
        var received = new List<AlertStatus>();
        while (await next)
        {
            received.Add(subscription.Current.Status);
            if (received.Count == 2) break;
            next = subscription.MoveNextAsync();
        }
        Assert.Equal([AlertStatus.Open, AlertStatus.Acknowledged], received);
        // Everything was published before reading: a third item would be there already.
        var third = subscription.MoveNextAsync();
        Assert.False(third.IsCompleted, "nothing more was sent");
        await stop.CancelAsync();   // the officer disconnects
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await third);
    }
}
