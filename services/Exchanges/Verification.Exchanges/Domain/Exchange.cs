using Verification.ServiceDefaults;

namespace Verification.Exchanges.Domain;

public enum DetaineeCategory { PrisonerOfWar, Civilian, WoundedOrSick, Body }
public enum ListKind { Release, Expected }
public enum ExchangeStatus { Agreed, ListsExchanged, Verification, InProgress, Completed, PartlyCompleted, Collapsed }
public enum PersonFlag { Deceased, AlreadyReleased, WrongCategory, IdentityUnconfirmed, Duplicate }
public enum PersonStatus { Matched, NotOnOtherList, Duplicate, Deceased, AlreadyReleased, WrongCategory, IdentityUnconfirmed }

/// <summary>How many people a party agreed to release in a category.</summary>
public sealed record AgreedCount(string ReleasingParty, DetaineeCategory Category, int Count);

/// <summary>A list line: a pseudonymous person id (never a name) and the category the party lists them under.</summary>
public sealed record ListEntry(string PersonId, DetaineeCategory Category);

// Events of an exchange stream ("exch-…"). Only pseudonymous person ids: identities live encrypted elsewhere.
public sealed record ExchangeAgreed(string ExchangeId, string PartyA, string PartyB, string? Mediator, string? Intermediary, AgreedCount[] Counts,
    string Place, DateOnly PlannedDate, string AgreedBy, DateTimeOffset AgreedAt);
public sealed record ListSubmitted(string ExchangeId, string Party, ListKind Kind, int Version, ListEntry[] Entries, string SubmittedBy, DateTimeOffset SubmittedAt);
public sealed record PersonChecked(string ExchangeId, string PersonId, bool IdentityConfirmed, bool? WishToReturn, bool? FitToTravel, string? Note, string By, DateTimeOffset CheckedAt);
public sealed record PersonFlagged(string ExchangeId, string PersonId, PersonFlag Flag, string Reason, string By, DateTimeOffset FlaggedAt);
public sealed record HandoverRecorded(string ExchangeId, string ReleasingParty, string[] PersonIds, string RecordedBy, DateTimeOffset RecordedAt);
public sealed record HandoverConfirmed(string ExchangeId, string ReceivingParty, string[] PersonIds, string ConfirmedBy, DateTimeOffset ConfirmedAt);
public sealed record HandoverWitnessed(string ExchangeId, string[] PersonIds, string By, DateTimeOffset WitnessedAt);
public sealed record ExchangeClosed(string ExchangeId, ExchangeStatus Outcome, string? Reason, string By, DateTimeOffset ClosedAt);

public sealed record Check(bool IdentityConfirmed, bool? WishToReturn, bool? FitToTravel);

