using Verification.EventStore;
using Verification.Hotline.Alerts.Acknowledging;
using Verification.Hotline.Alerts.Deadlines;
using Verification.Hotline.Alerts.Raising;
using Verification.Hotline.Alerts.Reading;
using Verification.Hotline.Channels;
using Verification.Hotline.Domain;
using Verification.Hotline.PreNotifications.Sending;
using Verification.ServiceDefaults;
using Contract = Verification.Contracts;

namespace Verification.Hotline;

/// <summary>The hotline service as a module: alerts, acknowledgements, deadlines and escalation, pre-notifications, channels.</summary>
public static class HotlineModule
{
    public const string Name = "hotline";

    public static void AddHotline(this WebApplicationBuilder builder, ServiceDefaultsOptions defaults)
    {
        var connectionString = ConnectionStrings.For(builder.Configuration, Name);
        builder.Services.AddEventStore(Name, connectionString, o =>
        {
            o.Types.Register<AlertRaised>("alert_raised").Register<AlertAcknowledged>("alert_acknowledged").Register<AlertObjected>("alert_objected")
                .Register<AlertExpiredUnacknowledged>("alert_expired_unacknowledged").Register<AlertEscalated>("alert_escalated")
                .Register<AlertLapsed>("alert_lapsed").Register<ChannelStatusChanged>("channel_status_changed")
                .Register<Contract.AlertRaised>("msg.alert_raised.v1").Register<Contract.AlertAcknowledged>("msg.alert_acknowledged.v1")
                .Register<Contract.AlertEscalated>("msg.alert_escalated.v1").Register<Contract.AlertExpiredUnacknowledged>("msg.alert_expired_unacknowledged.v1")
                .Register<Contract.PreNotificationSent>("msg.pre_notification_sent.v1").Register<Contract.PreNotificationAcknowledged>("msg.pre_notification_acknowledged.v1")
                .Register<Contract.PreNotificationObjected>("msg.pre_notification_objected.v1").Register<Contract.ChannelStatusChanged>("msg.channel_status_changed.v1");
            o.InlineProjections.Add(AlertQueries.View());
            o.InlineProjections.Add(ChangeChannelStatus.View());
            o.ApplicationRole = builder.Configuration["Hotline:ApplicationRole"];
        });
        builder.Services.AddSingleton<HotlineRules>();
        builder.Services.AddSingleton<AlertFeed>();
        builder.Services.AddHostedService<AlertFeedTail>();
        builder.Services.AddHostedService<DeadlineWorker>();
        defaults.Bus.Add(bus =>
        {
            bus.AddConsumer<IncidentFiledConsumer>();
            bus.AddConsumer<IncidentGradedConsumer>();
        });
    }

    public static WebApplication MapHotlineApi(this WebApplication app)
    {
        var alerts = app.MapGroup("/alerts").RequireAuthorization().WithTags("Alerts");
        AlertQueries.Map(alerts);
        Acknowledge.Map(alerts);
        SendPreNotification.Map(app.MapGroup("/pre-notifications").RequireAuthorization().WithTags("Pre-notifications"));
        ChangeChannelStatus.Map(app.MapGroup("/channels").RequireAuthorization().WithTags("Channels"));
        return app;
    }
}
