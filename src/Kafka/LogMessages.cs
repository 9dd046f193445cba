using Microsoft.Extensions.Logging;

namespace Replicator.Kafka;

internal static partial class LogMessages
{
    [LoggerMessage(EventId = 5001, Level = LogLevel.Error, Message = "Kafka delivery to {Topic} failed: {Reason}; the slot stays at {DurableLsn} and capture must restart from there")]
    public static partial void DeliveryFailed(this ILogger logger, string topic, string reason, string durableLsn);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Debug, Message = "Kafka producer queue full ({InFlight} records in flight): waiting for acknowledgements")]
    public static partial void ProducerBackPressure(this ILogger logger, long inFlight);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Kafka client {Client}: {Reason}")]
    public static partial void ClientError(this ILogger logger, string client, string reason);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Information, Message = "Kafka partitions assigned: {Partitions}")]
    public static partial void PartitionsAssigned(this ILogger logger, string partitions);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Warning, Message = "Transaction {Transaction} (END at {End}) has had no new change event for {Seconds} s: {Have} of the {Expected} it counts ({Collections}) have arrived, and every later transaction waits behind it ({Buffered} events held). Check that each of those tables' topics exists under the prefix and still holds its records (retention, a topic deleted or created again), and that no other producer writes to the prefix")]
    public static partial void HeadStalled(this ILogger logger, string transaction, string end, long seconds, long have, long expected, string collections, int buffered);
}
