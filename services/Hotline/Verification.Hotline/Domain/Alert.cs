using Verification.ServiceDefaults;

namespace Verification.Hotline.Domain;

public enum AlertKind { Incident, PreNotification }
public enum AcknowledgementResponse { Received, Investigating, Disputes, RequestsInformation }
public enum ActivityKind { RepairCrew, PullbackMovement, HumanitarianConvoy, Other }
public enum ChannelStatus { Active, Suspended }
public enum AlertStatus { Open, Acknowledged, Objected, Lapsed }

/// <summary>A pre-formatted notice's facts. The structured fields are the record; text is rendered per reader's language.</summary>
public sealed record AlertFields(
    string? IncidentId = null, string? Category = null, string[]? TargetTypes = null, string? Region = null, double? Latitude = null, double? Longitude = null,
    DateTimeOffset? OccurredFrom = null, int? KilledBest = null, int? InjuredBest = null,
    ActivityKind? Activity = null, double? RadiusKm = null, DateTimeOffset? WindowFrom = null, DateTimeOffset? WindowTo = null, string? Details = null);

// Events of an alert stream ("alert-…"): raised, then acknowledged / objected, or escalated step by step until lapsed.
public sealed record AlertRaised(string AlertId, AlertKind Kind, string Addressee, string? FromParty, string Severity, AlertFields Fields,
    bool ChannelSuspended, string RaisedBy, DateTimeOffset RaisedAt, DateTimeOffset DueAt);
public sealed record AlertAcknowledged(string AlertId, string Party, string By, AcknowledgementResponse Response, string? Text, bool Late, DateTimeOffset AcknowledgedAt);
public sealed record AlertObjected(string AlertId, string Party, string By, string Reason, DateTimeOffset ObjectedAt);
public sealed record AlertExpiredUnacknowledged(string AlertId, DateTimeOffset DueAt, DateTimeOffset ExpiredAt);
public sealed record AlertEscalated(string AlertId, int Step, string Level, DateTimeOffset EscalatedAt, DateTimeOffset DueAt);
public sealed record AlertLapsed(string AlertId, int Steps, DateTimeOffset LapsedAt);

// Events of a channel stream ("channel-…").
public sealed record ChannelStatusChanged(string Party, ChannelStatus Status, string? Reason, string By, DateTimeOffset ChangedAt);

public sealed record Alert(AlertRaised Raised, AlertStatus Status, DateTimeOffset DueAt, int Step, AlertAcknowledged? Acknowledgement,
    AlertObjected? Objection, IReadOnlyList<AlertEscalated> Escalations, bool ExpiredOnce)
{
    public string Id => Raised.AlertId;
    public bool Open => Status == AlertStatus.Open;

    public static Alert? Evolve(Alert? state, object e) => (state, e) switch
    {
        (null, AlertRaised r) => new Alert(r, AlertStatus.Open, r.DueAt, 0, null, null, [], false),
        (not null, AlertAcknowledged a) => state with { Status = AlertStatus.Acknowledged, Acknowledgement = a },
        (not null, AlertObjected o) => state with { Status = AlertStatus.Objected, Objection = o },
        (not null, AlertExpiredUnacknowledged) => state with { ExpiredOnce = true },
        (not null, AlertEscalated x) => state with { Step = x.Step, DueAt = x.DueAt, Escalations = [.. state.Escalations, x] },
        (not null, AlertLapsed) => state with { Status = AlertStatus.Lapsed },
        _ => state,
    };

    /// <summary>The officer of the addressed party answers; anyone else is refused, and only the first answer counts.</summary>
    public static object[] Acknowledge(Alert alert, Actor officer, AcknowledgementResponse response, string? text, DateTimeOffset now)
    {
        new Validation().Check(Enum.IsDefined(response), "response", "is not a known response")
            .Check(text is null || text.Length <= 4000, "text", "must be at most 4000 characters").ThrowIfInvalid();
        if (officer.Party != alert.Raised.Addressee) throw Rejection.Forbidden($"alert {alert.Id} is addressed to {alert.Raised.Addressee}");
        if (!alert.Open) throw Rejection.Conflict($"alert {alert.Id} is already {alert.Status.ToString().ToLowerInvariant()}");
        return [new AlertAcknowledged(alert.Id, officer.Party!, officer.Subject, response, text, now > alert.Raised.DueAt, now)];
    }

    public static object[] Object(Alert alert, Actor officer, string reason, DateTimeOffset now)
    {
        new Validation().Check(!string.IsNullOrWhiteSpace(reason) && reason.Length <= 4000, "reason", "is required, at most 4000 characters").ThrowIfInvalid();
        if (officer.Party != alert.Raised.Addressee) throw Rejection.Forbidden($"alert {alert.Id} is addressed to {alert.Raised.Addressee}");
        if (alert.Raised.Kind != AlertKind.PreNotification) throw Rejection.Unprocessable("only a pre-notification can be objected to");
        if (!alert.Open) throw Rejection.Conflict($"alert {alert.Id} is already {alert.Status.ToString().ToLowerInvariant()}");
        return [new AlertObjected(alert.Id, officer.Party!, officer.Subject, reason, now)];
    }

    /// <summary>
    /// The deadline passed without an answer: the first miss records the alert as unacknowledged; each miss climbs
    /// one step of the ladder with its own deadline; past the last step the alert lapses. Nothing before the deadline.
    /// </summary>
    public static object[] Expire(Alert alert, HotlineRules rules, DateTimeOffset now)
    {
        if (!alert.Open || now < alert.DueAt) return [];
        var events = new List<object>();
        if (!alert.ExpiredOnce) events.Add(new AlertExpiredUnacknowledged(alert.Id, alert.DueAt, now));
        if (alert.Step < rules.Ladder.Count)
        {
            var next = rules.Ladder[alert.Step];
            events.Add(new AlertEscalated(alert.Id, alert.Step + 1, next.Level, now, now + next.After));
        }
        else
        {
            events.Add(new AlertLapsed(alert.Id, alert.Step, now));
        }
        return [.. events];
    }
}

