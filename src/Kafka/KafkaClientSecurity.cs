using Confluent.Kafka;

namespace Replicator.Kafka;

/// <summary>What the producer and the consumer set alike: SASL credentials and extra librdkafka properties.</summary>
internal static class KafkaClientSecurity
{
    /// <summary>SASL/PLAIN over TLS when a user name is given (Event Hubs, Confluent Cloud); then the extra properties, which win.</summary>
    public static void Apply(ClientConfig config, string? saslUsername, string? saslPassword, IReadOnlyDictionary<string, string>? extra)
    {
        if (saslUsername is not null)
        {
            config.SaslUsername = saslUsername;
            config.SaslPassword = saslPassword;
            config.SaslMechanism = SaslMechanism.Plain;
            config.SecurityProtocol = SecurityProtocol.SaslSsl;
        }

        foreach (var (key, value) in extra ?? new Dictionary<string, string>())
            config.Set(key, value);
    }

    /// <summary>
    /// Builds a client; librdkafka's refusal of a property (an unknown name, a bad value) becomes a
    /// configuration error naming <c>Buffer:Kafka:Properties</c>, not a failure to retry.
    /// The process's malloc is set up for librdkafka first (<see cref="NativeHeap"/>).
    /// </summary>
    public static T Build<T>(Func<T> build)
    {
        NativeHeap.TuneForKafka();
        try
        {
            return build();
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new Replicator.Core.Configuration.ConfigurationException("Buffer:Kafka:Properties",
                $"the Kafka client refused its settings: {e.Message}. Fix or remove that property (librdkafka's CONFIGURATION.md lists them; names are lower-case with dots, e.g. sasl.mechanism)");
        }
    }
}
