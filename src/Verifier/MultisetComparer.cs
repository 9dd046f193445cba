using Npgsql;

namespace Replicator.Verifier;

/// <summary>
/// Tables without a key (no primary key, no replica identity index): rows have no identity, so
/// the table is compared as a multiset of row hashes. Count and hash sum first; if they differ,
/// both sides group by row hash, in hash order, and the hashes whose counts differ (found by
/// merging the two ordered streams) are the differing rows, fetched whole for the report. Duplicated rows count: two copies on the source and one on the target is
/// one row missing.
/// </summary>
internal static class MultisetComparer
{
    /// <summary>A row hash whose copies differ in number: positive Surplus = that many missing on the target, negative = extra.</summary>
    public sealed record HashCount(long Hash, long SourceCount, long TargetCount)
    {
        public long Missing => Math.Max(0, SourceCount - TargetCount);

        public long Extra => Math.Max(0, TargetCount - SourceCount);
    }

    /// <summary>
    /// The row hashes whose copies differ in number, in hash order. Each side streams its
    /// <c>(hash, count)</c> groups in hash order (the database sorts, spilling to disk past
    /// <c>work_mem</c>) and the two streams are merged as they arrive: memory holds only the
    /// differences, not every distinct row of a table that may have hundreds of millions.
    /// </summary>
    public static async Task<List<HashCount>> DifferingHashesAsync(ConnectionPair pair, TableMatch table, CancellationToken cancellationToken)
    {
        await using var sourceCommand = CountsCommand(pair.Source, table.Source);
        await using var targetCommand = CountsCommand(pair.Target, table.Target);
        var s = sourceCommand.ExecuteReaderAsync(cancellationToken);
        var t = targetCommand.ExecuteReaderAsync(cancellationToken);
        await using var source = await s.ConfigureAwait(false);
        await using var target = await t.ConfigureAwait(false);
        var result = new List<HashCount>();
        var moreSource = await source.ReadAsync(cancellationToken).ConfigureAwait(false);
        var moreTarget = await target.ReadAsync(cancellationToken).ConfigureAwait(false);
        while (moreSource || moreTarget)
        {
            var order = !moreTarget ? -1 : !moreSource ? 1 : source.GetInt64(0).CompareTo(target.GetInt64(0));
            if (order < 0)
            {
                result.Add(new HashCount(source.GetInt64(0), source.GetInt64(1), 0));
                moreSource = await source.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            else if (order > 0)
            {
                result.Add(new HashCount(target.GetInt64(0), 0, target.GetInt64(1)));
                moreTarget = await target.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            else
            {
                if (source.GetInt64(1) != target.GetInt64(1))
                    result.Add(new HashCount(source.GetInt64(0), source.GetInt64(1), target.GetInt64(1)));
                moreSource = await source.ReadAsync(cancellationToken).ConfigureAwait(false);
                moreTarget = await target.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        return result;
    }

    private static NpgsqlCommand CountsCommand(NpgsqlConnection conn, CanonicalRow table) =>
        new($"SELECT h, count(*) FROM (SELECT {table.Hash} AS h FROM {table.FromItem}) r GROUP BY h ORDER BY h", conn);

    /// <summary>One row (every compared column as text) per listed hash, from one side.</summary>
    public static async Task<Dictionary<long, string?[]>> RowsByHashAsync(NpgsqlConnection conn, CanonicalRow table, IReadOnlyList<long> hashes, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            $"SELECT DISTINCT ON (h) h, r.* FROM (SELECT {table.Hash} AS h, {table.ColumnTexts} FROM {table.FromItem}) r WHERE h = ANY($1)", conn);
        cmd.Parameters.AddWithValue(hashes.ToArray());
        var rows = new Dictionary<long, string?[]>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            // r.* repeats h first, then the columns.
            var values = new string?[table.Columns.Count];
            for (var i = 0; i < values.Length; i++)
                values[i] = reader.IsDBNull(i + 2) ? null : reader.GetString(i + 2);
            rows[reader.GetInt64(0)] = values;
        }

        return rows;
    }

    public static async Task<List<RowDifference>> DescribeAsync(ConnectionPair pair, TableMatch table, IReadOnlyList<HashCount> hashes, CancellationToken cancellationToken)
    {
        var s = RowsByHashAsync(pair.Source, table.Source, hashes.Where(h => h.Missing > 0).Select(h => h.Hash).ToList(), cancellationToken);
        var t = RowsByHashAsync(pair.Target, table.Target, hashes.Where(h => h.Extra > 0).Select(h => h.Hash).ToList(), cancellationToken);
        var source = await s.ConfigureAwait(false);
        var target = await t.ConfigureAwait(false);
        var names = table.Source.Columns.Select(c => c.Name).ToList();
        Dictionary<string, string?> Row(string?[] values) => names.Select((n, i) => (n, v: RowDetails.Shorten(values[i]))).ToDictionary(p => p.n, p => p.v);
        var result = new List<RowDifference>();
        foreach (var h in hashes)
        {
            if (h.Missing > 0 && source.TryGetValue(h.Hash, out var sv))
                result.Add(new RowDifference { Kind = RowDifference.Missing, Row = Row(sv), Count = h.Missing });
            if (h.Extra > 0 && target.TryGetValue(h.Hash, out var tv))
                result.Add(new RowDifference { Kind = RowDifference.Extra, Row = Row(tv), Count = h.Extra });
        }

        return result;
    }
}