public sealed record Exchange(
    ExchangeAgreed Agreed, ExchangeStatus Status,
    IReadOnlyDictionary<string, ListSubmitted> Lists,                 // "{party}:{kind}" → the current version
    IReadOnlyList<ListSubmitted> ListHistory,
    IReadOnlyDictionary<string, Check> Checks,
    IReadOnlyDictionary<string, IReadOnlyList<PersonFlagged>> Flags,
    IReadOnlyDictionary<string, string> HandedOverBy,                 // person → releasing party that recorded it
    IReadOnlyDictionary<string, string> ConfirmedBy,                  // person → receiving party that confirmed it
    IReadOnlySet<string> Witnessed,
    ExchangeClosed? Closing)
{
    public string Id => Agreed.ExchangeId;
    public bool Closed => Closing is not null;
    public string[] Parties => [Agreed.PartyA, Agreed.PartyB];
    public string OtherParty(string party) => party == Agreed.PartyA ? Agreed.PartyB : Agreed.PartyA;
    public ListSubmitted? List(string party, ListKind kind) => Lists.GetValueOrDefault($"{party}:{kind}");

    public static Exchange? Evolve(Exchange? state, object e)
    {
        if (e is ExchangeAgreed agreed)
            return state ?? new Exchange(agreed, ExchangeStatus.Agreed, new Dictionary<string, ListSubmitted>(), [], new Dictionary<string, Check>(),
                new Dictionary<string, IReadOnlyList<PersonFlagged>>(), new Dictionary<string, string>(), new Dictionary<string, string>(), new HashSet<string>(), null);
        if (state is null) return null;
        switch (e)
        {
            case ListSubmitted l:
                var lists = new Dictionary<string, ListSubmitted>(state.Lists) { [$"{l.Party}:{l.Kind}"] = l };
                var exchanged = state.Parties.All(p => lists.ContainsKey($"{p}:{ListKind.Release}"));
                return state with
                {
                    Lists = lists, ListHistory = [.. state.ListHistory, l],
                    Status = state.Status == ExchangeStatus.Agreed && exchanged ? ExchangeStatus.ListsExchanged : state.Status,
                };
            case PersonChecked c:
                return state with
                {
                    Checks = new Dictionary<string, Check>(state.Checks) { [c.PersonId] = new Check(c.IdentityConfirmed, c.WishToReturn, c.FitToTravel) },
                    Status = state.Status is ExchangeStatus.Agreed or ExchangeStatus.ListsExchanged ? ExchangeStatus.Verification : state.Status,
                };
            case PersonFlagged f:
                var flags = new Dictionary<string, IReadOnlyList<PersonFlagged>>(state.Flags) { [f.PersonId] = [.. state.Flags.GetValueOrDefault(f.PersonId) ?? [], f] };
                return state with { Flags = flags };
            case HandoverRecorded h:
                var handed = new Dictionary<string, string>(state.HandedOverBy);
                foreach (var p in h.PersonIds) handed[p] = h.ReleasingParty;
                return state with { HandedOverBy = handed, Status = state.Closed ? state.Status : ExchangeStatus.InProgress };
            case HandoverConfirmed c:
                var confirmed = new Dictionary<string, string>(state.ConfirmedBy);
                foreach (var p in c.PersonIds) confirmed[p] = c.ReceivingParty;
                return state with { ConfirmedBy = confirmed, Status = state.Closed ? state.Status : ExchangeStatus.InProgress };
            case HandoverWitnessed w:
                return state with { Witnessed = new HashSet<string>(state.Witnessed.Concat(w.PersonIds)) };
            case ExchangeClosed closed:
                return state with { Closing = closed, Status = closed.Outcome };
            default:
                return state;
        }
    }
}

public sealed record PersonLine(string PersonId, string ListedBy, DetaineeCategory Category, PersonStatus Status, string Reason);

public sealed record Discrepancy(string Kind, string? Party, string? PersonId, string Detail);

public sealed record Reconciliation(IReadOnlyList<Contracts.SideCounts> Counts, bool Reciprocal, IReadOnlyList<PersonLine> Persons, IReadOnlyList<Discrepancy> Discrepancies);

