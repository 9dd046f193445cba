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
}
