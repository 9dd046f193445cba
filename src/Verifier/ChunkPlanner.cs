using Npgsql;

namespace Replicator.Verifier;

/// <summary>
/// Splits a keyed table into key ranges of about <see cref="VerifyRequest.ChunkRows"/> rows each,
/// from the real key distribution: a block sample of the source's keys (TABLESAMPLE SYSTEM, cheap —
/// it reads only the sampled pages), sorted, cut at equal-count quantiles. Ranges are half-open
/// (lower, upper] with open ends at both extremes, so together they cover every possible key on
/// either side — rows only the target has land in some range too. Equal quantiles collapse, so no
/// range is empty by construction of the sample; sampling error makes sizes vary by a few percent.
/// </summary>
internal static class ChunkPlanner
{
    private const int SamplesPerChunk = 64;
    private const int MinSamples = 10_000;

    public static async Task<IReadOnlyList<ChunkRange>> PlanAsync(NpgsqlConnection source, CanonicalRow table, long estimatedRows, long chunkRows, CancellationToken cancellationToken)
    {
        if (!table.HasKey)
            return [ChunkRange.All];
        var rows = estimatedRows;
        if (rows < 0)
        {
            await using var count = new NpgsqlCommand($"SELECT count(*) FROM {table.QuotedTable}", source);
            rows = (long)(await count.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        if (rows <= chunkRows * 3 / 2)
            return [ChunkRange.All];

        var chunks = (int)Math.Min(100_000, (rows + chunkRows - 1) / chunkRows);
        var percent = Math.Min(100.0, Math.Max(MinSamples, (double)chunks * SamplesPerChunk) * 100.0 / rows);
        var samples = new List<string[]>();
        await using (var cmd = new NpgsqlCommand(
            $"SELECT {table.KeyTextArray} FROM {table.QuotedTable} TABLESAMPLE SYSTEM ($1) REPEATABLE (7) ORDER BY {table.KeyOrder}", source))
        {
            cmd.Parameters.AddWithValue((float)percent);
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                samples.Add(reader.GetFieldValue<string[]>(0));
        }

        if (samples.Count < 2)
            return [ChunkRange.All];
        chunks = Math.Min(chunks, samples.Count);
        var bounds = new List<string[]>();
        for (var i = 1; i < chunks; i++)
        {
            var bound = samples[(int)((long)i * samples.Count / chunks)];
            if (bounds.Count == 0 || CanonicalRow.KeyId(bounds[^1]) != CanonicalRow.KeyId(bound))
                bounds.Add(bound);
        }

        var ranges = new List<ChunkRange>(bounds.Count + 1);
        string[]? lower = null;
        foreach (var bound in bounds)
        {
            ranges.Add(new ChunkRange(lower, bound));
            lower = bound;
        }

        ranges.Add(new ChunkRange(lower, null));
        return ranges;
    }
}