/// <summary>
/// Matching and reconciliation, computed from the ledger at any time and never assuming symmetry:
/// each side is counted on its own, from its own lists and its own records.
/// </summary>
public static class Ledger
{
    /// <param name="releasedBefore">People already released in earlier exchanges (person id → exchange id).</param>
    public static Reconciliation Reconcile(Exchange x, IReadOnlyDictionary<string, string> releasedBefore)
    {
        var persons = new List<PersonLine>();
        var discrepancies = new List<Discrepancy>();
        foreach (var party in x.Parties)
        {
            var release = x.List(party, ListKind.Release)?.Entries ?? [];
            var expected = (x.List(x.OtherParty(party), ListKind.Expected)?.Entries ?? []).ToDictionary(e => e.PersonId, e => e.Category);
            var seen = new HashSet<string>();
            foreach (var entry in release)
            {
                var flags = x.Flags.GetValueOrDefault(entry.PersonId) ?? [];
                var check = x.Checks.GetValueOrDefault(entry.PersonId);
                (PersonStatus Status, string Reason) status =
                    !seen.Add(entry.PersonId) ? (PersonStatus.Duplicate, "listed twice on the same list")
                    : releasedBefore.TryGetValue(entry.PersonId, out var earlier) ? (PersonStatus.AlreadyReleased, $"released in exchange {earlier}")
                    : flags.FirstOrDefault(f => f.Flag == PersonFlag.Deceased) is { } dead ? (PersonStatus.Deceased, dead.Reason)
                    : flags.FirstOrDefault(f => f.Flag == PersonFlag.AlreadyReleased) is { } released ? (PersonStatus.AlreadyReleased, released.Reason)
                    : flags.FirstOrDefault(f => f.Flag == PersonFlag.Duplicate) is { } duplicate ? (PersonStatus.Duplicate, duplicate.Reason)
                    : !expected.TryGetValue(entry.PersonId, out var expectedCategory) ? (PersonStatus.NotOnOtherList, $"not on {x.OtherParty(party)}'s expected list")
                    : expectedCategory != entry.Category || flags.Any(f => f.Flag == PersonFlag.WrongCategory)
                        ? (PersonStatus.WrongCategory, $"listed as {entry.Category}, expected as {expectedCategory}")
                    : check is { IdentityConfirmed: false } || flags.Any(f => f.Flag == PersonFlag.IdentityUnconfirmed)
                        ? (PersonStatus.IdentityUnconfirmed, "the intermediary could not confirm the identity")
                    : (PersonStatus.Matched, "on both lists, same category");
                persons.Add(new PersonLine(entry.PersonId, party, entry.Category, status.Status, status.Reason));
                if (status.Status != PersonStatus.Matched)
                    discrepancies.Add(new Discrepancy(Wire(status.Status), party, entry.PersonId, status.Reason));
            }
            foreach (var missing in expected.Keys.Except(release.Select(r => r.PersonId)))
                discrepancies.Add(new Discrepancy("notOnReleaseList", party, missing, $"{x.OtherParty(party)} expects this person; {party} does not list them"));
        }

        // Double entry: a handover counts when the releasing party records it AND the receiving party confirms it.
        foreach (var (person, party) in x.HandedOverBy.Where(h => !x.ConfirmedBy.ContainsKey(h.Key)))
            discrepancies.Add(new Discrepancy("unconfirmedHandover", party, person, $"{party} recorded the handover; {x.OtherParty(party)} has not confirmed receipt"));
        foreach (var (person, receiver) in x.ConfirmedBy.Where(c => !x.HandedOverBy.ContainsKey(c.Key)))
            discrepancies.Add(new Discrepancy("unrecordedHandover", x.OtherParty(receiver), person, $"{receiver} confirmed receipt; {x.OtherParty(receiver)} recorded no handover"));

        var counts = new List<Contracts.SideCounts>();
        foreach (var party in x.Parties)
        {
            var lines = persons.Where(p => p.ListedBy == party).DistinctBy(p => p.PersonId).ToList();
            foreach (var category in Enum.GetValues<DetaineeCategory>())
            {
                var agreed = x.Agreed.Counts.Where(c => c.ReleasingParty == party && c.Category == category).Sum(c => c.Count);
                var inCategory = lines.Where(l => l.Category == category).ToList();
                var listed = inCategory.Count;
                if (agreed == 0 && listed == 0) continue;
                var verified = inCategory.Count(l => x.Checks.GetValueOrDefault(l.PersonId) is { IdentityConfirmed: true, WishToReturn: not false });
                var handed = inCategory.Count(l => x.HandedOverBy.GetValueOrDefault(l.PersonId) == party);
                var confirmed = inCategory.Count(l => x.HandedOverBy.GetValueOrDefault(l.PersonId) == party && x.ConfirmedBy.ContainsKey(l.PersonId));
                counts.Add(new Contracts.SideCounts(party, Wire(category), agreed, listed, verified, handed, confirmed));
                if (listed != agreed)
                    discrepancies.Add(new Discrepancy("listedNotAgreed", party, null, $"{party} lists {listed} {Wire(category)}, agreed {agreed}"));
            }
        }
        var reciprocal = x.Parties.All(p =>
            counts.Where(c => c.ReleasingParty == p).Sum(c => c.ConfirmedReceived) == x.Agreed.Counts.Where(c => c.ReleasingParty == p).Sum(c => c.Count)
            && counts.Where(c => c.ReleasingParty == p).All(c => c.ConfirmedReceived == c.Agreed));
        return new Reconciliation(counts, reciprocal, persons, discrepancies);
    }

    public static string Wire<T>(T value) where T : struct, Enum => System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(value.ToString());
}

