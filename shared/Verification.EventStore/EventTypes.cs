using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Verification.EventStore;

/// <summary>
/// Maps CLR types to explicit, stable names (never CLR names in the data) with a schema version,
/// and upcasts stored JSON of older versions to the current shape before deserializing.
/// </summary>
public sealed class EventTypes
{
    private readonly ConcurrentDictionary<string, (Type Type, int Version)> _byName = new();
    private readonly ConcurrentDictionary<Type, (string Name, int Version)> _byType = new();
    private readonly ConcurrentDictionary<(string Name, int From), Func<JsonObject, JsonObject>> _upcasters = new();

    public static readonly JsonSerializerOptions Json = CreateJson();

    private static JsonSerializerOptions CreateJson()
    {
        var json = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        json.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase));
        return json;
    }

    /// <summary>Registers <typeparamref name="T"/> under <paramref name="name"/>; <paramref name="version"/> is its current schema version.</summary>
    public EventTypes Register<T>(string name, int version = 1) => Register(typeof(T), name, version);

    public EventTypes Register(Type type, string name, int version = 1)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (_byName.TryGetValue(name, out var existing) && existing.Type != type)
            throw new InvalidOperationException($"event name '{name}' is already mapped to {existing.Type.Name}");
        _byName[name] = (type, version);
        _byType[type] = (name, version);
        return this;
    }

    /// <summary>Rewrites JSON of <paramref name="name"/> at schema version <paramref name="fromVersion"/> to version + 1.</summary>
    public EventTypes Upcast(string name, int fromVersion, Func<JsonObject, JsonObject> upcast)
    {
        _upcasters[(name, fromVersion)] = upcast;
        return this;
    }

    public (string Name, int Version) NameOf(Type type) =>
        _byType.TryGetValue(type, out var entry) ? entry
            : throw new InvalidOperationException($"{type.Name} is not a registered event or message type: register it with a stable name");

    public bool IsRegistered(string name) => _byName.ContainsKey(name);

    public Type TypeOf(string name) =>
        _byName.TryGetValue(name, out var entry) ? entry.Type : throw new InvalidOperationException($"unknown event type '{name}'");

    /// <summary>An event or message as the store writes it; <see cref="UnstorableTextException"/> if it holds a NUL.</summary>
    public string Serialize(object value)
    {
        var json = JsonSerializer.Serialize(value, value.GetType(), Json);
        // The type's name is looked up only for the rare JSON that may hold a NUL, not on every append.
        return Storable.MayHoldNul(json) ? Storable.Checked(json, _byType.TryGetValue(value.GetType(), out var entry) ? entry.Name : value.GetType().Name) : json;
    }

    /// <summary>Reads JSON written at the current schema version (outbox messages).</summary>
    public object Deserialize(string name, string json) =>
        _byName.TryGetValue(name, out var entry) ? Deserialize(name, entry.Version, json) : throw new InvalidOperationException($"unknown event type '{name}'");

    public object Deserialize(string name, int schemaVersion, string json)
    {
        if (!_byName.TryGetValue(name, out var entry)) throw new InvalidOperationException($"unknown event type '{name}'");
        if (schemaVersion > entry.Version)
            throw new InvalidOperationException($"'{name}' was written at schema version {schemaVersion}; this code knows up to {entry.Version}: deploy the newer code");
        if (schemaVersion < entry.Version)
        {
            var node = JsonNode.Parse(json)!.AsObject();
            for (var v = schemaVersion; v < entry.Version; v++)
            {
                if (!_upcasters.TryGetValue((name, v), out var upcast))
                    throw new InvalidOperationException($"no upcaster for '{name}' from schema version {v}");
                node = upcast(node);
            }
            return node.Deserialize(entry.Type, Json)!;
        }
        return JsonSerializer.Deserialize(json, entry.Type, Json)!;
    }
}
