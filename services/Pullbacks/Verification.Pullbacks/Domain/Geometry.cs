using NetTopologySuite.Geometries;
using NetTopologySuite.Operation.Valid;

namespace Verification.Pullbacks.Domain;

/// <summary>
/// Zones on the real earth. Containment is tested in longitude/latitude (exact for the polygon as drawn); distances
/// to a line are measured in an azimuthal-equidistant plane centred on the point (accurate to well under 1 % at
/// the 50–140 km distances of withdrawal lines), then checked in tests against known great-circle distances.
/// </summary>
public static class Geometry
{
    public const double EarthRadiusKm = 6371.0088;
    private static readonly GeometryFactory Factory = new(new PrecisionModel(), 4326);

    /// <summary>A GeoJSON-style ring ([lon, lat] pairs, closed) as a polygon, or the reason it is not a valid one.</summary>
    public static (Polygon? Polygon, string? Problem) Polygon(double[][] ring)
    {
        if (ring.Length < 4) return (null, "a polygon ring needs at least 4 positions (closed)");
        if (ring.Any(p => p.Length != 2 || p[0] is < -180 or > 180 || p[1] is < -90 or > 90 || !double.IsFinite(p[0]) || !double.IsFinite(p[1])))
            return (null, "positions are [longitude, latitude] within range");
        if (ring[0][0] != ring[^1][0] || ring[0][1] != ring[^1][1]) return (null, "the ring must be closed (first position = last)");
        var polygon = Factory.CreatePolygon(ring.Select(p => new Coordinate(p[0], p[1])).ToArray());
        var validity = new IsValidOp(polygon).ValidationError;
        return validity is null ? (polygon, null) : (null, $"invalid polygon: {validity.Message}");
    }

    public static (LineString? Line, string? Problem) Line(double[][] positions)
    {
        if (positions.Length < 2) return (null, "a line needs at least 2 positions");
        if (positions.Any(p => p.Length != 2 || p[0] is < -180 or > 180 || p[1] is < -90 or > 90 || !double.IsFinite(p[0]) || !double.IsFinite(p[1])))
            return (null, "positions are [longitude, latitude] within range");
        return (Factory.CreateLineString(positions.Select(p => new Coordinate(p[0], p[1])).ToArray()), null);
    }

    public static bool Contains(Polygon polygon, double latitude, double longitude) => polygon.Covers(Factory.CreatePoint(new Coordinate(longitude, latitude)));

    /// <summary>Shortest distance in km from a point to a line (lon/lat), in an azimuthal-equidistant plane centred on the point.</summary>
    public static double DistanceKm(LineString line, double latitude, double longitude)
    {
        var (lat0, lon0) = (Rad(latitude), Rad(longitude));
        Coordinate Project(Coordinate c)
        {
            var (lat, lon) = (Rad(c.Y), Rad(c.X));
            var cosC = Math.Sin(lat0) * Math.Sin(lat) + Math.Cos(lat0) * Math.Cos(lat) * Math.Cos(lon - lon0);
            var angle = Math.Acos(Math.Clamp(cosC, -1, 1));
            var k = angle < 1e-12 ? 1 : angle / Math.Sin(angle);
            return new Coordinate(EarthRadiusKm * k * Math.Cos(lat) * Math.Sin(lon - lon0),
                EarthRadiusKm * k * (Math.Cos(lat0) * Math.Sin(lat) - Math.Sin(lat0) * Math.Cos(lat) * Math.Cos(lon - lon0)));
        }
        // RFC 7946: a line between two positions is straight in longitude/latitude, so follow it (densified) rather than the great circle.
        var dense = NetTopologySuite.Densify.Densifier.Densify(line, 0.02);
        var projected = Factory.CreateLineString(dense.Coordinates.Select(Project).ToArray());
        return projected.Distance(Factory.CreatePoint(new Coordinate(0, 0)));
    }

    private static double Rad(double degrees) => degrees * Math.PI / 180;
}
