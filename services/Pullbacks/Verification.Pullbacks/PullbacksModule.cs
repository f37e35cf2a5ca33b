using Verification.ServiceDefaults;
using Verification.EventStore;
using Verification.Pullbacks.Committing;
using Verification.Pullbacks.Deciding;
using Verification.Pullbacks.Domain;
using Verification.Pullbacks.Observing;
using Verification.Pullbacks.Reading;
using Contract = Verification.Contracts;

namespace Verification.Pullbacks;

/// <summary>Pullback verification as a module: commitments, observations, holding-site visits, verdicts.</summary>
public static class PullbacksModule
{
    public const string Name = "pullbacks";

    public static void AddPullbacks(this WebApplicationBuilder builder)
    {
        var connectionString = ConnectionStrings.For(builder.Configuration, Name);
        builder.Services.AddEventStore(Name, connectionString, o =>
        {
            o.Types.Register<PullbackCommitted>("pullback_committed").Register<ObservationRecorded>("observation_recorded")
                .Register<ZoneObservedClear>("zone_observed_clear").Register<HoldingSiteVisited>("holding_site_visited")
                .Register<ViolationDetected>("violation_detected").Register<HoldingSiteDiscrepancyFound>("holding_site_discrepancy_found")
                .Register<CommitmentStatusChanged>("commitment_status_changed")
                .Register<Contract.PullbackCommitted>("msg.pullback_committed.v1").Register<Contract.PullbackObservationRecorded>("msg.pullback_observation_recorded.v1")
                .Register<Contract.PullbackViolationDetected>("msg.pullback_violation_detected.v1").Register<Contract.PullbackVerified>("msg.pullback_verified.v1")
                .Register<Contract.PullbackLapsed>("msg.pullback_lapsed.v1").Register<Contract.HoldingSiteDiscrepancy>("msg.holding_site_discrepancy.v1");
            o.ApplicationRole = builder.Configuration["Pullbacks:ApplicationRole"];
        });
    }

    public static WebApplication MapPullbacksApi(this WebApplication app)
    {
        var group = app.MapGroup("/pullbacks").RequireAuthorization().WithTags("Pullbacks");
        Commit.Map(group);
        Observe.Map(group);
        Decide.Map(group);
        PullbackQueries.Map(group);
        return app;
    }
}
