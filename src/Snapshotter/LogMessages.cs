using Microsoft.Extensions.Logging;

namespace Replicator.Snapshotter;

internal static partial class LogMessages
{
    [LoggerMessage(3001, LogLevel.Information, "Preflight passed: source PostgreSQL {Major}, pg_dump from {Tools}")]
    public static partial void PreflightPassed(this ILogger logger, int major, string tools);

    [LoggerMessage(3002, LogLevel.Warning, "Preflight note: {Note}")]
    public static partial void PreflightNote(this ILogger logger, string note);

    [LoggerMessage(3003, LogLevel.Information, "Created publication {Publication}")]
    public static partial void PublicationCreated(this ILogger logger, string publication);

    [LoggerMessage(3004, LogLevel.Information, "Created slot {Slot} with exported snapshot {Snapshot} at consistent point {Lsn}")]
    public static partial void SlotCreated(this ILogger logger, string slot, string snapshot, string lsn);

    [LoggerMessage(3005, LogLevel.Information, "Resuming the snapshot for slot {Slot} (consistent point {Lsn}) from a new snapshot at {NewLsn}")]
    public static partial void Resuming(this ILogger logger, string slot, string lsn, string newLsn);

    [LoggerMessage(3006, LogLevel.Information, "Schema pre-data restored on the target")]
    public static partial void PreDataRestored(this ILogger logger);

    [LoggerMessage(3007, LogLevel.Information, "Copy plan: {Tables} tables, {Chunks} chunks ({Done} already done), {Jobs} workers")]
    public static partial void Planned(this ILogger logger, int tables, int chunks, int done, int jobs);

    [LoggerMessage(3008, LogLevel.Debug, "Copied {Chunk}: {Rows} rows, {Bytes} bytes")]
    public static partial void ChunkCopied(this ILogger logger, string chunk, long rows, long bytes);

    [LoggerMessage(3009, LogLevel.Information, "Table {Table} has unfinished chunks and cannot resume by key range: emptied, copying it whole from the new snapshot")]
    public static partial void TableRecopied(this ILogger logger, string table);

    [LoggerMessage(3020, LogLevel.Information, "Table {Table} (a partition of {Root}, which has no key) holds rows of an older snapshot than a sibling partition copied now: emptied, copying it again so that all partitions of {Root} share one point")]
    public static partial void KeylessPartitionRecopied(this ILogger logger, string table, string root);

    [LoggerMessage(3010, LogLevel.Information, "Progress: {Phase}, {TablesDone}/{Tables} tables, {ChunksDone}/{Chunks} chunks, {Rows} rows, {MiB:F1} MiB, {Rate:F1} MiB/s, ETA {Eta}")]
    public static partial void Progress(this ILogger logger, string phase, int tablesDone, int tables, int chunksDone, int chunks, long rows, double miB, double rate, string eta);

    [LoggerMessage(3011, LogLevel.Information, "Sequences set on the target: {Count}")]
    public static partial void SequencesSet(this ILogger logger, int count);

    [LoggerMessage(3021, LogLevel.Information, "Foreign keys to small tables created before the data: {ForeignKeys} ({Built} entries built now, with the keys they point at); their rows go in from the snapshot without per-row checks (--validate-foreign-keys builds them after the data instead)")]
    public static partial void ForeignKeysBeforeData(this ILogger logger, int foreignKeys, int built);

    [LoggerMessage(3012, LogLevel.Information, "Post-data built: {Built} entries (indexes, constraints, triggers), {Skipped} already present")]
    public static partial void PostDataBuilt(this ILogger logger, int built, int skipped);

    [LoggerMessage(3013, LogLevel.Error, "Row count mismatch for {Table}: source {SourceRows}, target {TargetRows}")]
    public static partial void CountMismatch(this ILogger logger, string table, long sourceRows, long targetRows);

    [LoggerMessage(3014, LogLevel.Information, "Snapshot complete: {Tables} tables, {Rows} rows, {MiB:F1} MiB in {Seconds:F1} s; streaming may start at {Lsn}")]
    public static partial void Completed(this ILogger logger, int tables, long rows, double miB, double seconds, string lsn);

    [LoggerMessage(3015, LogLevel.Information, "Snapshot for slot {Slot} was already complete: nothing to do")]
    public static partial void AlreadyComplete(this ILogger logger, string slot);

    [LoggerMessage(3017, LogLevel.Information, "Snapshot phases: {Phases}")]
    public static partial void PhaseTimes(this ILogger logger, string phases);

    [LoggerMessage(3016, LogLevel.Information, "Tables copied in text format (composite or user-defined array columns): {Tables}")]
    public static partial void TextFormatTables(this ILogger logger, string tables);

    [LoggerMessage(3018, LogLevel.Information, "Planner statistics gathered (ANALYZE) for {Tables} tables in {Seconds:F1} s")]
    public static partial void TablesAnalyzed(this ILogger logger, int tables, double seconds);

    [LoggerMessage(3019, LogLevel.Warning, "ANALYZE {Table} on the target failed: {Reason}. The copy is complete; run ANALYZE {Table} on the target yourself (until then the planner has no statistics for it)")]
    public static partial void AnalyzeFailed(this ILogger logger, string table, string reason);
}