/// <summary>The commands' decisions: who may do what, to which exchange, with what input.</summary>
public static class Decisions
{
    public static void ForOwnParty(Exchange x, Actor actor, string party)
    {
        if (!x.Parties.Contains(party)) throw Rejection.Unprocessable($"{party} is not a party to exchange {x.Id}");
        if (actor.Role == Roles.Liaison && actor.Party != party) throw Rejection.Forbidden("a liaison officer acts for their own party only");
    }

    public static void Open(Exchange x)
    {
        if (x.Closed) throw Rejection.Conflict($"exchange {x.Id} is {Ledger.Wire(x.Status)}");
    }

    public static object[] SubmitList(Exchange x, Actor officer, ListKind kind, ListEntry[] entries, DateTimeOffset now)
    {
        Open(x);
        ForOwnParty(x, officer, officer.Party ?? "");
        new Validation().Check(Enum.IsDefined(kind), "kind", "must be release or expected")
            .Check(entries.Length is > 0 and <= 5000, "entries", "a list has 1 to 5000 entries").ThrowIfInvalid();
        var version = (x.List(officer.Party!, kind)?.Version ?? 0) + 1;
        return [new ListSubmitted(x.Id, officer.Party!, kind, version, entries, officer.Subject, now)];
    }

    public static object[] RecordHandover(Exchange x, Actor officer, string[] personIds, DateTimeOffset now)
    {
        Open(x);
        ForOwnParty(x, officer, officer.Party ?? "");
        new Validation().Check(personIds.Length is > 0 and <= 5000, "personIds", "1 to 5000 people per handover").ThrowIfInvalid();
        var listed = (x.List(officer.Party!, ListKind.Release)?.Entries ?? []).Select(e => e.PersonId).ToHashSet();
        var strangers = personIds.Where(p => !listed.Contains(p)).ToList();
        if (strangers.Count > 0) throw Rejection.Unprocessable($"not on {officer.Party}'s release list: {string.Join(", ", strangers.Take(5))}");
        var again = personIds.Where(x.HandedOverBy.ContainsKey).ToList();
        if (again.Count > 0) throw Rejection.Conflict($"handover already recorded for {string.Join(", ", again.Take(5))}");
        return [new HandoverRecorded(x.Id, officer.Party!, personIds.Distinct().ToArray(), officer.Subject, now)];
    }

    public static object[] ConfirmReceipt(Exchange x, Actor officer, string[] personIds, DateTimeOffset now)
    {
        Open(x);
        ForOwnParty(x, officer, officer.Party ?? "");
        new Validation().Check(personIds.Length is > 0 and <= 5000, "personIds", "1 to 5000 people per confirmation").ThrowIfInvalid();
        var releasedByOther = (x.List(x.OtherParty(officer.Party!), ListKind.Release)?.Entries ?? []).Select(e => e.PersonId).ToHashSet();
        var own = personIds.Where(p => x.HandedOverBy.GetValueOrDefault(p) == officer.Party).ToList();
        if (own.Count > 0) throw Rejection.Forbidden("the receiving party confirms: a party cannot confirm its own handover");
        var strangers = personIds.Where(p => !releasedByOther.Contains(p)).ToList();
        if (strangers.Count > 0) throw Rejection.Unprocessable($"not on {x.OtherParty(officer.Party!)}'s release list: {string.Join(", ", strangers.Take(5))}");
        var again = personIds.Where(x.ConfirmedBy.ContainsKey).ToList();
        if (again.Count > 0) throw Rejection.Conflict($"receipt already confirmed for {string.Join(", ", again.Take(5))}");
        return [new HandoverConfirmed(x.Id, officer.Party!, personIds.Distinct().ToArray(), officer.Subject, now)];
    }

    public static object[] Close(Exchange x, Actor actor, bool collapse, string? reason, IReadOnlyDictionary<string, string> releasedBefore, DateTimeOffset now)
    {
        Open(x);
        if (collapse && string.IsNullOrWhiteSpace(reason)) throw Rejection.Invalid(new Dictionary<string, string[]> { ["reason"] = ["a collapse needs a reason"] });
        var reconciliation = Ledger.Reconcile(x, releasedBefore);
        var outcome = collapse ? ExchangeStatus.Collapsed : reconciliation.Reciprocal ? ExchangeStatus.Completed : ExchangeStatus.PartlyCompleted;
        return [new ExchangeClosed(x.Id, outcome, reason, actor.Subject, now)];
    }
}
