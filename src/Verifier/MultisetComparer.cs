using Npgsql;

namespace Replicator.Verifier;

/// <summary>
/// Tables without a key (no primary key, no replica identity index): rows have no identity, so
/// the table is compared as a multiset of row hashes. Count and hash sum first; if they differ,
/// both sides group by row hash and the hashes whose counts differ are the differing rows, fetched
/// whole for the report. Duplicated rows count: two copies on the source and one on the target is
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

    public static async Task<List<HashCount>> DifferingHashesAsync(ConnectionPair pair, TableMatch table, CancellationToken cancellationToken)
    {
        var s = CountsAsync(pair.Source, table.Source, cancellationToken);
        var t = CountsAsync(pair.Target, table.Target, cancellationToken);
        var source = await s.ConfigureAwait(false);
        var target = await t.ConfigureAwait(false);
        var result = new List<HashCount>();
        foreach (var hash in source.Keys.Union(target.Keys).Order())
        {
            var sc = source.GetValueOrDefault(hash);
            var tc = target.GetValueOrDefault(hash);
            if (sc != tc)
                result.Add(new HashCount(hash, sc, tc));
        }

        return result;
    }

    private static async Task<Dictionary<long, long>> CountsAsync(NpgsqlConnection conn, CanonicalRow table, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand($"SELECT {table.Hash}, count(*) FROM {table.FromItem} GROUP BY 1", conn);
        var counts = new Dictionary<long, long>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            counts[reader.GetInt64(0)] = reader.GetInt64(1);
        return counts;
    }

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
