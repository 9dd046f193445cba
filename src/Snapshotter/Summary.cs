using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;

namespace Replicator.Snapshotter;

/// <summary>One table's outcome.</summary>
/// <param name="SourceRows">Rows on the source: the sum of the rows each chunk read in its snapshot, counted in the COPY stream (the chunks cover the table, so in one snapshot this is its <c>count(*)</c> there; a table resumed across two snapshots has chunks from each).</param>
/// <param name="TargetRows">Rows the target took: the sum over chunks of the net rows each chunk's transaction added to the table (per-transaction statistics, no scan), or <c>count(*)</c> when the target has <c>track_counts</c> off.</param>
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

/// <summary>Row counts by scanning, for a target that keeps no statistics (<c>track_counts</c> off).</summary>
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
