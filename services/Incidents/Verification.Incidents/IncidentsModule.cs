using Verification.ServiceDefaults;
using Verification.EventStore;
using Verification.Incidents.Disputes;
using Verification.Incidents.Domain;
using Verification.Incidents.Filing;
using Verification.Incidents.Grading;
using Verification.Incidents.Linking;
using Verification.Incidents.Reading;
using Verification.Incidents.Retracting;
using Verification.Incidents.Sources;
using Contract = Verification.Contracts;

namespace Verification.Incidents;

/// <summary>The incidents service as a module: its store and its API (one process or embedded with the others).</summary>
public static class IncidentsModule
{
    public const string Name = "incidents";

    public static void AddIncidents(this WebApplicationBuilder builder)
    {
        var connectionString = ConnectionStrings.For(builder.Configuration, Name);
        builder.Services.AddEventStore(Name, connectionString, o =>
        {
            o.Types.Register<IncidentFiled>("incident_filed").Register<SourceReported>("source_reported")
                .Register<BestFiguresOverridden>("best_figures_overridden").Register<IncidentGraded>("incident_graded")
                .Register<PartyPositionRecorded>("party_position_recorded").Register<IncidentLinked>("incident_linked")
                .Register<IncidentRetracted>("incident_retracted")
                .Register<Contract.IncidentFiled>("msg.incident_filed.v1").Register<Contract.IncidentUpdated>("msg.incident_updated.v1")
                .Register<Contract.IncidentGraded>("msg.incident_graded.v1").Register<Contract.IncidentDisputed>("msg.incident_disputed.v1")
                .Register<Contract.IncidentRetracted>("msg.incident_retracted.v1");
            o.InlineProjections.Add(IncidentQueries.View());
            o.ApplicationRole = builder.Configuration["Incidents:ApplicationRole"];
        });
    }

    public static WebApplication MapIncidentsApi(this WebApplication app)
    {
        var group = app.MapGroup("/incidents").RequireAuthorization().WithTags("Incidents");
        FileIncident.Map(group);
        AddSourceReport.Map(group);
        GradeIncident.Map(group);
        OverrideBestFigures.Map(group);
        RecordPartyPosition.Map(group);
        LinkIncident.Map(group);
        RetractIncident.Map(group);
        IncidentQueries.Map(group);
        return app;
    }
}
