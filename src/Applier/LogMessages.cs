using Microsoft.Extensions.Logging;
using NpgsqlTypes;

namespace Replicator.Applier;

internal static partial class LogMessages
{
    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Applier resumes after source commit {Lsn} (slot {Slot})")]
    public static partial void Resuming(this ILogger logger, NpgsqlLogSequenceNumber lsn, string slot);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "The target role may not set session_replication_role (managed server?): applying change by change in source order and disabling user triggers on replicated tables instead (see docs/replication.md)")]
    public static partial void NoReplicaRole(this ILogger logger);

    [LoggerMessage(EventId = 3013, Level = LogLevel.Warning, Message = "Disabled trigger {Trigger} on the target for the time of replication (the cutover enables it again)")]
    public static partial void TriggerDisabled(this ILogger logger, string trigger);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "Added column {Column} {Type} to {Table} on the target, as the source did")]
    public static partial void ColumnAdded(this ILogger logger, string table, string column, string type);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Warning, Message = "No row matched a {Operation} on {Table} (a table without a key): the target may differ from the source there")]
    public static partial void KeylessRowNotFound(this ILogger logger, string operation, string table);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Information, Message = "Verifier barrier {Id}: held at {Lsn}")]
    public static partial void BarrierHeld(this ILogger logger, long id, NpgsqlLogSequenceNumber lsn);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Information, Message = "Barrier {Id}: paused at the cut {CutLsn} (last applied {Lsn})")]
    public static partial void BarrierReached(this ILogger logger, long id, NpgsqlLogSequenceNumber cutLsn, NpgsqlLogSequenceNumber lsn);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Warning, Message = "Verifier barrier {Id} was not answered within {Seconds} s: going on without it")]
    public static partial void BarrierTimedOut(this ILogger logger, long id, double seconds);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Warning, Message = "Replication interrupted ({Reason}); retrying in {Seconds} s from the target's position")]
    public static partial void Retrying(this ILogger logger, string reason, double seconds);

    [LoggerMessage(EventId = 3011, Level = LogLevel.Error, Message = "Replication waits for a schema change on the target: {Reason}")]
    public static partial void WaitingForSchema(this ILogger logger, string reason);

    [LoggerMessage(EventId = 3014, Level = LogLevel.Warning, Message = "{Reason}")]
    public static partial void SlotInUse(this ILogger logger, string reason);

    [LoggerMessage(EventId = 3012, Level = LogLevel.Warning, Message = "A unique constraint clashed while applying a coalesced batch; replaying it change by change")]
    public static partial void StrictReplay(this ILogger logger);

    [LoggerMessage(EventId = 3015, Level = LogLevel.Warning, Message = "Cutover {Id} switched the application to the target after source commit {Lsn}: replication from the old source stops here")]
    public static partial void CutoverSwitched(this ILogger logger, long id, NpgsqlLogSequenceNumber lsn);

    [LoggerMessage(EventId = 3016, Level = LogLevel.Warning, Message = "Cutover {Id} did not switch ({Outcome}): replication goes on")]
    public static partial void CutoverAbandoned(this ILogger logger, long id, string outcome);

    [LoggerMessage(EventId = 3017, Level = LogLevel.Warning, Message = "A cutover switched the application to the target: replication of slot {Slot} has stopped")]
    public static partial void PipelineSwitched(this ILogger logger, string slot);
}
