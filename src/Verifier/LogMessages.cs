using Microsoft.Extensions.Logging;

namespace Replicator.Verifier;

internal static partial class LogMessages
{
    [LoggerMessage(EventId = 6001, Level = LogLevel.Debug, Message = "Source cut at {Lsn} (temporary slot with exported snapshot)")]
    public static partial void SourceCut(ILogger logger, string lsn);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "Barrier for slot {Slot} at cut {Lsn} requested; applier position {Position}")]
    public static partial void BarrierRequested(ILogger logger, string slot, string lsn, string position);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Information, Message = "Barrier for slot {Slot} released; applier held {PauseMilliseconds} ms")]
    public static partial void BarrierReleased(ILogger logger, string slot, double pauseMilliseconds);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Warning, Message = "Applier for slot {Slot} was already past cut {Lsn} (applied {AppliedLsn}); taking a new cut")]
    public static partial void BarrierOvershot(ILogger logger, string slot, string lsn, string appliedLsn);

    [LoggerMessage(EventId = 6005, Level = LogLevel.Information, Message = "No replication position for slot {Slot} (or barrier off): plain target snapshot")]
    public static partial void PlainCut(ILogger logger, string slot);

    [LoggerMessage(EventId = 6006, Level = LogLevel.Information, Message = "Hashed {Chunks} chunks in {Seconds} s; {Differing} differ")]
    public static partial void ChunksHashed(ILogger logger, int chunks, int differing, double seconds);

    [LoggerMessage(EventId = 6007, Level = LogLevel.Warning, Message = "Table {Table}: {Differences} rows differ")]
    public static partial void TableDiffers(ILogger logger, string table, long differences);

    [LoggerMessage(EventId = 6008, Level = LogLevel.Information, Message = "Verifier pass {Result}: {Rows} rows checked, {RowDifferences} rows and {SchemaDifferences} schema objects differ, {Seconds} s")]
    public static partial void PassFinished(ILogger logger, string result, long rows, long rowDifferences, int schemaDifferences, double seconds);

    [LoggerMessage(EventId = 6009, Level = LogLevel.Warning, Message = "Repair runs without session_replication_role = replica (not allowed for this role): target triggers fire")]
    public static partial void RepairWithoutReplicaRole(ILogger logger);

    [LoggerMessage(EventId = 6010, Level = LogLevel.Information, Message = "Table {Table}: {Rows} rows recopied from the source")]
    public static partial void TableRepaired(ILogger logger, string table, int rows);

    [LoggerMessage(EventId = 6011, Level = LogLevel.Error, Message = "Verifier pass failed: {Error}")]
    public static partial void PassFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 6012, Level = LogLevel.Debug, Message = "Phase {Phase} done after {Seconds} s")]
    public static partial void Phase(ILogger logger, string phase, double seconds);

    [LoggerMessage(EventId = 6013, Level = LogLevel.Warning, Message = "Barrier {BarrierId} of an abandoned pass could not be released ({Error}); the applier holds until its barrier timeout")]
    public static partial void BarrierNotReleased(ILogger logger, long barrierId, string error);

    [LoggerMessage(EventId = 6020, Level = LogLevel.Debug, Message = "Plan of {Table}: {Step} after {Milliseconds} ms")]
    public static partial void PlanStep(ILogger logger, string table, string step, double milliseconds);
}
