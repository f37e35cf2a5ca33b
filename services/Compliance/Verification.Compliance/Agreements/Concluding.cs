using Microsoft.AspNetCore.Mvc;
using Verification.Compliance.Domain;
using Verification.Compliance.Facts;
using Verification.EventStore;
using Verification.ServiceDefaults;

namespace Verification.Compliance.Agreements;

public sealed record TermRequest(string TermId, TermKind Kind, string Title, string[] PartiesBound, DateTimeOffset From, DateTimeOffset? To = null,
    string[]? TargetTypes = null, string[]? Regions = null, double[]? Area = null, string? ExchangeId = null, string? CommitmentId = null);

public sealed record ConcludeAgreement(string AgreementId, string Title, string[] Parties, string? Mediator, TermRequest[] Terms);

public sealed record AgreementResult(string AgreementId, long Version, int Terms, int Determinations);

/// <summary>
/// The mediators record an agreement and its terms (later terms can be added). Terms apply to facts already known
/// too: a term added today about last week is evaluated against last week's incidents, in the same transaction.
/// </summary>
public static class Concluding
{
    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/", async (ConcludeAgreement r, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, PartyDirectory parties, TimeProvider clock) =>
        {
            var terms = Validate(r, parties);
            var concluded = new AgreementConcluded(r.AgreementId, r.Title.Trim(), r.Parties, r.Mediator, terms, clock.GetUtcNow());
            var result = await AppendAsync(http, store, r.AgreementId, ExpectedVersion.NoStream, concluded, terms, clock.GetUtcNow());
            return TypedResults.Created($"/agreements/{r.AgreementId}", result);
        }).RequireAuthorization(p => p.RequireRole(Roles.Admin, Roles.Verifier));

        group.MapPost("/{id}/terms", async (string id, TermRequest r, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store, PartyDirectory parties, TimeProvider clock) =>
        {
            var (agreement, version) = await LoadAsync(store, id, http.RequestAborted);
            var term = ValidateTerm(r, "term", agreement.Parties, new Validation());
            if (agreement.Terms.Any(t => t.TermId == term.TermId)) throw Rejection.Conflict($"agreement {id} already has a term {term.TermId}");
            var result = await AppendAsync(http, store, id, version, new TermAdded(id, term, clock.GetUtcNow()), [term], clock.GetUtcNow());
            return TypedResults.Ok(result);
        }).RequireAuthorization(p => p.RequireRole(Roles.Admin, Roles.Verifier));

        group.MapGet("/{id}", async (string id, HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store) =>
        {
            var (agreement, version) = await LoadAsync(store, id, http.RequestAborted);
            http.Response.Headers.ETag = $"\"{version}\"";
            return TypedResults.Ok(agreement);
        });

        group.MapGet("/", async (HttpContext http, [FromKeyedServices(ComplianceModule.Name)] EventStore.EventStore store) =>
            TypedResults.Ok(await Judging.AgreementsAsync(store, http.RequestAborted)));
    }

    public static async Task<(Agreement Agreement, long Version)> LoadAsync(EventStore.EventStore store, string id, CancellationToken cancellationToken)
    {
        var (agreement, version) = await store.AggregateAsync<Agreement>(id, Agreement.Evolve, cancellationToken: cancellationToken);
        return agreement is null ? throw Rejection.NotFound($"agreement {id} does not exist") : (agreement, version);
    }

    /// <summary>The agreement's event and the determinations its new terms make of every fact already known.</summary>
    private static async Task<AgreementResult> AppendAsync(HttpContext http, EventStore.EventStore store, string id, long version, object e, Term[] terms, DateTimeOffset now)
    {
        var actor = Actor.From(http.User);
        await using var termsLock = await Lease.AcquireAsync(store, Judging.TermsLock, shared: false, http.RequestAborted);
        var kinds = terms.Select(t => t.Applies.ToString()).Distinct().Select(k => char.ToLowerInvariant(k[0]) + k[1..]).ToArray();
        var subjects = await store.QueryDocumentsAsync<Subject>(ComplianceModule.SubjectsView, "d.data->>'kind' = ANY(@kinds)", p => p.AddWithValue("kinds", kinds),
            limit: 1_000_000, cancellationToken: http.RequestAborted);
        var windows = terms.Any(t => t.Kind == TermKind.RepairWindows) ? await Judging.RepairWindowsAsync(store, http.RequestAborted) : [];
        var session = store.OpenSession(new EventMetadata { ActorSub = actor.Subject, ActorRole = actor.Role, ActorParty = actor.Party }).Append(id, "agreement", version, e);
        var before = session.PendingCount;
        foreach (var term in terms)
        {
            foreach (var subject in subjects.Where(s => s.Kind == term.Applies)) Judging.AppendDeterminations(session, id, term, subject, windows, [], now);
        }
        var determinations = session.PendingCount - before;
        var saved = await session.SaveChangesAsync(http.RequestAborted);
        http.Response.Headers.ETag = $"\"{saved[0].Version}\"";
        return new AgreementResult(id, saved[0].Version, terms.Length, determinations);
    }

    private static Term[] Validate(ConcludeAgreement r, PartyDirectory parties)
    {
        var v = new Validation()
            .Check(Ids.IsValid(r.AgreementId), "agreementId", "1 to 60 letters, digits, '-' or '_'")
            .Check(!string.IsNullOrWhiteSpace(r.Title) && r.Title.Length <= 300, "title", "required, at most 300 characters")
            .Check(r.Parties is { Length: >= 2 } && r.Parties.All(parties.IsParty) && r.Parties.Distinct().Count() == r.Parties.Length, "parties",
                $"two or more distinct parties among {string.Join(", ", parties.Parties.Select(p => p.Code))}")
            .Check(r.Mediator is null || parties.IsMediator(r.Mediator), "mediator", "a configured mediator")
            .Check(r.Terms is { Length: <= 100 }, "terms", "at most 100 terms")
            .Check(r.Terms is null || r.Terms.Select(t => t.TermId).Distinct().Count() == r.Terms.Length, "terms", "term ids must be distinct");
        var terms = (r.Terms ?? []).Select((t, i) => ValidateTerm(t, $"terms[{i}]", r.Parties ?? [], v)).ToArray();
        v.ThrowIfInvalid();
        return terms;
    }

    private static Term ValidateTerm(TermRequest t, string path, string[] parties, Validation v)
    {
        v.Check(Ids.IsValid(t.TermId), $"{path}.termId", "1 to 60 letters, digits, '-' or '_'")
            .Check(!string.IsNullOrWhiteSpace(t.Title) && t.Title.Length <= 300, $"{path}.title", "required, at most 300 characters")
            .Check(t.PartiesBound is { Length: > 0 } && t.PartiesBound.All(parties.Contains), $"{path}.partiesBound", "one or more of the agreement's parties")
            .Check(t.To is null || t.To > t.From, $"{path}.to", "must be after from")
            .Check(t.Area is null || (t.Area.Length == 4 && t.Area[0] is >= -180 and <= 180 && t.Area[2] is >= -180 and <= 180
                && t.Area[1] is >= -90 and <= 90 && t.Area[3] is >= -90 and <= 90 && t.Area[0] < t.Area[2] && t.Area[1] < t.Area[3]),
                $"{path}.area", "[west, south, east, north] in degrees, west < east, south < north")
            .Check(t.TargetTypes is null || (t.TargetTypes.Length <= 20 && t.TargetTypes.All(x => !string.IsNullOrWhiteSpace(x))), $"{path}.targetTypes", "at most 20 non-empty values")
            .Check(t.Regions is null || (t.Regions.Length <= 100 && t.Regions.All(x => !string.IsNullOrWhiteSpace(x))), $"{path}.regions", "at most 100 non-empty values")
            .Check(t.ExchangeId is null || t.Kind == TermKind.Exchange, $"{path}.exchangeId", "only for exchange terms")
            .Check(t.CommitmentId is null || t.Kind == TermKind.Pullback, $"{path}.commitmentId", "only for pullback terms")
            .Check((t.TargetTypes is null && t.Regions is null && t.Area is null) || t.Kind is TermKind.NoStrikes, $"{path}.kind", "target types, regions and area apply to noStrikes terms");
        if (path == "term") v.ThrowIfInvalid();
        return new Term(t.TermId ?? "", t.Kind, t.Title?.Trim() ?? "", t.PartiesBound ?? [], t.From, t.To, t.TargetTypes, t.Regions, t.Area, t.ExchangeId, t.CommitmentId);
    }
}

internal static class Ids
{
    public static bool IsValid(string? id) => id is { Length: > 0 and <= 60 } && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
}
