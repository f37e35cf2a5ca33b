using Verification.ServiceDefaults;
using Verification.EventStore;
using Verification.Exchanges.Agreeing;
using Verification.Exchanges.Checks;
using Verification.Exchanges.Closing;
using Verification.Exchanges.Domain;
using Verification.Exchanges.Handovers;
using Verification.Exchanges.Lists;
using Verification.Exchanges.Persons;
using Verification.Exchanges.Reading;
using Contract = Verification.Contracts;

namespace Verification.Exchanges;

/// <summary>The prisoner-exchange ledger as a module: agreements, lists, checks, double-entry handovers, reconciliation, the vault.</summary>
public static class ExchangesModule
{
    public const string Name = "exchanges";

    public static void AddExchanges(this WebApplicationBuilder builder)
    {
        var connectionString = ConnectionStrings.For(builder.Configuration, Name);
        builder.Services.AddEventStore(Name, connectionString, o =>
        {
            o.Types.Register<ExchangeAgreed>("exchange_agreed").Register<ListSubmitted>("list_submitted").Register<PersonChecked>("person_checked")
                .Register<PersonFlagged>("person_flagged").Register<HandoverRecorded>("handover_recorded").Register<HandoverConfirmed>("handover_confirmed")
                .Register<HandoverWitnessed>("handover_witnessed").Register<ExchangeClosed>("exchange_closed")
                .Register<PersonalDataRead>("personal_data_read").Register<PersonalDataErased>("personal_data_erased")
                .Register<Contract.ExchangeAgreed>("msg.exchange_agreed.v1").Register<Contract.ExchangeListSubmitted>("msg.exchange_list_submitted.v1")
                .Register<Contract.HandoverRecorded>("msg.handover_recorded.v1").Register<Contract.HandoverConfirmed>("msg.handover_confirmed.v1")
                .Register<Contract.ExchangeDiscrepancyFound>("msg.exchange_discrepancy_found.v1").Register<Contract.ExchangeCompleted>("msg.exchange_completed.v1")
                .Register<Contract.ExchangeCollapsed>("msg.exchange_collapsed.v1");
            o.InlineProjections.Add(new ReleasedPersons());
            o.Migrations.Add(PersonVault.Tables);
            o.ApplicationRole = builder.Configuration["Exchanges:ApplicationRole"];
        });
        builder.Services.AddSingleton<PersonVault>();
    }

    public static WebApplication MapExchangesApi(this WebApplication app)
    {
        var exchanges = app.MapGroup("/exchanges").RequireAuthorization().WithTags("Exchanges");
        AgreeExchange.Map(exchanges);
        SubmitList.Map(exchanges);
        CheckPerson.Map(exchanges);
        Handover.Map(exchanges);
        CloseExchange.Map(exchanges);
        ExchangeQueries.Map(exchanges);
        PersonVault.Map(app.MapGroup("/persons").RequireAuthorization().WithTags("Personal data"));
        return app;
    }
}
