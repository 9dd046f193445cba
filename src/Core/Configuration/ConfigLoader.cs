using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;

namespace Replicator.Core.Configuration;

/// <summary>
/// Builds <see cref="ReplicatorOptions"/> the Microsoft.Extensions.Configuration way, checks every
/// key against the options types (a misspelt key is an error, not silently ignored), and resolves
/// connection strings and passwords.
/// </summary>
public static class ConfigLoader
{
    public const string EnvironmentPrefix = "REPLICATOR_";

    /// <summary>Loads the configuration.</summary>
    /// <param name="configFile">JSON file, or null for none.</param>
    /// <param name="overrides">Flags given on the command line, as <c>Section:Key</c> → value.</param>
    /// <param name="environment">Environment variables; null means the process environment.</param>
    /// <exception cref="ConfigurationException">A key is unknown or a value is invalid.</exception>
    public static ReplicatorOptions Load(string? configFile, IReadOnlyDictionary<string, string?>? overrides = null, IDictionary<string, string?>? environment = null)
    {
        var builder = new ConfigurationBuilder();
        if (configFile is not null)
        {
            var path = Path.GetFullPath(configFile);
            if (!File.Exists(path))
                throw new ConfigurationException("--config", $"file '{configFile}' does not exist");
            try
            {
                using var stream = File.OpenRead(path);
                JsonDocument.Parse(stream, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }).Dispose();
            }
            catch (JsonException e)
            {
                throw new ConfigurationException("--config", $"'{configFile}' is not valid JSON (line {e.LineNumber + 1}): {e.Message}");
            }

            builder.AddJsonFile(path, optional: false, reloadOnChange: false);
        }

