using Microsoft.Extensions.Configuration;

namespace Verification.ServiceDefaults;

/// <summary>A party to the agreement or a mediator, with the language its officers read alerts in.</summary>
public sealed record PartyInfo(string Code, string Name, string Language, bool Mediator);

/// <summary>
/// Parties and mediators are data, from configuration (<c>Parties:N:Code/Name/Language</c> and
/// <c>Mediators:N:…</c>), never hard-coded.
/// </summary>
public sealed class PartyDirectory
{
    private readonly Dictionary<string, PartyInfo> _byCode;

    public PartyDirectory(IConfiguration configuration)
    {
        static IEnumerable<PartyInfo> Read(IConfiguration section, bool mediator) => section.GetChildren().Select(c =>
            new PartyInfo(c["Code"] ?? throw new InvalidOperationException($"{c.Path}:Code is missing"), c["Name"] ?? c["Code"]!, c["Language"] ?? "en", mediator));
        _byCode = Read(configuration.GetSection("Parties"), false).Concat(Read(configuration.GetSection("Mediators"), true))
            .ToDictionary(p => p.Code, StringComparer.Ordinal);
    }

    public IReadOnlyCollection<PartyInfo> All => _byCode.Values;
    public IEnumerable<PartyInfo> Parties => _byCode.Values.Where(p => !p.Mediator);
    public IEnumerable<PartyInfo> Mediators => _byCode.Values.Where(p => p.Mediator);
    public bool IsParty(string? code) => code is not null && _byCode.TryGetValue(code, out var p) && !p.Mediator;
    public bool IsMediator(string? code) => code is not null && _byCode.TryGetValue(code, out var p) && p.Mediator;
    public PartyInfo? Find(string? code) => code is not null && _byCode.TryGetValue(code, out var p) ? p : null;
}

public static class ConnectionStrings
{
    /// <summary>The module's own database (<c>ConnectionStrings:{name}</c>), or the shared one of the embedded mode (<c>ConnectionStrings:Postgres</c>).</summary>
    public static string For(IConfiguration configuration, string name) =>
        configuration.GetConnectionString(name) ?? configuration.GetConnectionString("Postgres")
        ?? throw new InvalidOperationException($"ConnectionStrings:{name} (or ConnectionStrings:Postgres) is not set");
}
