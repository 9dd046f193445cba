using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;

namespace Replicator.Snapshotter;

/// <summary>One table's outcome.</summary>
/// <param name="SourceRows">Rows on the source: <c>count(*)</c> in the snapshot, or — for a table resumed across two snapshots, where no single snapshot holds what was copied — the sum of the rows each chunk read in its own snapshot.</param>
/// <param name="TargetRows"><c>count(*)</c> on the target after the copy.</param>
/// <param name="SyncLsn">LSN of the (latest) snapshot its rows came from.</param>
public sealed record TableCopyResult(TableName Table, long SourceRows, long TargetRows, long Bytes, int Chunks, NpgsqlLogSequenceNumber SyncLsn, bool MixedSnapshots, bool TextFormat)
{
    public bool Matches => SourceRows == TargetRows;
}

/// <summary>The end of a snapshot: what was copied and whether both sides agree.</summary>
public sealed record SnapshotResult(
    string? SlotName,
    NpgsqlLogSequenceNumber ConsistentPoint,
    NpgsqlLogSequenceNumber SnapshotLsn,
    bool Resumed,
    bool AlreadyComplete,
    IReadOnlyList<TableCopyResult> Tables,
    int Sequences,
    int PostDataEntries,
    long LargeObjects,
    TimeSpan Duration)
{
    public IEnumerable<TableCopyResult> Mismatches => Tables.Where(t => !t.Matches);

    public long TotalRows => Tables.Sum(t => t.TargetRows);

    public long TotalBytes => Tables.Sum(t => t.Bytes);
}

/// <summary>Row counts on both sides for the end-of-run summary.</summary>
public static class Summary
{
    /// <summary><c>count(*)</c> of each table, on a connection already inside the wanted snapshot (source) or plain (target).</summary>
    public static async Task<Dictionary<TableName, long>> CountAsync(NpgsqlConnection connection, IEnumerable<TableInfo> tables, CancellationToken cancellationToken)
    {
        var counts = new Dictionary<TableName, long>();
        foreach (var table in tables)
        {
            await using var cmd = new NpgsqlCommand($"SELECT count(*) FROM ONLY {table.QuotedName}", connection) { CommandTimeout = 0 };
            counts[table.TableName] = (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        return counts;
    }
}
