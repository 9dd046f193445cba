using Replicator.Core.Configuration;
using Replicator.Kafka.Debezium;

namespace Replicator.Kafka;

/// <summary>Builds the producer and consumer settings from <see cref="ReplicatorOptions"/> (<c>Buffer:Kafka:*</c>).</summary>
public static class KafkaBufferOptions
{
    /// <exception cref="ConfigurationException">No bootstrap servers or an unusable topic prefix.</exception>
    public static KafkaSinkOptions Sink(ReplicatorOptions options, string sourceDatabase)
    {
        var kafka = Validated(options);
        return new KafkaSinkOptions
        {
            BootstrapServers = kafka.Bootstrap!,
            Format = new DebeziumOptions { TopicPrefix = kafka.TopicPrefix, DatabaseName = sourceDatabase, SchemasEnable = kafka.Schemas },
            SaslUsername = kafka.SaslUsername,
            SaslPassword = kafka.SaslPassword,
            Extra = kafka.Properties.Count > 0 ? kafka.Properties : null,
        };
    }

    /// <exception cref="ConfigurationException">No bootstrap servers or an unusable topic prefix.</exception>
    public static KafkaSourceOptions Source(ReplicatorOptions options)
    {
        var kafka = Validated(options);
        return new KafkaSourceOptions
        {
            BootstrapServers = kafka.Bootstrap!,
            TopicPrefix = kafka.TopicPrefix,
            GroupId = "replicator-apply-" + options.SlotName,
            SaslUsername = kafka.SaslUsername,
            SaslPassword = kafka.SaslPassword,
            Extra = kafka.Properties.Count > 0 ? kafka.Properties : null,
        };
    }

    private static KafkaOptions Validated(ReplicatorOptions options)
    {
        var kafka = options.Buffer.Kafka;
        if (string.IsNullOrWhiteSpace(kafka.Bootstrap))
            throw new ConfigurationException("Buffer:Kafka:Bootstrap", "required with --buffer kafka: give host:port[,host:port] (try ./replicator dev-kafka for a local development broker)");
        if (string.IsNullOrEmpty(kafka.TopicPrefix) || DebeziumSerializer.SanitizeTopic(kafka.TopicPrefix) != kafka.TopicPrefix)
            throw new ConfigurationException("Buffer:Kafka:TopicPrefix", $"'{kafka.TopicPrefix}' is not a usable topic prefix: use letters, digits, '.', '_' or '-'");
        return kafka;
    }
}
