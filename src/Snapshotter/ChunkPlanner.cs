using System.Globalization;
using Npgsql;
using Replicator.Core.Catalog;

namespace Replicator.Snapshotter;

public enum ChunkKind
{
    /// <summary>The whole table in one COPY.</summary>
    Whole,

    /// <summary><c>[Lower, Upper)</c> of a single integer key column; null bounds are open.</summary>
    KeyRange,

    /// <summary><c>[Lower, Upper)</c> heap pages (ctid); null bounds are open.</summary>
    PageRange,
}

/// <summary>One unit of copy work: a table, or a range of it.</summary>
public sealed record Chunk(TableInfo Table, int Number, ChunkKind Kind, long? Lower, long? Upper)
{
    public string KindName => Kind switch { ChunkKind.KeyRange => "key", ChunkKind.PageRange => "ctid", _ => "whole" };

    public static ChunkKind ParseKind(string kind) => kind switch { "key" => ChunkKind.KeyRange, "ctid" => ChunkKind.PageRange, _ => ChunkKind.Whole };

    /// <summary>
    /// The WHERE clause of this chunk's source query. The bounds are integers from our own plan,
    /// printed invariantly (COPY takes no parameters); identifiers are quoted.
    /// </summary>
    public string WhereClause()
    {
        var conditions = new List<string>();
        switch (Kind)
        {
            case ChunkKind.KeyRange:
                var key = Table.Column(Table.KeyColumns[0]).QuotedName;
                if (Lower is { } lo)
                    conditions.Add($"{key} >= {lo.ToString(CultureInfo.InvariantCulture)}");
                if (Upper is { } hi)
                    conditions.Add($"{key} < {hi.ToString(CultureInfo.InvariantCulture)}");
                break;
            case ChunkKind.PageRange:
                if (Lower is { } first)
                    conditions.Add($"ctid >= '({first.ToString(CultureInfo.InvariantCulture)},0)'::tid");
                if (Upper is { } end)
                    conditions.Add($"ctid < '({end.ToString(CultureInfo.InvariantCulture)},0)'::tid");
                break;
            case ChunkKind.Whole:
            default:
                break;
        }

        return conditions.Count == 0 ? "" : " WHERE " + string.Join(" AND ", conditions);
    }

    public override string ToString() => Kind == ChunkKind.Whole ? Table.DisplayName : $"{Table.DisplayName} #{Number} [{Lower?.ToString(CultureInfo.InvariantCulture) ?? "-inf"}, {Upper?.ToString(CultureInfo.InvariantCulture) ?? "+inf"}) {KindName}";
}

/// <summary>
/// Splits tables into chunks so that one large table keeps every worker busy. Three modes:
/// (a) a table with a single-column integer key (primary key or replica identity index) that is
/// larger than a chunk is split into key ranges between its min and max in the snapshot, the
/// first and last open-ended; (b) a large table without one is split into heap page ranges
/// (ctid, a TID range scan since PostgreSQL 14); (c) anything else is one chunk. Partitioned
/// parents hold no rows: their partitions are tables of their own here.
/// </summary>
public static class ChunkPlanner
{
    /// <summary>
    /// Tables smaller than this (and with fewer rows than <c>--chunk-rows</c>) are copied whole.
    /// One COPY of a whole table can be loaded FROZEN (see <see cref="CopyWorker.CopyAsync"/>), so the
    /// index builds and first reads on the target do not rewrite every page to set hint bits, and its
    /// pages are not interleaved by parallel loaders (which made the following primary-key build
    /// slower in our measurements). Ranges pay off only when a table is large enough that one COPY
    /// would leave the other workers idle for long.
    /// </summary>
    public const long SplitThresholdBytes = 1024L * 1024 * 1024;

    /// <summary>About this much per range once a table is split by size.</summary>
    public const long RangeBytes = 256L * 1024 * 1024;

    private static readonly HashSet<uint> IntegerTypes = [20, 21, 23];