public sealed record EscalationStep(string Level, TimeSpan After);

/// <summary>
/// Deadlines and the ladder are the agreement's, so they are configuration: <c>Hotline:Deadlines:{severity}</c>,
/// <c>Hotline:Deadlines:preNotification</c>, <c>Hotline:Escalation:N:Level/After</c>, <c>Hotline:Templates:{language}:{kind}</c>.
/// </summary>
public sealed class HotlineRules
{
    public HotlineRules(IConfiguration configuration)
    {
        var section = configuration.GetSection("Hotline");
        Deadlines = new Dictionary<string, TimeSpan>(StringComparer.Ordinal)
        {
            [Contracts.Severity.Critical] = section.GetValue("Deadlines:critical", TimeSpan.FromMinutes(15)),
            [Contracts.Severity.High] = section.GetValue("Deadlines:high", TimeSpan.FromHours(1)),
            [Contracts.Severity.Routine] = section.GetValue("Deadlines:routine", TimeSpan.FromHours(6)),
            ["preNotification"] = section.GetValue("Deadlines:preNotification", TimeSpan.FromHours(1)),
        };
        var ladder = section.GetSection("Escalation").GetChildren()
            .Select(s => new EscalationStep(s["Level"] ?? throw new InvalidOperationException($"{s.Path}:Level is missing"), s.GetValue<TimeSpan>("After"))).ToList();
        Ladder = ladder.Count > 0 ? ladder :
            [new("dutyOfficer", TimeSpan.FromMinutes(15)), new("seniorLiaison", TimeSpan.FromMinutes(30)), new("mediator", TimeSpan.FromHours(1))];
        Templates = section.GetSection("Templates").GetChildren().ToDictionary(
            language => language.Key, language => language.GetChildren().ToDictionary(t => t.Key, t => t.Value ?? "", StringComparer.Ordinal), StringComparer.Ordinal);
        WorkerInterval = section.GetValue("WorkerInterval", TimeSpan.FromSeconds(1));
    }

    public IReadOnlyDictionary<string, TimeSpan> Deadlines { get; }
    public IReadOnlyList<EscalationStep> Ladder { get; }
    public IReadOnlyDictionary<string, Dictionary<string, string>> Templates { get; }
    public TimeSpan WorkerInterval { get; }

    public TimeSpan DeadlineFor(string severity) => Deadlines.TryGetValue(severity, out var d) ? d : Deadlines[Contracts.Severity.Routine];

    /// <summary>Fills a template of the reader's language with the alert's fields ({name}); English when none is configured.</summary>
    public string Render(AlertRaised raised, string language)
    {
        var kind = raised.Kind == AlertKind.Incident ? "incident" : "preNotification";
        var template = Templates.TryGetValue(language, out var set) && set.TryGetValue(kind, out var t) ? t
            : Templates.TryGetValue("en", out var en) && en.TryGetValue(kind, out var e) ? e
            : raised.Kind == AlertKind.Incident
                ? "Incident {incidentId}: {category} at {region} ({occurredFrom}); severity {severity}; killed {killed}, injured {injured}. Acknowledge by {dueAt}."
                : "{fromParty} notifies {activity} at {region} within {radiusKm} km from {windowFrom} to {windowTo}: {details}. Acknowledge by {dueAt}.";
        var f = raised.Fields;
        var values = new Dictionary<string, string?>
        {
            ["incidentId"] = f.IncidentId, ["category"] = f.Category, ["region"] = f.Region, ["occurredFrom"] = f.OccurredFrom?.ToString("u"),
            ["severity"] = raised.Severity, ["killed"] = f.KilledBest?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["injured"] = f.InjuredBest?.ToString(System.Globalization.CultureInfo.InvariantCulture), ["dueAt"] = raised.DueAt.ToString("u"),
            ["fromParty"] = raised.FromParty, ["activity"] = f.Activity?.ToString(), ["radiusKm"] = f.RadiusKm?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["windowFrom"] = f.WindowFrom?.ToString("u"), ["windowTo"] = f.WindowTo?.ToString("u"), ["details"] = f.Details,
            ["targetTypes"] = f.TargetTypes is null ? null : string.Join(", ", f.TargetTypes),
        };
        foreach (var (key, value) in values) template = template.Replace("{" + key + "}", value ?? "—", StringComparison.Ordinal);
        return template;
    }
}
