using Verification.Compliance.Agreements;
using Verification.Compliance.Domain;
using Verification.Compliance.Facts;
using Verification.Compliance.History;
using Verification.Compliance.Reports;
using Verification.Compliance.TreeHeads;
using Verification.EventStore;
using Verification.ServiceDefaults;
using Contract = Verification.Contracts;

namespace Verification.Compliance;

/// <summary>Compliance and audit as a module: agreements and terms, determinations from the other services' facts, history, daily reports.</summary>
public static class ComplianceModule
{
    public const string Name = "compliance";
    public const string AgreementsView = "agreements";
    public const string SubjectsView = "subjects";
    public const string DeterminationsView = "determinations";

    public static void AddCompliance(this WebApplicationBuilder builder, ServiceDefaultsOptions defaults)
    {
        var connectionString = ConnectionStrings.For(builder.Configuration, Name);
        builder.Services.AddEventStore(Name, connectionString, o =>
        {
            o.Types.Register<AgreementConcluded>("agreement_concluded").Register<TermAdded>("term_added")
                .Register<TermEvaluated>("term_evaluated").Register<DailyReportIssued>("daily_report_issued")
                .Register<TreeHeadCollected>("tree_head_collected").Register<TreeHeadRefused>("tree_head_refused")
                // The other services' messages, kept as received: the inputs of every determination.
                .Register<Contract.IncidentFiled>("fact.incidents.incident_filed.v1").Register<Contract.IncidentGraded>("fact.incidents.incident_graded.v1")
                .Register<Contract.IncidentRetracted>("fact.incidents.incident_retracted.v1")
                .Register<Contract.AlertRaised>("fact.hotline.alert_raised.v1").Register<Contract.AlertAcknowledged>("fact.hotline.alert_acknowledged.v1")
                .Register<Contract.AlertExpiredUnacknowledged>("fact.hotline.alert_expired_unacknowledged.v1")
                .Register<Contract.PreNotificationAcknowledged>("fact.hotline.pre_notification_acknowledged.v1")
                .Register<Contract.ExchangeAgreed>("fact.exchanges.exchange_agreed.v1").Register<Contract.ExchangeCompleted>("fact.exchanges.exchange_completed.v1")
                .Register<Contract.ExchangeCollapsed>("fact.exchanges.exchange_collapsed.v1")
                .Register<Contract.PullbackCommitted>("fact.pullbacks.pullback_committed.v1").Register<Contract.PullbackViolationDetected>("fact.pullbacks.pullback_violation_detected.v1")
                .Register<Contract.PullbackVerified>("fact.pullbacks.pullback_verified.v1").Register<Contract.PullbackLapsed>("fact.pullbacks.pullback_lapsed.v1");
            o.InlineProjections.Add(DocumentProjection<Agreement>.SingleStream(AgreementsView, (a, e) => Agreement.Evolve(a, e.Data)));
            o.InlineProjections.Add(new DocumentProjection<Subject>(SubjectsView, e => Subject.Of(e.Data) is not null ? e.StreamId : null,
                (s, e) => Subject.Evolve(s, e.Data, Judging.InputOf(e))).Index("subjects_kind", "(data->>'kind')"));
            o.InlineProjections.Add(new DocumentProjection<TermEvaluated>(DeterminationsView, e => (e.Data as TermEvaluated)?.DeterminationId,
                (_, e) => (TermEvaluated)e.Data).Index("determinations_subject", "(data->>'subjectId')"));
            o.AsyncProjections.Add(ComplianceHistory.View());
            o.ApplicationRole = builder.Configuration["Compliance:ApplicationRole"];
        });
        builder.Services.AddHostedService<DailyReportWorker>();
        defaults.Bus.Add(bus =>
        {
            bus.AddConsumer<FactsConsumer>();
            bus.AddConsumer<TreeHeadConsumer>();
        });
    }

    public static WebApplication MapComplianceApi(this WebApplication app)
    {
        var agreements = app.MapGroup("/agreements").RequireAuthorization().WithTags("Agreements");
        Concluding.Map(agreements);
        DailyReports.Map(agreements);
        var compliance = app.MapGroup("/compliance").RequireAuthorization().WithTags("Compliance");
        ComplianceHistory.Map(compliance);
        CollectTreeHeads.Map(compliance);
        return app;
    }
}
