using System.Text.Json;

namespace Replicator.Kafka.Debezium;

/// <summary>
/// A Kafka Connect schema, written exactly as Kafka Connect's JsonConverter writes it with
/// <c>schemas.enable=true</c>: <c>type</c>, then <c>fields</c>/<c>items</c>, <c>optional</c>,
/// <c>name</c>, <c>version</c>, <c>doc</c>, <c>parameters</c>, <c>default</c>, and for a struct
/// field its <c>field</c> name last. Immutable once built; one instance per relation is cached.
/// </summary>
public sealed class ConnectSchema
{
    public ConnectSchema(string type, bool optional, string? name = null, int? version = null)
    {
        Type = type;
        Optional = optional;
        Name = name;
        Version = version;
    }

    /// <summary><c>int8</c>…<c>int64</c>, <c>float32</c>, <c>float64</c>, <c>boolean</c>, <c>string</c>, <c>bytes</c>, <c>array</c>, <c>struct</c>.</summary>
    public string Type { get; }

    public bool Optional { get; }

    public string? Name { get; }

    public int? Version { get; }

    public string? Doc { get; init; }

    public IReadOnlyList<KeyValuePair<string, string>>? Parameters { get; init; }

    /// <summary>A default value; only strings are needed (source.snapshot's "false").</summary>
    public string? DefaultString { get; init; }

    public IReadOnlyList<(string Field, ConnectSchema Schema)>? Fields { get; init; }

    public ConnectSchema? Items { get; init; }

    public string? Parameter(string key) => Parameters?.FirstOrDefault(p => p.Key == key).Value;

    private Dictionary<string, ConnectSchema>? _fieldMap;

    /// <summary>A struct's field schema by name, or null.</summary>
    public ConnectSchema? Field(string name)
    {
        if (Fields is null)
            return null;
        _fieldMap ??= Fields.GroupBy(f => f.Field, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Schema, StringComparer.Ordinal);
        return _fieldMap.TryGetValue(name, out var schema) ? schema : null;
    }

    public static ConnectSchema Primitive(string type, bool optional) => new(type, optional);

    public static ConnectSchema Struct(string? name, bool optional, IReadOnlyList<(string, ConnectSchema)> fields, int? version = null, string? doc = null) =>
        new("struct", optional, name, version) { Fields = fields, Doc = doc };

    public static ConnectSchema Array(ConnectSchema items, bool optional) => new("array", optional) { Items = items };

    /// <summary>A copy with a different optionality (Debezium makes every nullable column optional).</summary>
    public ConnectSchema WithOptional(bool optional) => optional == Optional
        ? this
        : new ConnectSchema(Type, optional, Name, Version) { Doc = Doc, Parameters = Parameters, DefaultString = DefaultString, Fields = Fields, Items = Items };

    public void WriteTo(Utf8JsonWriter writer, string? fieldName = null)
    {
        writer.WriteStartObject();
        writer.WriteString("type", Type);
        if (Fields is not null)
        {
            writer.WriteStartArray("fields");
            foreach (var (field, schema) in Fields)
                schema.WriteTo(writer, field);
            writer.WriteEndArray();
        }

        if (Items is not null)
        {
            writer.WritePropertyName("items");
            Items.WriteTo(writer);
        }

        writer.WriteBoolean("optional", Optional);
        if (Name is not null)
            writer.WriteString("name", Name);
        if (Version is not null)
            writer.WriteNumber("version", Version.Value);
        if (Doc is not null)
            writer.WriteString("doc", Doc);
        if (Parameters is not null)
        {
            writer.WriteStartObject("parameters");
            foreach (var (key, value) in Parameters)
                writer.WriteString(key, value);
            writer.WriteEndObject();
        }

        if (DefaultString is not null)
            writer.WriteString("default", DefaultString);
        if (fieldName is not null)
            writer.WriteString("field", fieldName);
        writer.WriteEndObject();
    }

    /// <summary>Reads a schema as JsonConverter writes it (tolerates any property order).</summary>
    public static ConnectSchema Parse(JsonElement element)
    {
        var type = element.GetProperty("type").GetString() ?? throw new FormatException("schema without a type");
        var optional = element.TryGetProperty("optional", out var o) && o.ValueKind == JsonValueKind.True;
        string? name = element.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
        int? version = element.TryGetProperty("version", out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;
        List<KeyValuePair<string, string>>? parameters = null;
        if (element.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object)
            parameters = p.EnumerateObject().Select(x => new KeyValuePair<string, string>(x.Name, x.Value.ToString())).ToList();
        List<(string, ConnectSchema)>? fields = null;
        if (element.TryGetProperty("fields", out var f) && f.ValueKind == JsonValueKind.Array)
            fields = f.EnumerateArray().Select(x => (x.GetProperty("field").GetString()!, Parse(x))).ToList();
        ConnectSchema? items = element.TryGetProperty("items", out var i) && i.ValueKind == JsonValueKind.Object ? Parse(i) : null;
        return new ConnectSchema(type, optional, name, version) { Parameters = parameters, Fields = fields, Items = items };
    }
}
