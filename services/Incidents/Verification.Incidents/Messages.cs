using Verification.Incidents.Domain;
using Contract = Verification.Contracts;

namespace Verification.Incidents;

/// <summary>Integration messages from internal events: what other services need, never the aggregate.</summary>
internal static class Messages
{
    public static string Wire<T>(T value) where T : struct, Enum => System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(value.ToString());

    public static IEnumerable<object> For(Incident? before, Incident after, IEnumerable<object> events)
    {
        var filed = after.Filed;
        var best = after.Best();
        var range = after.Range();
        foreach (var e in events)
        {
            switch (e)
            {
                case IncidentFiled f:
                    yield return new Contract.IncidentFiled(f.IncidentId, f.OccurredFrom, f.OccurredTo, f.Location.Latitude, f.Location.Longitude,
                        f.Location.Region, Wire(f.Category), f.TargetTypes.Select(Wire).ToArray(), f.AllegedParty, after.Severity(),
                        best.Killed?.Best ?? 0, best.Injured?.Best ?? 0, f.FiledAt);
                    break;
                case SourceReported or BestFiguresOverridden when before is not null:
                    yield return new Contract.IncidentUpdated(filed.IncidentId, after.Sources.Count,
                        range.Killed?.Low ?? 0, best.Killed?.Best ?? 0, range.Killed?.High ?? 0,
                        range.Injured?.Low ?? 0, best.Injured?.Best ?? 0, range.Injured?.High ?? 0, after.Severity(),
                        e is SourceReported s ? s.RecordedAt : ((BestFiguresOverridden)e).OverriddenAt);
                    break;
                case IncidentGraded g:
                    yield return new Contract.IncidentGraded(filed.IncidentId, g.Revision, Wire(g.Grade), Wire(g.Attribution.Kind), g.Attribution.Party,
                        before?.Finding?.Attribution.Party, filed.OccurredFrom, filed.Location.Latitude, filed.Location.Longitude, filed.Location.Region,
                        Wire(filed.Category), filed.TargetTypes.Select(Wire).ToArray(), after.Severity(), g.GradedAt);
                    break;
                case PartyPositionRecorded p:
                    yield return new Contract.IncidentDisputed(filed.IncidentId, p.Party, Wire(p.Position), p.RecordedAt);
                    break;
                case IncidentRetracted r:
                    yield return new Contract.IncidentRetracted(filed.IncidentId, r.Reason, r.RetractedAt);
                    break;
            }
        }
    }
}
