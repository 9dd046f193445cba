using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Replicator.Kafka;

/// <summary>Has a client learn about topics now instead of at librdkafka's once-a-second scan.</summary>
internal static class TopicWarmUp
{
    /// <summary>At most this many look-ups at once (one thread each, for the few moments they take).</summary>
    private const int MaxConcurrentLookups = 16;

    /// <summary>
    /// Asks for <paramref name="topics"/>' metadata over <paramref name="handle"/>: the answer fills
    /// that client's own cache (partitions and leaders). librdkafka 2.0 otherwise learns a topic it
    /// has just started using at its next once-a-second scan. A consumer assigned a new topic then
    /// also retried its start-offset look-up after 500 ms: 1.5 s to the first record (measured). A
    /// producer held every record of a new topic back until then, and with them the topic's
    /// automatic creation, so a fresh <c>run --buffer kafka</c> applied nothing for its first second
    /// (measured: first delivery report 1.0 s after the first record; the consumer found no topic
    /// before that). A failure only leaves it to the scan.
    /// <para>
    /// The topics are asked for all at once: a consumer's look-up of a topic is answered at the
    /// client's next metadata tick (about 100 ms), so one after another the applier's first
    /// assignment of a pgbench run's five topics took 0.45 s (measured with librdkafka's debug log).
    /// </para>
    /// </summary>
    /// <remarks>
    /// The admin client over the handle lives for these requests only: Confluent.Kafka 1.9.3 gives
    /// such a client a poll timeout of 0, so it spins while it lives.
    /// </remarks>
    public static void Warm(Handle handle, IEnumerable<string> topics, ILogger logger, string client) =>
        Quietly(() =>
        {
            using var admin = new DependentAdminClientBuilder(handle).Build();
            foreach (var group in topics.Distinct(StringComparer.Ordinal).Chunk(MaxConcurrentLookups))
            {
                if (group.Length == 1)
                {
                    Lookup(admin, group[0], logger, client);
                    continue;
                }

                // Threads, not the thread pool: each look-up blocks for up to its timeout, and a pool
                // with as few threads as cores adds threads only slowly.
                var threads = group.Select(topic => new Thread(() => Lookup(admin, topic, logger, client)) { IsBackground = true, Name = "replicator-topic-look-up" }).ToList();
                foreach (var thread in threads)
                    thread.Start();
                foreach (var thread in threads)
                    thread.Join();
            }
        }, logger, client);

    private static void Lookup(IAdminClient admin, string topic, ILogger logger, string client) =>
        Quietly(() => admin.GetMetadata(topic, TimeSpan.FromSeconds(5)), logger, client);

    /// <summary>A failed look-up only leaves the topic to the client's own scan; a closing client has nothing to learn.</summary>
    private static void Quietly(Action lookup, ILogger logger, string client)
    {
        try
        {
            lookup();
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
