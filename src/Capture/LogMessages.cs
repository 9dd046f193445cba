using Microsoft.Extensions.Logging;
using NpgsqlTypes;

namespace Replicator.Capture;

internal static partial class LogMessages
{
    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Streaming from slot {Slot} (publication {Publication}) at {Lsn}, pgoutput protocol {Protocol}")]
    public static partial void StreamingStarted(this ILogger logger, string slot, string publication, NpgsqlLogSequenceNumber lsn, int protocol);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Debug, Message = "Relation {Table} (id {RelationId}) with {Columns} columns")]
    public static partial void RelationReceived(this ILogger logger, string table, uint relationId, int columns);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "Acknowledged {Lsn} to slot {Slot}")]
    public static partial void Acknowledged(this ILogger logger, NpgsqlLogSequenceNumber lsn, string slot);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Debug, Message = "Ignored {Message} at {Lsn}")]
    public static partial void Ignored(this ILogger logger, string message, NpgsqlLogSequenceNumber lsn);
}
