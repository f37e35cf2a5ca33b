using System.Text;
using System.Text.Json;

namespace Verification.EventStore;

/// <summary>Text the store was asked to keep that PostgreSQL cannot: it refuses U+0000 (NUL) in text and jsonb alike.</summary>
public sealed class UnstorableTextException(string message) : ArgumentException(message);

/// <summary>Refuses unstorable text before anything is sent, so a refused append never reaches the database.</summary>
internal static class Storable
{
    /// <summary>
    /// JSON as System.Text.Json writes it, unchanged. It writes U+0000 as the escape \u0000, which PostgreSQL's jsonb
    /// refuses: a search for that finds the rare suspect, and only then is the JSON read to name the field (the same six
    /// characters can also be an escaped backslash followed by "u0000", which is storable).
    /// </summary>
    public static string Json(string json, string what) => MayHoldNul(json) ? Checked(json, what) : json;

    public static bool MayHoldNul(string json) => json.Contains("\\u0000", StringComparison.Ordinal);

    /// <summary>JSON <see cref="MayHoldNul"/> flagged, read through: unchanged if the six characters were storable text.</summary>
    public static string Checked(string json, string what)
    {
        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(json));
        string? property = null;
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.PropertyName) property = reader.GetString();
            if (reader.TokenType is JsonTokenType.PropertyName or JsonTokenType.String && reader.GetString()!.Contains('\0', StringComparison.Ordinal))
                throw new UnstorableTextException($"{what}: {(property is null ? "a value" : $"'{property}'")} contains U+0000 (NUL), which cannot be stored");
        }
        return json;
    }

    /// <summary>What was thrown, as the store records it (a projection stopped, an outbox message held): no NUL, bounded.</summary>
    public static string Error(Exception e)
    {
        var text = $"{e.GetType().FullName}: {e.Message}".Replace('\0', '\uFFFD');
        return text.Length <= 2000 ? text : text[..2000];
    }

    public static string Text(string text, string what) =>
        text.Contains('\0', StringComparison.Ordinal) ? throw new UnstorableTextException($"{what} contains U+0000 (NUL), which cannot be stored") : text;
}
