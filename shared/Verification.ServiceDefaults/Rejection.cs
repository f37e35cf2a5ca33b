namespace Verification.ServiceDefaults;

/// <summary>
/// A decision's "no": bad input (400, with the fields named), a state that forbids the command (409),
/// a stale If-Match (412) or a rule of the domain (422). Mapped to ProblemDetails once, in the defaults.
/// </summary>
public sealed class Rejection(int status, string title, string detail, IDictionary<string, string[]>? errors = null) : Exception(detail)
{
    public int Status { get; } = status;
    public string Title { get; } = title;
    public IDictionary<string, string[]>? Errors { get; } = errors;

    public static Rejection Invalid(IDictionary<string, string[]> errors) =>
        new(400, "The request is not valid", string.Join("; ", errors.Select(e => $"{e.Key}: {string.Join(", ", e.Value)}")), errors);

    public static Rejection Conflict(string detail) => new(409, "The command conflicts with the current state", detail);
    public static Rejection Unprocessable(string detail) => new(422, "The command breaks a rule", detail);
    public static Rejection NotFound(string detail) => new(404, "Not found", detail);
    public static Rejection Forbidden(string detail) => new(403, "Forbidden", detail);
}

/// <summary>Collects field errors; throws one <see cref="Rejection"/> naming them all.</summary>
public sealed class Validation
{
    private readonly Dictionary<string, List<string>> _errors = [];

    public Validation Check(bool ok, string field, string message)
    {
        if (!ok)
        {
            if (!_errors.TryGetValue(field, out var list)) _errors[field] = list = [];
            list.Add(message);
        }
        return this;
    }

    public void ThrowIfInvalid()
    {
        if (_errors.Count > 0) throw Rejection.Invalid(_errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
    }
}
