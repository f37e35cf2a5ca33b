using System.Text.Json;
using Verification.Hotline.Domain;
using Contract = Verification.Contracts;

namespace Verification.Hotline;

/// <summary>Integration messages from the hotline's events.</summary>
internal static class Messages
{
    public static string Wire<T>(T value) where T : struct, Enum => JsonNamingPolicy.CamelCase.ConvertName(value.ToString());

    public static IEnumerable<object> For(Alert alert, IEnumerable<object> events)
    {
        var r = alert.Raised;
        var f = r.Fields;
        var kind = Wire(r.Kind);
        foreach (var e in events)
        {
            switch (e)
            {
                case AlertRaised:
                    yield return new Contract.AlertRaised(r.AlertId, kind, f.IncidentId, r.Addressee, r.FromParty, r.Severity, r.ChannelSuspended, r.RaisedAt, r.DueAt);
                    if (r.Kind == AlertKind.PreNotification)
                        yield return new Contract.PreNotificationSent(r.AlertId, r.FromParty!, r.Addressee, Wire(f.Activity!.Value), f.Latitude!.Value, f.Longitude!.Value,
                            f.RadiusKm!.Value, f.Region!, f.WindowFrom!.Value, f.WindowTo!.Value, r.RaisedAt, r.DueAt);
                    break;
                case AlertAcknowledged a:
                    yield return new Contract.AlertAcknowledged(r.AlertId, kind, f.IncidentId, a.Party, Wire(a.Response), a.Late, (a.AcknowledgedAt - r.RaisedAt).TotalSeconds, a.AcknowledgedAt);
                    if (r.Kind == AlertKind.PreNotification)
                        yield return new Contract.PreNotificationAcknowledged(r.AlertId, r.FromParty!, r.Addressee, Wire(f.Activity!.Value), f.Latitude!.Value, f.Longitude!.Value,
                            f.RadiusKm!.Value, f.Region!, f.WindowFrom!.Value, f.WindowTo!.Value, a.AcknowledgedAt);
                    break;
                case AlertObjected o:
                    yield return new Contract.PreNotificationObjected(r.AlertId, r.FromParty!, r.Addressee, o.Reason, o.ObjectedAt);
                    break;
                case AlertExpiredUnacknowledged x:
                    yield return new Contract.AlertExpiredUnacknowledged(r.AlertId, kind, f.IncidentId, r.Addressee, r.RaisedAt, x.DueAt, x.ExpiredAt);
                    break;
                case AlertEscalated x:
                    yield return new Contract.AlertEscalated(r.AlertId, kind, f.IncidentId, r.Addressee, x.Step, x.Level, x.EscalatedAt, x.DueAt);
                    break;
            }
        }
    }
}
