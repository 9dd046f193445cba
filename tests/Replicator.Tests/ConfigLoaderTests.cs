using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using Replicator.Core.Configuration;

namespace Replicator.Tests;

public class ConfigLoaderTests
{
    private static readonly Dictionary<string, string?> NoEnvironment = [];

    [Fact]
    public void Flags_override_the_environment_which_overrides_the_file()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, """
                { "Snapshot": { "Jobs": 2, "ChunkRows": 10 }, "SlotName": "from_file", "Metrics": { "Listen": "127.0.0.1:1" } }
                """);
            var env = new Dictionary<string, string?> { ["REPLICATOR_SNAPSHOT__JOBS"] = "3", ["REPLICATOR_SlotName"] = "from_env", ["OTHER"] = "x" };
            var options = ConfigLoader.Load(file, new Dictionary<string, string?> { ["Snapshot:Jobs"] = "5" }, env);
            Assert.Equal(5, options.Snapshot.Jobs);
            Assert.Equal(10, options.Snapshot.ChunkRows);
            Assert.Equal("from_env", options.SlotName);
            Assert.Equal("127.0.0.1:1", options.Metrics.Listen);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("Snapshot:Jobz", "1", "Snapshot:Jobz: unknown setting; known settings under Snapshot: Analyze, ChunkRows, CopyOwnership, Jobs, ValidateForeignKeys")]
    [InlineData("Snapshot:Jobs", "many", "Snapshot:Jobs: 'many' is not a whole number")]
    [InlineData("Snapshot:Jobs", "0", "Snapshot:Jobs: must be greater than 0")]
    [InlineData("Buffer:Kind", "redis", "Buffer:Kind: 'redis' is not a buffer kind")]
    [InlineData("Buffer:Kind", "kafka", "Buffer:Kafka:Bootstrap: is required")]
    [InlineData("Metrics:Listen", "9187", "Metrics:Listen: '9187' is not host:port")]
    [InlineData("SlotName", "My-Slot", "SlotName: 'My-Slot' is not a valid slot name")]
    [InlineData("Metrics:Enabled", "yes", "Metrics:Enabled: 'yes' is not true or false")]
    [InlineData("Buffer:Kafka:Properties:acks", "1", "Buffer:Kafka:Properties:acks: is set by Replicator (acks=all")]
    [InlineData("Buffer:Kafka:Properties:enable.idempotence", "false", "Buffer:Kafka:Properties:enable.idempotence: is set by Replicator")]
    [InlineData("Buffer:Kafka:Properties:sasl:mechanism", "PLAIN", "Buffer:Kafka:Properties:sasl: is a single value, not a section (a property name with dots is one key")]
    public void Bad_settings_fail_with_the_key_named(string key, string value, string expected)
    {
        var e = Assert.Throws<ConfigurationException>(() => ConfigLoader.Load(null, new Dictionary<string, string?> { [key] = value }, NoEnvironment));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_config_file_that_is_not_json_is_named_with_its_line()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "{\n  \"SlotName\": \"x\",\n  oops\n}");
            var e = Assert.Throws<ConfigurationException>(() => ConfigLoader.Load(file, null, NoEnvironment));
            Assert.Contains("is not valid JSON (line 3)", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void A_password_file_supplies_the_password_and_is_never_shown()
    {
        var secret = Path.GetTempFileName();
        try
        {
            File.WriteAllText(secret, "s3cr3t-from-file\n");
            var options = ConfigLoader.Load(null, new Dictionary<string, string?>
            {
                ["Source:ConnectionString"] = "postgres://app@src.example.com/db",
                ["Source:PasswordFile"] = secret,
                ["Target:ConnectionString"] = "host=tgt.example.com user=app password=inline-secret",
                ["Buffer:Kafka:SaslPassword"] = "kafka-secret",
            }, NoEnvironment);
            var source = ConfigLoader.ResolveSource(options);
            Assert.True(source.HasPassword);
            Assert.Contains("Password=s3cr3t-from-file", source.ToNpgsqlConnectionString(), StringComparison.Ordinal);

            var shown = ConfigLoader.ToRedactedJson(options);
            Assert.DoesNotContain("s3cr3t", shown, StringComparison.Ordinal);
            Assert.DoesNotContain("inline-secret", shown, StringComparison.Ordinal);
            Assert.DoesNotContain("kafka-secret", shown, StringComparison.Ordinal);
            Assert.Contains("host=tgt.example.com user=app password=*****", shown, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(secret);
        }
    }

    [Fact]
    public void Kafka_client_properties_come_from_the_file_or_the_environment_and_their_secrets_are_never_shown()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, """
                { "Buffer": { "Kind": "kafka", "Kafka": { "Bootstrap": "kafka:9093", "SaslUsername": "replicator",
                  "Properties": { "sasl.mechanism": "SCRAM-SHA-512", "sasl.password": "file-secret" } } } }
                """);
            var env = new Dictionary<string, string?>
            {
                ["REPLICATOR_Buffer__Kafka__Properties__ssl.ca.location"] = "/etc/kafka-ca/ca.crt",
                ["REPLICATOR_Buffer__Kafka__Properties__ssl.key.pem"] = "-----BEGIN PRIVATE KEY----- key-secret",
            };
            var options = ConfigLoader.Load(file, null, env);
            var properties = options.Buffer.Kafka.Properties;
            Assert.Equal("SCRAM-SHA-512", properties["sasl.mechanism"]);
            Assert.Equal("/etc/kafka-ca/ca.crt", properties["ssl.ca.location"]);

            var shown = ConfigLoader.ToRedactedJson(options);
            Assert.Contains("SCRAM-SHA-512", shown, StringComparison.Ordinal);
            Assert.DoesNotContain("file-secret", shown, StringComparison.Ordinal);
            Assert.DoesNotContain("key-secret", shown, StringComparison.Ordinal);

            // Both clients get them, after the SASL defaults (the mechanism given wins over PLAIN).
            var producer = Replicator.Kafka.KafkaChangeSink.ProducerConfigFor(Replicator.Kafka.KafkaBufferOptions.Sink(options, "app"));
            var consumer = Replicator.Kafka.KafkaChangeSource.ConsumerConfigFor(Replicator.Kafka.KafkaBufferOptions.Source(options));
            foreach (var config in new Confluent.Kafka.ClientConfig[] { producer, consumer })
            {
                Assert.Equal("SCRAM-SHA-512", config.Get("sasl.mechanism"));
                Assert.Equal("/etc/kafka-ca/ca.crt", config.Get("ssl.ca.location"));
                Assert.Equal(Confluent.Kafka.SecurityProtocol.SaslSsl, config.SecurityProtocol);
            }
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void A_missing_connection_string_says_how_to_give_one()
    {
        var options = ConfigLoader.Load(null, null, NoEnvironment);
        var e = Assert.Throws<ConfigurationException>(() => ConfigLoader.ResolveTarget(options));
        Assert.Contains("Target:ConnectionString: is not set; pass --target", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_options_class_is_kept_for_the_unknown_key_check_of_the_native_build()
    {
        // The native executable keeps an options class's properties for ConfigLoader's reflection
        // only when CheckKeys names it in a DynamicDependency; a class left out would make every
        // key of its section "unknown" there (here, under the JIT, nothing would show it).
        var check = typeof(ConfigLoader).GetMethod("CheckKeys", BindingFlags.NonPublic | BindingFlags.Static)!;
        var kept = check.GetCustomAttributes<DynamicDependencyAttribute>().Select(a => a.Type).ToHashSet();
        var sections = new HashSet<Type>();
        void Walk(Type type)
        {
            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                var t = property.PropertyType;
                if (t.IsClass && t.Namespace == typeof(ReplicatorOptions).Namespace && sections.Add(t))
                    Walk(t);
            }
        }

        Walk(typeof(ReplicatorOptions));
        Assert.NotEmpty(sections);
        Assert.Empty(sections.Where(t => !kept.Contains(t)).Select(t => t.Name));
    }
}