    public static bool HasIntegerKey(TableInfo table) =>
        table.KeyColumns.Count == 1 && IntegerTypes.Contains(table.Column(table.KeyColumns[0]).TypeOid);

    /// <summary>Plans every non-parent table, reading bounds in the caller's snapshot transaction on <paramref name="source"/>.</summary>
    public static async Task<List<Chunk>> PlanAsync(NpgsqlConnection source, IEnumerable<TableInfo> tables, int jobs, long chunkRows, int serverMajor, CancellationToken cancellationToken)
    {
        var chunks = new List<Chunk>();
        foreach (var table in tables.Where(t => !t.IsPartitionedParent))
            chunks.AddRange(await PlanTableAsync(source, table, jobs, chunkRows, serverMajor, cancellationToken).ConfigureAwait(false));
        return chunks;
    }

    private static async Task<IEnumerable<Chunk>> PlanTableAsync(NpgsqlConnection source, TableInfo table, int jobs, long chunkRows, int serverMajor, CancellationToken cancellationToken)
    {
        var wanted = WantedChunks(table, jobs, chunkRows);
        if (wanted <= 1)
            return [new Chunk(table, 0, ChunkKind.Whole, null, null)];

        if (HasIntegerKey(table))
        {
            var key = table.Column(table.KeyColumns[0]).QuotedName;
            await using var cmd = new NpgsqlCommand($"SELECT min({key})::bigint, max({key})::bigint FROM {table.QuotedName}", source);
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (reader.IsDBNull(0))
                return [new Chunk(table, 0, ChunkKind.Whole, null, null)];
            var bounds = Split(reader.GetInt64(0), reader.GetInt64(1), wanted);
            return Ranges(table, ChunkKind.KeyRange, bounds);
        }

        if (serverMajor < 14)
            return [new Chunk(table, 0, ChunkKind.Whole, null, null)];
        await using (var pagesCmd = new NpgsqlCommand("SELECT pg_relation_size($1::oid) / current_setting('block_size')::bigint", source))
        {
            pagesCmd.Parameters.Add(new NpgsqlParameter { Value = table.Oid, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Oid });
            var pages = (long)(await pagesCmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            if (pages < wanted * 2)
                return [new Chunk(table, 0, ChunkKind.Whole, null, null)];
            return Ranges(table, ChunkKind.PageRange, Split(0, pages - 1, wanted));
        }
    }

    /// <summary>How many chunks a table deserves: by rows per chunk, and for a big table at least one per worker and about <see cref="RangeBytes"/> each.</summary>
    internal static int WantedChunks(TableInfo table, int jobs, long chunkRows)
    {
        if (table.SizeBytes < SplitThresholdBytes && table.EstimatedRows < chunkRows)
            return 1;
        var byRows = table.EstimatedRows > 0 ? (int)Math.Min(1024, (table.EstimatedRows + chunkRows - 1) / chunkRows) : 1;
        var bySize = table.SizeBytes >= SplitThresholdBytes ? (int)Math.Min(1024, Math.Max(jobs, (table.SizeBytes + RangeBytes - 1) / RangeBytes)) : 1;
        return Math.Max(Math.Max(byRows, bySize), 1);
    }

    /// <summary><paramref name="count"/>-1 inner boundaries splitting [min, max] evenly.</summary>
    internal static List<long> Split(long min, long max, int count)
    {
        var bounds = new List<long>();
        var span = (decimal)max - min + 1;
        for (var i = 1; i < count; i++)
        {
            var b = (long)(min + Math.Floor(span * i / count));
            if (b > min && (bounds.Count == 0 || b > bounds[^1]) && b <= max)
                bounds.Add(b);
        }

        return bounds;
    }

    private static List<Chunk> Ranges(TableInfo table, ChunkKind kind, List<long> bounds)
    {
        var chunks = new List<Chunk>();
        long? lower = null;
        for (var i = 0; i <= bounds.Count; i++)
        {
            long? upper = i < bounds.Count ? bounds[i] : null;
            chunks.Add(new Chunk(table, i, kind, lower, upper));
            lower = upper;
        }

        return chunks;
    }
}
