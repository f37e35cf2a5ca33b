using System.Security.Claims;
using System.Text;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Verification.ServiceDefaults;

/// <summary>The roles of the system; each is also an authorization policy of the same name.</summary>
public static class Roles
{
    public const string Monitor = "monitor";
    public const string Liaison = "liaison";
    public const string Verifier = "verifier";
    public const string Auditor = "auditor";
    public const string Admin = "admin";
    /// <summary>The neutral intermediary of an exchange (e.g. the ICRC): confirms identities and witnesses handovers.</summary>
    public const string Intermediary = "intermediary";
    public static readonly string[] All = [Monitor, Liaison, Verifier, Auditor, Admin, Intermediary];
}

/// <summary>The caller as the token names them: subject, role and party (a party or mediator code).</summary>
public sealed record Actor(string Subject, string Role, string? Party)
{
    public static Actor From(ClaimsPrincipal user) => new(
        user.FindFirstValue("sub") ?? throw new InvalidOperationException("token has no sub"),
        user.FindFirstValue("role") ?? "",
        user.FindFirstValue("party"));
}

/// <summary>
/// Auth settings: <c>Auth:Issuer</c>, <c>Auth:Audience</c>, <c>Auth:SigningKey</c> (base64, at least 32 bytes).
/// With <c>Auth:DevMode=true</c> and no key, a well-known development key is used: never in production.
/// </summary>
public sealed record AuthSettings(string Issuer, string Audience, byte[] SigningKey)
{
    public const string DevKeyText = "verification-development-signing-key-not-for-production";

    public static AuthSettings From(IConfiguration configuration)
    {
        var section = configuration.GetSection("Auth");
        var key = section["SigningKey"];
        byte[] bytes;
        if (!string.IsNullOrWhiteSpace(key)) bytes = Convert.FromBase64String(key);
        else if (section.GetValue("DevMode", false)) bytes = Encoding.UTF8.GetBytes(DevKeyText);
        else throw new InvalidOperationException("Auth:SigningKey is not configured (set Auth:DevMode=true to use the development key).");
        if (bytes.Length < 32) throw new InvalidOperationException("Auth:SigningKey must be at least 32 bytes.");
        return new AuthSettings(section["Issuer"] ?? "verification-dev", section["Audience"] ?? "verification", bytes);
    }

    public SymmetricSecurityKey Key => new(SigningKey);

    /// <summary>Mints a token for a caller; used by the dev-token command and by tests.</summary>
    public string CreateToken(string subject, string role, string? party, TimeSpan? lifetime = null, TimeProvider? clock = null)
    {
        var claims = new Dictionary<string, object> { ["sub"] = subject, ["role"] = role };
        if (!string.IsNullOrWhiteSpace(party)) claims["party"] = party;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = Audience,
            Claims = claims,
            Expires = ((clock ?? TimeProvider.System).GetUtcNow() + (lifetime ?? TimeSpan.FromHours(12))).UtcDateTime,
            SigningCredentials = new SigningCredentials(Key, SecurityAlgorithms.HmacSha256),
        });
    }
}

internal static class Security
{
    internal static void AddSecurity(this WebApplicationBuilder builder)
    {
        var settings = AuthSettings.From(builder.Configuration);
        builder.Services.AddSingleton(settings);
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(o =>
        {
            o.MapInboundClaims = false;
            o.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = settings.Issuer,
                ValidAudience = settings.Audience,
                IssuerSigningKey = settings.Key,
                NameClaimType = "sub",
                RoleClaimType = "role",
                ClockSkew = TimeSpan.FromSeconds(30),
            };
        });
        builder.Services.AddAuthorizationBuilder().AddRolePolicies();
    }

    private static void AddRolePolicies(this Microsoft.AspNetCore.Authorization.AuthorizationBuilder authorization)
    {
        foreach (var role in Roles.All) authorization.AddPolicy(role, p => p.RequireRole(role));
    }
}