        var env = environment ?? Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value, StringComparer.Ordinal);
        var fromEnv = env.Where(e => e.Key.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase))
            .ToDictionary(e => e.Key[EnvironmentPrefix.Length..].Replace("__", ":", StringComparison.Ordinal), e => e.Value, StringComparer.OrdinalIgnoreCase);
        builder.AddInMemoryCollection(fromEnv);
        if (overrides is not null)
            builder.AddInMemoryCollection(overrides.Where(o => o.Value is not null));

        var configuration = builder.Build();
        CheckKeys(configuration, typeof(ReplicatorOptions), "");

        var options = new ReplicatorOptions();
        try
        {
            configuration.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            // "Failed to convert configuration value 'abc' at 'Snapshot:Jobs' to type 'System.Int32'."
            var m = System.Text.RegularExpressions.Regex.Match(e.Message, "value '(.*)' at '(.*)' to type '(?:System\\.)?(.*)'");
            if (!m.Success)
                throw new ConfigurationException(e.Message, e);
            var expected = m.Groups[3].Value switch
            {
                "Int32" or "Int64" => "a whole number",
                "Boolean" => "true or false",
                var other => "a " + other,
            };
            throw new ConfigurationException(m.Groups[2].Value, $"'{m.Groups[1].Value}' is not {expected}");
        }

        Validate(options);
        return options;
    }

    /// <summary>The source connection, with its password resolved. Fails with the key named.</summary>
    public static ConnectionInfo ResolveSource(ReplicatorOptions options) => Resolve(options.Source, "Source");

    /// <summary>The target connection, with its password resolved. Fails with the key named.</summary>
    public static ConnectionInfo ResolveTarget(ReplicatorOptions options) => Resolve(options.Target, "Target");

    private static ConnectionInfo Resolve(EndpointOptions endpoint, string section)
    {
        if (string.IsNullOrWhiteSpace(endpoint.ConnectionString))
            throw new ConfigurationException($"{section}:ConnectionString", $"is not set; pass --{section.ToLowerInvariant()} '<conninfo>', set {EnvironmentPrefix}{section.ToUpperInvariant()}__CONNECTIONSTRING, or put it in the config file");
        string? password = endpoint.Password;
        if (endpoint.PasswordFile is { } file)
        {
            if (!File.Exists(file))
                throw new ConfigurationException($"{section}:PasswordFile", $"file '{file}' does not exist");
            password = File.ReadAllText(file).TrimEnd('\r', '\n');
        }

        return ConnectionInfo.Parse(endpoint.ConnectionString, $"{section}:ConnectionString", password);
    }

    private static void Validate(ReplicatorOptions o)
    {
        static void Positive(long value, string key)
        {
            if (value <= 0)
                throw new ConfigurationException(key, $"must be greater than 0 (got {value.ToString(CultureInfo.InvariantCulture)})");
        }

        Positive(o.Snapshot.Jobs, "Snapshot:Jobs");
        Positive(o.Snapshot.ChunkRows, "Snapshot:ChunkRows");
        Positive(o.Apply.MaxBatchTransactions, "Apply:MaxBatchTransactions");
        Positive(o.Apply.MaxBatchChanges, "Apply:MaxBatchChanges");
        Positive(o.Apply.MaxBatchMilliseconds, "Apply:MaxBatchMilliseconds");
        if (o.Buffer.Kind is not ("embedded" or "kafka"))
            throw new ConfigurationException("Buffer:Kind", $"'{o.Buffer.Kind}' is not a buffer kind (embedded, kafka)");
        if (o.Buffer.Kind == "kafka" && string.IsNullOrWhiteSpace(o.Buffer.Kafka.Bootstrap))
            throw new ConfigurationException("Buffer:Kafka:Bootstrap", "is required with the kafka buffer (--kafka-bootstrap host:port)");
        if (!TryParseListen(o.Metrics.Listen, out _, out _))
            throw new ConfigurationException("Metrics:Listen", $"'{o.Metrics.Listen}' is not host:port (e.g. 127.0.0.1:9187 or 0.0.0.0:9187)");
        if (!Enum.TryParse<Microsoft.Extensions.Logging.LogLevel>(o.Logging.Level, ignoreCase: true, out _))
            throw new ConfigurationException("Logging:Level", $"'{o.Logging.Level}' is not a log level (Trace, Debug, Information, Warning, Error)");
        // Slot names are restricted by PostgreSQL itself: lower-case letters, digits, underscore.
        if (o.SlotName.Length is 0 or > 63 || o.SlotName.Any(c => !(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '_')))
            throw new ConfigurationException("SlotName", $"'{o.SlotName}' is not a valid slot name (lower-case letters, digits and underscores, at most 63)");

        if (string.IsNullOrWhiteSpace(o.PublicationName))
            throw new ConfigurationException("PublicationName", "is empty");
        foreach (var key in o.Buffer.Kafka.Properties.Keys)
        {
            if (ReservedKafkaProperties.TryGetValue(key, out var why))
                throw new ConfigurationException($"Buffer:Kafka:Properties:{key}", $"is set by Replicator ({why}) and cannot be changed; remove it");
        }
    }

    /// <summary>librdkafka properties that <c>Buffer:Kafka:Properties</c> may not set, and why.</summary>
    public static readonly IReadOnlyDictionary<string, string> ReservedKafkaProperties = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["bootstrap.servers"] = "give it as Buffer:Kafka:Bootstrap, --kafka-bootstrap",
        ["metadata.broker.list"] = "give it as Buffer:Kafka:Bootstrap, --kafka-bootstrap",
        ["enable.idempotence"] = "an idempotent producer: a retried send never duplicates or reorders a record",
        ["acks"] = "acks=all: the slot is acknowledged only for what every in-sync replica holds",
        ["request.required.acks"] = "acks=all: the slot is acknowledged only for what every in-sync replica holds",
        ["partitioner"] = "murmur2, so keys land on the partitions Debezium's Java producer picks",
        ["isolation.level"] = "read_committed",
        ["enable.auto.offset.store"] = "only the offsets of transactions the target has are stored",
        ["auto.offset.reset"] = "a position Kafka no longer holds stops the applier instead of skipping records",
    };

    /// <summary>Splits <c>host:port</c> (IPv6 in brackets).</summary>
    public static bool TryParseListen(string listen, out string host, out int port)
    {
        host = "";
        port = 0;
        var colon = listen.LastIndexOf(':');
        if (colon <= 0)
            return false;
        host = listen[..colon].Trim('[', ']');
        return int.TryParse(listen[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 0 and <= 65535;
    }

    // Reflection over the options classes: the nested classes' properties are kept for it by the
    // DynamicDependency attributes (a class added to ReplicatorOptions belongs in this list;
    // ConfigLoaderTests fails for a class left out).
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(EndpointOptions))]
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(SnapshotOptions))]
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(CaptureOptions))]
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(ApplyOptions))]
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(BufferOptions))]
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(KafkaOptions))]
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(MetricsOptions))]
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicProperties, typeof(LoggingOptions))]
    [UnconditionalSuppressMessage("Trimming", "IL2072", Justification = "Every options class is kept by the DynamicDependency attributes above.")]
    private static void CheckKeys(IConfiguration section, [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicProperties)] Type type, string path)
    {
        var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
        {
            var key = path.Length == 0 ? child.Key : $"{path}:{child.Key}";
            if (!properties.TryGetValue(child.Key, out var property))
            {
                throw new ConfigurationException(key, $"unknown setting; known settings{(path.Length == 0 ? "" : " under " + path)}: {string.Join(", ", properties.Keys.Order(StringComparer.Ordinal))}");
            }

            var t = property.PropertyType;
            var isLeaf = t.IsPrimitive || t == typeof(string) || t.IsEnum || Nullable.GetUnderlyingType(t) is not null;
            if (t == typeof(Dictionary<string, string>))
            {
                // Free-form names (e.g. librdkafka properties): any name, each a single value.
                foreach (var entry in child.GetChildren())
                {
                    if (entry.GetChildren().Any())
                        throw new ConfigurationException($"{key}:{entry.Key}", "is a single value, not a section (a property name with dots is one key: \"sasl.mechanism\": \"SCRAM-SHA-512\")");
                }
            }
            else if (!isLeaf)
                CheckKeys(child, t, key);
            else if (child.GetChildren().Any())
                throw new ConfigurationException(key, "is a single value, not a section");
        }
    }

    /// <summary>The effective configuration as JSON, with every secret masked.</summary>
    public static string ToRedactedJson(ReplicatorOptions options)
    {
        var node = JsonSerializer.SerializeToNode(options, CoreJson.Indented.ReplicatorOptions)!;
        Redact(node, "");
        foreach (var side in new[] { "Source", "Target" })
        {
            var endpoint = side == "Source" ? options.Source : options.Target;
            if (endpoint.ConnectionString is { } cs)
            {
                string shown;
                try
                {
                    shown = ConnectionInfo.Parse(cs, side + ":ConnectionString").Redacted;
                }
                catch (ConfigurationException)
                {
                    shown = "(invalid; not shown because it may hold a password)";
                }

                node[side]!["ConnectionString"] = shown;
            }
        }

        return node.ToJsonString(CoreJson.Indented.Options);
    }

    private static void Redact(JsonNode node, string name)
    {
        if (node is JsonObject obj)
        {
            foreach (var (key, child) in obj.ToList())
            {
                if (child is JsonValue && IsSecretName(key))
                    obj[key] = child.GetValueKind() == JsonValueKind.Null ? null : "*****";
                else if (child is not null)
                    Redact(child, key);
            }
        }
    }

    /// <summary>Setting names that hold secrets (their values are never shown).</summary>
    public static bool IsSecretName(string key) =>
        key.EndsWith("Password", StringComparison.OrdinalIgnoreCase)
        || key.EndsWith("Secret", StringComparison.OrdinalIgnoreCase)
        || key.EndsWith("Token", StringComparison.OrdinalIgnoreCase)
        // librdkafka properties: ssl.key.pem (a private key), sasl.oauthbearer.config (may hold a secret).
        || key.EndsWith(".pem", StringComparison.OrdinalIgnoreCase)
        || key.Equals("sasl.oauthbearer.config", StringComparison.OrdinalIgnoreCase);
}
