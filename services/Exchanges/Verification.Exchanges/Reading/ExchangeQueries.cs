using Microsoft.AspNetCore.Mvc;
using Verification.Exchanges.Domain;

namespace Verification.Exchanges.Reading;

public sealed record ExchangeView(string Id, ExchangeStatus Status, ExchangeAgreed Agreement, IReadOnlyList<ListSubmitted> ListHistory, long Version,
    Reconciliation Reconciliation, ExchangeClosed? Closing);

/// <summary>The ledger and its reconciliation, by pseudonymous ids and counts: no personal data, so every role may read it.</summary>
public static class ExchangeQueries
{
    public static void Map(RouteGroupBuilder group)
    {
        group.MapGet("/{id}", async (string id, HttpContext http, [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store) =>
        {
            var (exchange, version) = await Handling.LoadAsync(store, id, http.RequestAborted);
            var reconciliation = Ledger.Reconcile(exchange, await Handling.ReleasedBeforeAsync(store, exchange, http.RequestAborted));
            return TypedResults.Ok(new ExchangeView(exchange.Id, exchange.Status, exchange.Agreed, exchange.ListHistory, version, reconciliation, exchange.Closing));
        });
    }
}
