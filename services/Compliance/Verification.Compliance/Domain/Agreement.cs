namespace Verification.Compliance.Domain;

/// <summary>
/// What a term obliges: no strikes on given targets in a scope; no strikes inside acknowledged repair windows;
/// acknowledging hotline alerts in time; carrying out an exchange as agreed; a pullback as committed.
/// </summary>
public enum TermKind { NoStrikes, RepairWindows, HotlineAcknowledgement, Exchange, Pullback }

/// <summary>
/// A term with its scope: the parties bound, a period [From, To) by when the fact occurred, and for strikes the
/// target types (a prefix such as "energy" covers every energy sub-kind), regions and an optional box
/// [west, south, east, north] in degrees. Exchange and pullback terms may name one exchange or commitment.
/// </summary>
public sealed record Term(string TermId, TermKind Kind, string Title, string[] PartiesBound, DateTimeOffset From, DateTimeOffset? To = null,
    string[]? TargetTypes = null, string[]? Regions = null, double[]? Area = null, string? ExchangeId = null, string? CommitmentId = null)
{
    public bool InPeriod(DateTimeOffset at) => at >= From && (To is null || at < To);

    public bool InArea(string region, double latitude, double longitude) =>
        (Regions is not { Length: > 0 } || Regions.Contains(region, StringComparer.OrdinalIgnoreCase))
        && (Area is not { Length: 4 } a || (longitude >= a[0] && latitude >= a[1] && longitude <= a[2] && latitude <= a[3]));

    public bool CoversTargets(IEnumerable<string> targets) =>
        TargetTypes is not { Length: > 0 } || targets.Any(t => TargetTypes.Any(w => t.StartsWith(w, StringComparison.OrdinalIgnoreCase)));

    public SubjectKind Applies => Kind switch
    {
        TermKind.NoStrikes or TermKind.RepairWindows => SubjectKind.Incident,
        TermKind.HotlineAcknowledgement => SubjectKind.Alert,
        TermKind.Exchange => SubjectKind.Exchange,
        _ => SubjectKind.Pullback,
    };
}

public sealed record AgreementConcluded(string AgreementId, string Title, string[] Parties, string? Mediator, Term[] Terms, DateTimeOffset ConcludedAt);

public sealed record TermAdded(string AgreementId, Term Term, DateTimeOffset AddedAt);

public sealed record Agreement(string AgreementId, string Title, string[] Parties, string? Mediator, IReadOnlyList<Term> Terms, DateTimeOffset ConcludedAt)
{
    public static Agreement? Evolve(Agreement? state, object e) => e switch
    {
        AgreementConcluded c => new Agreement(c.AgreementId, c.Title, c.Parties, c.Mediator, c.Terms, c.ConcludedAt),
        TermAdded t when state is not null => state with { Terms = [.. state.Terms, t.Term] },
        _ => state,
    };
}
