using System.Globalization;
using System.Numerics;
using Npgsql;

namespace Replicator.Verifier;

/// <summary>Row count and sum of 64-bit row hashes of one key range on one side.</summary>
internal readonly record struct ChunkHash(long Rows, BigInteger Sum)
{
    public static ChunkHash operator -(ChunkHash a, ChunkHash b) => new(a.Rows - b.Rows, a.Sum - b.Sum);

    public static ChunkHash operator +(ChunkHash a, ChunkHash b) => new(a.Rows + b.Rows, a.Sum + b.Sum);
}

/// <summary>
/// Hashes key ranges inside the databases: only a count and a number cross the network per range.
/// Both sides run at once (a pair holds one connection per side), so a range costs the slower side.
/// </summary>
internal static class ChunkHasher
{
    /// <summary>The range's total, and per bucket when the range has buckets (one scan either way).</summary>
    public static async Task<ChunkHashes> HashAsync(NpgsqlConnection conn, CanonicalRow table, ChunkRange range, CancellationToken cancellationToken, BlockSlice? slice = null)
    {
        await using var cmd = new NpgsqlCommand { Connection = conn };
        var where = table.RangePredicate(range, cmd);
        if (slice is { } s)
        {
            // A TID range scan (PostgreSQL 14+) reads just these blocks, sequentially.
            if (s.FromBlock > 0)
            {
                cmd.Parameters.Add(new NpgsqlParameter { Value = $"({s.FromBlock},0)", NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
                where += $" AND ctid >= ${cmd.Parameters.Count}::tid";
            }

            if (s.ToBlock is { } to)
            {
                cmd.Parameters.Add(new NpgsqlParameter { Value = $"({to},0)", NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
                where += $" AND ctid < ${cmd.Parameters.Count}::tid";
            }
        }

        var bucketed = range.Buckets is { Count: > 0 } && table.CanBucket;
        var bucket = bucketed ? table.BucketExpression(range.Buckets!, cmd) : "0";
        // The typed row hash is mixed from the raw one using it twice: the subquery (kept apart by
        // OFFSET 0) computes the raw hash once per row.
        cmd.CommandText = table.Typed
            ? $"SELECT b, count(*), coalesce(sum({table.Mix("h")}), 0)::text FROM (SELECT {bucket} AS b, {table.RawHash} AS h FROM {table.FromItem} WHERE {where} OFFSET 0) s GROUP BY 1"
            : bucketed
                ? $"SELECT {bucket}, count(*), coalesce(sum({table.Hash}), 0)::text FROM {table.FromItem} WHERE {where} GROUP BY 1"
                : $"SELECT 0, count(*), coalesce(sum({table.Hash}), 0)::text FROM {table.FromItem} WHERE {where}";
        var buckets = new Dictionary<int, ChunkHash>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            buckets[reader.GetInt32(0)] = new ChunkHash(reader.GetInt64(1), BigInteger.Parse(reader.GetString(2), CultureInfo.InvariantCulture));
        var total = new ChunkHash(buckets.Values.Sum(b => b.Rows), buckets.Values.Aggregate(BigInteger.Zero, (sum, b) => sum + b.Sum));
        return new ChunkHashes(total, bucketed ? buckets : null);
    }

    public static async Task<(ChunkHashes Source, ChunkHashes Target)> HashBothAsync(ConnectionPair pair, TableMatch table, ChunkRange range, CancellationToken cancellationToken)
    {
        var source = HashAsync(pair.Source, table.Source, range, cancellationToken);
        var target = HashAsync(pair.Target, table.Target, range, cancellationToken);
        return (await source.ConfigureAwait(false), await target.ConfigureAwait(false));
    }
}

/// <summary>Blocks [FromBlock, ToBlock) of one side's table; ToBlock null = to the end.</summary>
internal readonly record struct BlockSlice(long FromBlock, long? ToBlock)
{
    /// <summary>
    /// Splits a table of <paramref name="pages"/> blocks into <paramref name="count"/> slices. The
    /// size is read inside the snapshot, so every visible row lies below it; the last slice is open
    /// anyway.
    /// </summary>
    public static List<BlockSlice> Split(long pages, int count)
    {
        count = (int)Math.Max(1, Math.Min(count, pages));
        var slices = new List<BlockSlice>(count);
        for (var i = 0; i < count; i++)
            slices.Add(new BlockSlice(pages * i / count, i == count - 1 ? null : pages * (i + 1) / count));
        return slices;
    }
}

/// <summary>A range's hash, and its buckets' hashes when it has buckets (absent bucket = no rows).</summary>
internal sealed record ChunkHashes(ChunkHash Total, IReadOnlyDictionary<int, ChunkHash>? Buckets)
{
    /// <summary>Buckets whose hashes differ between the two sides.</summary>
    public static IEnumerable<int> DifferingBuckets(ChunkHashes source, ChunkHashes target) =>
        (source.Buckets ?? new Dictionary<int, ChunkHash>()).Keys.Union((target.Buckets ?? new Dictionary<int, ChunkHash>()).Keys)
        .Where(b => source.Buckets!.GetValueOrDefault(b) != target.Buckets!.GetValueOrDefault(b)).Order();
}
