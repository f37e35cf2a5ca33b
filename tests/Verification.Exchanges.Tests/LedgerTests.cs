using Microsoft.Extensions.Configuration;
using Verification.Exchanges.Domain;
using Verification.ServiceDefaults;

namespace Verification.Exchanges.Tests;

public sealed class LedgerTests
{
    private static readonly DateTimeOffset Now = new(2026, 2, 5, 9, 0, 0, TimeSpan.Zero);
    private static readonly Actor Ua = new("lo-ua", Roles.Liaison, "UA");
    private static readonly Actor Ru = new("lo-ru", Roles.Liaison, "RU");
    private static readonly Actor Icrc = new("icrc", Roles.Intermediary, "ICRC");

    private static Exchange Apply(Exchange? x, params object[][] decisions) =>
        decisions.SelectMany(d => d).Aggregate(x, Exchange.Evolve)!;

    private static string[] People(string side, int n) => Enumerable.Range(1, n).Select(i => $"p-{side}-{i:000}").ToArray();

    /// <summary>157 for 157, then three discrepancies injected: a duplicate, a one-sided handover, a person already released.</summary>
    [Fact]
    public void A_157_for_157_exchange_with_three_injected_discrepancies_finds_and_names_each()
    {
        var x = Apply(null, [new ExchangeAgreed("x1", "UA", "RU", "AE", "ICRC",
            [new("UA", DetaineeCategory.PrisonerOfWar, 157), new("RU", DetaineeCategory.PrisonerOfWar, 157)], "Belarus border", new DateOnly(2026, 2, 5), "v", Now)]);
        var uaReleases = People("ru", 157);   // UA releases RU's people
        var ruReleases = People("ua", 157);
        var duplicate = ruReleases[10];
        x = Apply(x,
            Decisions.SubmitList(x, Ua, ListKind.Release, uaReleases.Select(p => new ListEntry(p, DetaineeCategory.PrisonerOfWar)).ToArray(), Now),
            Decisions.SubmitList(x, Ua, ListKind.Expected, ruReleases.Select(p => new ListEntry(p, DetaineeCategory.PrisonerOfWar)).ToArray(), Now),
            // RU's list repeats one person and so names only 156 distinct people
            Decisions.SubmitList(x, Ru, ListKind.Release, ruReleases.Take(156).Append(duplicate).Select(p => new ListEntry(p, DetaineeCategory.PrisonerOfWar)).ToArray(), Now),
            Decisions.SubmitList(x, Ru, ListKind.Expected, uaReleases.Select(p => new ListEntry(p, DetaineeCategory.PrisonerOfWar)).ToArray(), Now));
        Assert.Equal(ExchangeStatus.ListsExchanged, x.Status);
        foreach (var p in uaReleases.Concat(ruReleases.Take(156)))
            x = Apply(x, [new PersonChecked("x1", p, true, true, true, null, "icrc", Now)]);
        Assert.Equal(ExchangeStatus.Verification, x.Status);

        var alreadyReleased = uaReleases[5];
        x = Apply(x,
            Decisions.RecordHandover(x, Ua, uaReleases, Now),
            Decisions.RecordHandover(x, Ru, ruReleases.Take(156).ToArray(), Now));
        x = Apply(x,
            Decisions.ConfirmReceipt(x, Ru, uaReleases, Now),
            Decisions.ConfirmReceipt(x, Ua, ruReleases.Take(155).ToArray(), Now));   // one handover stays one-sided

        var reconciliation = Ledger.Reconcile(x, new Dictionary<string, string> { [alreadyReleased] = "x0" });
        Assert.Contains(reconciliation.Discrepancies, d => d.Kind == "duplicate" && d.PersonId == duplicate && d.Party == "RU");
        Assert.Contains(reconciliation.Discrepancies, d => d.Kind == "unconfirmedHandover" && d.PersonId == ruReleases[155] && d.Party == "RU");
        Assert.Contains(reconciliation.Discrepancies, d => d.Kind == "alreadyReleased" && d.PersonId == alreadyReleased && d.Detail.Contains("x0", StringComparison.Ordinal));
        Assert.Contains(reconciliation.Discrepancies, d => d.Kind == "notOnReleaseList" && d.PersonId == ruReleases[156]);
        Assert.False(reconciliation.Reciprocal);
        var ua = Assert.Single(reconciliation.Counts, c => c.ReleasingParty == "UA");
        var ru = Assert.Single(reconciliation.Counts, c => c.ReleasingParty == "RU");
        Assert.Equal((157, 157, 157, 157, 157), (ua.Agreed, ua.Listed, ua.Verified, ua.HandedOver, ua.ConfirmedReceived));
        Assert.Equal((157, 156, 156, 156, 155), (ru.Agreed, ru.Listed, ru.Verified, ru.HandedOver, ru.ConfirmedReceived));

        var closed = Apply(x, Decisions.Close(x, new Actor("v", Roles.Verifier, null), false, null, new Dictionary<string, string>(), Now));
        Assert.Equal(ExchangeStatus.PartlyCompleted, closed.Status);
    }

