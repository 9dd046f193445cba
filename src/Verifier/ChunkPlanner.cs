using Npgsql;

namespace Replicator.Verifier;

/// <summary>
/// Splits a keyed table into key ranges of about <see cref="VerifyRequest.ChunkRows"/> rows each,
/// from the real key distribution: a block sample of the source's keys (TABLESAMPLE SYSTEM, cheap —
/// it reads only the sampled pages), sorted, cut at equal-count quantiles. Ranges are half-open
/// (lower, upper] with open ends at both extremes, so together they cover every possible key on
/// either side — rows only the target has land in some range too. Equal quantiles collapse, so no
/// range is empty by construction of the sample; sampling error makes sizes vary by a few percent.
/// A single-column key (the common case) is not cut into key ranges at all: the sample gives the
/// whole table's bucket thresholds, about <see cref="VerifyRequest.BisectRows"/> rows per bucket,
/// and the table is scanned in physical block ranges that each return per-bucket sums (see
/// <see cref="Verification"/>): sequential reads instead of index range scans (half the cost per
/// row), and the first pass already locates a difference to one small bucket. Composite keys get
/// key ranges, bisected when they differ.
/// </summary>
internal static class ChunkPlanner
{
    private const int SamplesPerChunk = 64;
    private const int MinSamples = 10_000;
    private const int MaxBuckets = 128;

    /// <summary>Cap on a table's buckets: the thresholds travel as one array parameter per scan.</summary>
    private const int MaxTableBuckets = 16_384;

    public static async Task<IReadOnlyList<ChunkRange>> PlanAsync(
        NpgsqlConnection source, CanonicalRow table, long estimatedRows, long sizeBytes, long chunkRows, int bisectRows, CancellationToken cancellationToken)
    {
        if (!table.HasKey)
            return [ChunkRange.All];
        var rows = estimatedRows;
        if (rows < 0)
        {
            await using var count = new NpgsqlCommand($"SELECT count(*) FROM {table.FromItem}", source);
            rows = (long)(await count.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        var chunks = rows <= chunkRows * 3 / 2 ? 1 : (int)Math.Min(100_000, (rows + chunkRows - 1) / chunkRows);
        // Small enough to compare row by row anyway, or nothing to split: one range, no sample.
        if (chunks == 1 && (rows <= bisectRows || !table.CanBucket))
            return [ChunkRange.All];

        var bucketCount = (int)Math.Clamp(rows / Math.Max(1, bisectRows), 1, MaxTableBuckets);
        var wanted = Math.Max(MinSamples, table.CanBucket ? bucketCount * 4.0 : (double)chunks * SamplesPerChunk);
        var percent = Math.Min(100.0, wanted * 100.0 / Math.Max(1, rows));
        var sql = $"SELECT {table.KeyTextArray} FROM {table.FromItem} TABLESAMPLE SYSTEM ($1) REPEATABLE (7) ORDER BY {table.KeyOrder}";
        if (table.CanBucket)
        {
            // A block sample returns whole pages: keys in clumps, so thresholds taken from it make
            // tiny buckets inside a clump and huge ones between clumps. One key per sampled page
            // (its smallest) spreads the thresholds evenly; sample as many pages as buckets wanted.
            var pages = Math.Max(1.0, sizeBytes / 8192.0);
            percent = Math.Min(100.0, Math.Max(MinSamples / Math.Max(1.0, rows / pages), bucketCount * 1.0) * 100.0 / pages);
            // DISTINCT ON rather than min(): it needs only the key type's ordering, which every key
            // type has, where min/max aggregates are missing for some (ltree, the isn types).
            var key = table.Keys[0].QuotedName;
            sql = $"SELECT ARRAY[k::text] FROM (SELECT DISTINCT ON ((ctid::text::point)[0]) {key} AS k FROM {table.FromItem} TABLESAMPLE SYSTEM ($1) REPEATABLE (7) " +
                  $"ORDER BY (ctid::text::point)[0], {key}) pages ORDER BY k";
        }

        var samples = new List<string[]>();
        await using (var cmd = new NpgsqlCommand(sql, source))
        {
            cmd.Parameters.AddWithValue((float)percent);
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                samples.Add(reader.GetFieldValue<string[]>(0));
        }

        if (samples.Count < 2)
            return [ChunkRange.All];
        if (table.CanBucket)
        {
            // One logical range for the whole table, split into buckets of about bisectRows rows;
            // the scan itself is split by block ranges (see Verification), not by key.
            var distinct = samples.Select(k => k[0]).Distinct(StringComparer.Ordinal).ToList();
            var stride = Math.Max(1, (distinct.Count + bucketCount - 1) / bucketCount);
            var bounds = distinct.Where((_, i) => i > 0 && i % stride == 0).ToList();
            return [bounds.Count > 0 ? ChunkRange.All with { Buckets = bounds } : ChunkRange.All];
        }

        chunks = Math.Min(chunks, samples.Count);
        var ranges = new List<ChunkRange>(chunks);
        string[]? lower = null;
        var lowerIndex = -1;
        for (var i = 1; i <= chunks; i++)
        {
            var index = i == chunks ? samples.Count : (int)((long)i * samples.Count / chunks);
            var upper = i == chunks ? null : samples[index];
            if (upper is not null && lower is not null && CanonicalRow.KeyId(lower) == CanonicalRow.KeyId(upper))
                continue;
            ranges.Add(new ChunkRange(lower, upper) { Buckets = Buckets(table, samples, lowerIndex + 1, index) });
            (lower, lowerIndex) = (upper, index);
        }

        return ranges;
    }

    /// <summary>Distinct sampled keys strictly inside (samples[from-1], samples[to]], thinned to at most MaxBuckets.</summary>
    private static List<string>? Buckets(CanonicalRow table, List<string[]> samples, int from, int to)
    {
        if (!table.CanBucket || to - from < 2)
            return null;
        var inside = samples.Skip(from).Take(to - from).Select(s => s[0]).Distinct(StringComparer.Ordinal).ToList();
        var stride = Math.Max(1, (inside.Count + MaxBuckets - 1) / MaxBuckets);
        var buckets = inside.Where((_, i) => i % stride == 0).ToList();
        return buckets.Count > 0 ? buckets : null;
    }
}
