using Verification.ServiceDefaults;

namespace Verification.Incidents.Domain;

/// <summary>Input rules shared by the use cases: figures, places, times, text sizes.</summary>
internal static class Rules
{
    public const int MaxText = 10_000;
    public const int MaxShortText = 500;
    public const int MaxEvidence = 50;
    public const int MaxFigure = 100_000_000;

    public static Validation Figures(this Validation v, string field, Figures? figures)
    {
        if (figures is null) return v;
        foreach (var (name, value) in figures.All())
        {
            if (value is null) continue;
            var path = $"{field}.{name}";
            v.Check(value.Low >= 0 && value.Best >= 0 && value.High >= 0, path, "counts cannot be negative")
             .Check(value.Low <= value.Best && value.Best <= value.High, path, "must satisfy low <= best <= high")
             .Check(value.High <= MaxFigure, path, $"must not exceed {MaxFigure}");
        }
        return v;
    }

    public static Validation Text(this Validation v, string field, string? text, bool required, int max = MaxText) =>
        v.Check(!required || !string.IsNullOrWhiteSpace(text), field, "is required")
         .Check(text is null || text.Length <= max, field, $"must be at most {max} characters");

    public static Validation NotFuture(this Validation v, string field, DateTimeOffset? time, DateTimeOffset now) =>
        v.Check(time is null || time <= now.AddMinutes(5), field, "cannot be in the future");

    public static Validation Coordinates(this Validation v, string field, double? latitude, double? longitude) =>
        v.Check(latitude is null || (latitude >= -90 && latitude <= 90 && double.IsFinite(latitude.Value)), field + ".latitude", "must be between -90 and 90")
         .Check(longitude is null || (longitude >= -180 && longitude <= 180 && double.IsFinite(longitude.Value)), field + ".longitude", "must be between -180 and 180");

    public static Validation Defined<T>(this Validation v, string field, T value) where T : struct, Enum =>
        v.Check(Enum.IsDefined(value), field, "is not a known value");

    /// <summary>Great-circle distance in kilometres (haversine; a sphere of 6371.0088 km is ample for matching reports).</summary>
    public static double DistanceKm(double lat1, double lon1, double lat2, double lon2)
    {
        const double r = 6371.0088;
        double Rad(double d) => d * Math.PI / 180;
        var dLat = Rad(lat2 - lat1);
        var dLon = Rad(lon2 - lon1);
        var a = Math.Pow(Math.Sin(dLat / 2), 2) + Math.Cos(Rad(lat1)) * Math.Cos(Rad(lat2)) * Math.Pow(Math.Sin(dLon / 2), 2);
        return 2 * r * Math.Asin(Math.Min(1, Math.Sqrt(a)));
    }
}
