using Microsoft.AspNetCore.Mvc;
using Verification.Exchanges.Domain;
using Verification.Exchanges.Persons;
using Verification.ServiceDefaults;

namespace Verification.Exchanges.Lists;

public sealed record ListLine(DetaineeCategory Category, Identity Identity);
public sealed record SubmitListRequest(ListKind Kind, ListLine[] Entries);

/// <summary>
/// A party's liaison officer submits the list it will release, or the list it expects to receive. Identities go to the
/// vault, encrypted; the ledger records pseudonymous ids. A new version supersedes the last; both stay in history.
/// </summary>
public static class SubmitList
{
    public static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id}/lists", async (string id, SubmitListRequest request, HttpContext http,
            [FromKeyedServices(ExchangesModule.Name)] EventStore.EventStore store, PersonVault vault, TimeProvider clock) =>
        {
            var v = new Validation().Check(request.Entries is { Length: > 0 and <= 5000 }, "entries", "a list has 1 to 5000 entries");
            foreach (var (line, i) in (request.Entries ?? []).Select((l, i) => (l, i)))
            {
                v.Check(Enum.IsDefined(line.Category), $"entries[{i}].category", "is not a known category")
                 .Check(line.Identity is { FamilyName.Length: > 0 and <= 200, GivenNames.Length: > 0 and <= 200 }, $"entries[{i}].identity", "family and given names are required, at most 200 characters each")
                 .Check(line.Identity?.ServiceNumber is null or { Length: <= 100 }, $"entries[{i}].identity.serviceNumber", "at most 100 characters");
            }
            v.ThrowIfInvalid();
            // Check the officer may submit before anything reaches the vault.
            var (exchange, _) = await Handling.LoadAsync(store, id, http.RequestAborted);
            Decisions.SubmitList(exchange, Actor.From(http.User), request.Kind, [new ListEntry("probe", DetaineeCategory.Civilian)], clock.GetUtcNow());
            var entries = new List<ListEntry>();
            foreach (var line in request.Entries!) entries.Add(new ListEntry(await vault.StoreAsync(line.Identity, http.RequestAborted), line.Category));
            return await Handling.ExecuteAsync(http, store, id, (x, actor, _, now) => Decisions.SubmitList(x, actor, request.Kind, [.. entries], now), clock);
        }).RequireAuthorization(Roles.Liaison);
}
