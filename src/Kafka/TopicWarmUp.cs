using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Replicator.Kafka;

/// <summary>Has a client learn about topics now instead of at librdkafka's once-a-second scan.</summary>
internal static class TopicWarmUp
{
    /// <summary>
    /// Asks for <paramref name="topics"/>' metadata over <paramref name="handle"/>: the answer fills
    /// that client's own cache (partitions and leaders). librdkafka 2.0 otherwise learns a topic it
    /// has just started using at its next once-a-second scan. A consumer assigned a new topic then
    /// also retried its start-offset look-up after 500 ms: 1.5 s to the first record (measured). A
    /// producer held every record of a new topic back until then, and with them the topic's
    /// automatic creation, so a fresh <c>run --buffer kafka</c> applied nothing for its first second
    /// (measured: first delivery report 1.0 s after the first record; the consumer found no topic
    /// before that). A failure only leaves it to the scan.
    /// </summary>
    /// <remarks>
    /// The admin client over the handle lives for these requests only: Confluent.Kafka 1.9.3 gives
    /// such a client a poll timeout of 0, so it spins while it lives.
    /// </remarks>
    public static void Warm(Handle handle, IEnumerable<string> topics, ILogger logger, string client)
    {
        try
        {
            using var admin = new DependentAdminClientBuilder(handle).Build();
            foreach (var topic in topics)
                admin.GetMetadata(topic, TimeSpan.FromSeconds(5));
        }
        catch (KafkaException e)
        {
            logger.ClientError(client, e.Error.Reason);
        }
        catch (ObjectDisposedException)
        {
            // The client is closing: nothing to learn any more.
        }
    }
}