    [Fact]
    public void A_clean_exchange_is_reciprocal_and_completes()
    {
        var x = Apply(null, [new ExchangeAgreed("x2", "UA", "RU", null, "ICRC", [new("UA", DetaineeCategory.Civilian, 2), new("RU", DetaineeCategory.Civilian, 2)], "p", new DateOnly(2026, 2, 5), "v", Now)]);
        string[] a = ["p-a1", "p-a2"], b = ["p-b1", "p-b2"];
        x = Apply(x, Decisions.SubmitList(x, Ua, ListKind.Release, a.Select(p => new ListEntry(p, DetaineeCategory.Civilian)).ToArray(), Now),
            Decisions.SubmitList(x, Ru, ListKind.Expected, a.Select(p => new ListEntry(p, DetaineeCategory.Civilian)).ToArray(), Now),
            Decisions.SubmitList(x, Ru, ListKind.Release, b.Select(p => new ListEntry(p, DetaineeCategory.Civilian)).ToArray(), Now),
            Decisions.SubmitList(x, Ua, ListKind.Expected, b.Select(p => new ListEntry(p, DetaineeCategory.Civilian)).ToArray(), Now));
        x = Apply(x, Decisions.RecordHandover(x, Ua, a, Now), Decisions.RecordHandover(x, Ru, b, Now));
        x = Apply(x, Decisions.ConfirmReceipt(x, Ru, a, Now), Decisions.ConfirmReceipt(x, Ua, b, Now));
        var reconciliation = Ledger.Reconcile(x, new Dictionary<string, string>());
        Assert.True(reconciliation.Reciprocal);
        Assert.Empty(reconciliation.Discrepancies);
        Assert.Equal(ExchangeStatus.Completed, Apply(x, Decisions.Close(x, new Actor("v", Roles.Verifier, null), false, null, new Dictionary<string, string>(), Now)).Status);
    }

    [Fact]
    public void Handover_rules_refuse_strangers_self_confirmation_other_parties_and_closed_exchanges()
    {
        var x = Apply(null, [new ExchangeAgreed("x3", "UA", "RU", null, null, [new("UA", DetaineeCategory.PrisonerOfWar, 1), new("RU", DetaineeCategory.PrisonerOfWar, 1)], "p", new DateOnly(2026, 2, 5), "v", Now)]);
        x = Apply(x, Decisions.SubmitList(x, Ua, ListKind.Release, [new ListEntry("p-1", DetaineeCategory.PrisonerOfWar)], Now));
        Assert.Equal(422, Assert.Throws<Rejection>(() => Decisions.RecordHandover(x, Ua, ["p-9"], Now)).Status);
        x = Apply(x, Decisions.RecordHandover(x, Ua, ["p-1"], Now));
        Assert.Equal(403, Assert.Throws<Rejection>(() => Decisions.ConfirmReceipt(x, Ua, ["p-1"], Now)).Status);
        Assert.Equal(409, Assert.Throws<Rejection>(() => Decisions.RecordHandover(x, Ua, ["p-1"], Now)).Status);
        Assert.Equal(422, Assert.Throws<Rejection>(() => Decisions.SubmitList(x, new Actor("lo-us", Roles.Liaison, "US"), ListKind.Release, [new ListEntry("p-2", DetaineeCategory.Civilian)], Now)).Status);
        x = Apply(x, Decisions.Close(x, new Actor("v", Roles.Verifier, null), true, "talks broke down", new Dictionary<string, string>(), Now));
        Assert.Equal(ExchangeStatus.Collapsed, x.Status);
        Assert.Equal(409, Assert.Throws<Rejection>(() => Decisions.ConfirmReceipt(x, Ru, ["p-1"], Now)).Status);
    }

    [Fact]
    public void Agreed_counts_must_add_up_and_name_the_two_parties()
    {
        var parties = new PartyDirectory(new Microsoft.Extensions.Configuration.ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            { ["Parties:0:Code"] = "UA", ["Parties:1:Code"] = "RU", ["Mediators:0:Code"] = "AE" }).Build());
        var request = new Agreeing.AgreeExchangeRequest("UA", "RU", [new("UA", DetaineeCategory.PrisonerOfWar, 150), new("UA", DetaineeCategory.Civilian, 7), new("RU", DetaineeCategory.PrisonerOfWar, 157)],
            "border", new DateOnly(2026, 2, 5), "AE", "ICRC", TotalPerSide: 157);
        Assert.IsType<ExchangeAgreed>(Agreeing.AgreeExchange.Decide("x", request, new Actor("v", Roles.Verifier, null), parties, Now)[0]);
        var wrong = Assert.Throws<Rejection>(() => Agreeing.AgreeExchange.Decide("x", request with { TotalPerSide = 160 }, new Actor("v", Roles.Verifier, null), parties, Now));
        Assert.Contains("totalPerSide", wrong.Errors!.Keys);
        Assert.Contains("counts[0].releasingParty", Assert.Throws<Rejection>(() => Agreeing.AgreeExchange.Decide("x",
            request with { Counts = [new("US", DetaineeCategory.Body, 1)], TotalPerSide = null }, new Actor("v", Roles.Verifier, null), parties, Now)).Errors!.Keys);
    }
}
