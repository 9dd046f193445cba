using Npgsql;

namespace Replicator.Verifier;

/// <summary>
/// Narrows a differing key range down to rows. A range with more than
/// <see cref="VerifyRequest.BisectRows"/> rows on either side is split at the median key of the
/// fuller side; only the left half is hashed — the right half's hash is the parent's minus the
/// left's — and each half that still differs is split again. A small enough range is compared row
/// by row: both sides list (key, row hash), and every key whose row hashes are missing or different
/// goes into the table's <see cref="DifferenceCollector"/>. A key may be held by several rows on a side
/// (a target without the primary key): its rows are compared as a multiset, so a copy too many is a
/// difference. Work per differing row is about
/// 2 × log2(chunk/BisectRows) range scans that shrink by half each step.
/// </summary>
internal static class Bisector
{
    public static async Task BisectAsync(
        ConnectionPair pair, TableMatch table, ChunkRange range, ChunkHash source, ChunkHash target, int bisectRows,
        DifferenceCollector collector, CancellationToken cancellationToken)
    {
        if (source == target)
            return;
        if (Math.Max(source.Rows, target.Rows) <= bisectRows)
        {
            await CompareRowsAsync(pair, table, range, collector, cancellationToken).ConfigureAwait(false);
            return;
        }

        var fuller = source.Rows >= target.Rows;
        var mid = await MedianKeyAsync(fuller ? pair.Source : pair.Target, fuller ? table.Source : table.Target, range,
            (fuller ? source.Rows : target.Rows) / 2, cancellationToken).ConfigureAwait(false);
        if (mid is null || mid.Any(v => v is null))
        {
            await CompareRowsAsync(pair, table, range, collector, cancellationToken).ConfigureAwait(false);
            return;
        }

        var left = range with { Upper = mid, Buckets = null };
        var right = range with { Lower = mid, Buckets = null };
        var (leftSourceHashes, leftTargetHashes) = await ChunkHasher.HashBothAsync(pair, table, left, cancellationToken).ConfigureAwait(false);
        var (leftSource, leftTarget) = (leftSourceHashes.Total, leftTargetHashes.Total);
        var (rightSource, rightTarget) = (source - leftSource, target - leftTarget);
        if (leftSource.Rows == source.Rows && leftTarget.Rows == target.Rows)
        {
            // The split made no progress (cannot happen with unique keys; guards against a key
            // type whose ordering differs from its text form): compare the rows directly.
            await CompareRowsAsync(pair, table, range, collector, cancellationToken).ConfigureAwait(false);
            return;
        }

        await BisectAsync(pair, table, left, leftSource, leftTarget, bisectRows, collector, cancellationToken).ConfigureAwait(false);
        await BisectAsync(pair, table, right, rightSource, rightTarget, bisectRows, collector, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A differing bucket (about BisectRows rows) is compared row by row straight away, with an
    /// index range scan of just that bucket.
    /// </summary>
    public static async Task CompareBucketAsync(
        ConnectionPair pair, TableMatch table, ChunkRange range, int bucket, DifferenceCollector collector, CancellationToken cancellationToken)
    {
        var s = RowHashesAsync(pair.Source, table.Source, cmd => table.Source.BucketPredicate(range, bucket, cmd), cancellationToken);
        var t = RowHashesAsync(pair.Target, table.Target, cmd => table.Target.BucketPredicate(range, bucket, cmd), cancellationToken);
        Collect(await s.ConfigureAwait(false), await t.ConfigureAwait(false), collector);
    }

    private static async Task<string[]?> MedianKeyAsync(NpgsqlConnection conn, CanonicalRow table, ChunkRange range, long offset, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand { Connection = conn };
        var where = table.RangePredicate(range, cmd);
        cmd.Parameters.AddWithValue(offset);
        cmd.CommandText = $"SELECT {table.KeyTextArray} FROM {table.FromItem} WHERE {where} ORDER BY {table.KeyOrder} OFFSET ${cmd.Parameters.Count} LIMIT 1";
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string[];
    }

    private static async Task CompareRowsAsync(ConnectionPair pair, TableMatch table, ChunkRange range, DifferenceCollector collector, CancellationToken cancellationToken)
    {
        var sourceRows = RowHashesAsync(pair.Source, table.Source, cmd => table.Source.RangePredicate(range, cmd), cancellationToken);
        var targetRows = RowHashesAsync(pair.Target, table.Target, cmd => table.Target.RangePredicate(range, cmd), cancellationToken);
        Collect(await sourceRows.ConfigureAwait(false), await targetRows.ConfigureAwait(false), collector);
    }

    private static void Collect(Dictionary<string, (string[] Key, List<long> Hashes)> source, Dictionary<string, (string[] Key, List<long> Hashes)> target, DifferenceCollector collector)
    {
        foreach (var (id, (key, hashes)) in source)
        {
            if (!target.TryGetValue(id, out var other) || !DifferenceCollector.SameRows(hashes, other.Hashes))
                collector.AddSource(id, key, hashes);
        }

        foreach (var (id, (key, hashes)) in target)
        {
            if (!source.TryGetValue(id, out var other) || !DifferenceCollector.SameRows(hashes, other.Hashes))
                collector.AddTarget(id, key, hashes);
        }
    }

    /// <summary>Row hashes by key id; a key normally has one row, more only where the side lacks the key's constraint.</summary>
    private static async Task<Dictionary<string, (string[] Key, List<long> Hashes)>> RowHashesAsync(
        NpgsqlConnection conn, CanonicalRow table, Func<NpgsqlCommand, string> predicate, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand { Connection = conn };
        var where = predicate(cmd);
        cmd.CommandText = $"SELECT {table.KeyTextArray}, {table.Hash} FROM {table.FromItem} WHERE {where}";
        var rows = new Dictionary<string, (string[] Key, List<long> Hashes)>(StringComparer.Ordinal);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var key = reader.GetFieldValue<string[]>(0);
            var id = CanonicalRow.KeyId(key);
            if (!rows.TryGetValue(id, out var entry))
                rows[id] = entry = (key, []);
            entry.Hashes.Add(reader.GetInt64(1));
        }

        return rows;
    }
}

/// <summary>
/// The differing keys of one table, gathered from every compared range (thread-safe). A key can show
/// up in two ranges when the two servers order keys differently (another collation): once as
/// "only on the source" and once as "only on the target". <see cref="Differences"/> merges them, so
/// such a key with equal rows is not reported.
/// </summary>
internal sealed class DifferenceCollector
{
    private readonly Dictionary<string, KeyState> _keys = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public void AddSource(string id, string[] key, IReadOnlyList<long> hashes)
    {
        lock (_lock)
            Get(id, key).SourceHashes = [.. hashes.Order()];
    }

    public void AddTarget(string id, string[] key, IReadOnlyList<long> hashes)
    {
        lock (_lock)
            Get(id, key).TargetHashes = [.. hashes.Order()];
    }

    /// <summary>Whether two sides' rows of one key are the same multiset of row hashes.</summary>
    public static bool SameRows(IReadOnlyList<long> a, IReadOnlyList<long> b) =>
        a.Count == b.Count && (a.Count == 1 ? a[0] == b[0] : a.Order().SequenceEqual(b.Order()));

    private KeyState Get(string id, string[] key)
    {
        if (!_keys.TryGetValue(id, out var state))
            _keys[id] = state = new KeyState(key);
        return state;
    }

    /// <summary>Keys whose row is missing on one side or differs, in key-text order.</summary>
    public IReadOnlyList<KeyState> Differences()
    {
        lock (_lock)
            return _keys.Values.Where(k => k.Count > 0).OrderBy(k => CanonicalRow.KeyId(k.Key), StringComparer.Ordinal).ToList();
    }

    internal sealed class KeyState(string[] key)
    {
        public string[] Key { get; } = key;

        /// <summary>The key's row hashes on the source, sorted; empty when no compared range saw it there.</summary>
        public long[] SourceHashes { get; set; } = [];

        public long[] TargetHashes { get; set; } = [];

        /// <summary>Whether a side holds the key in more than one row.</summary>
        public bool Duplicated => SourceHashes.Length > 1 || TargetHashes.Length > 1;

        /// <summary>Rows that differ: those of the fuller side not matched by an equal row on the other (a second copy is one).</summary>
        public long Count => Math.Max(SourceHashes.Length, TargetHashes.Length) - Matched();

        /// <summary>
        /// <c>missing</c> or <c>extra</c> when one side has fewer rows with the key (for a duplicated
        /// key that is the copies too many), else <c>changed</c>.
        /// </summary>
        public string Kind => SourceHashes.Length < TargetHashes.Length ? RowDifference.Extra
            : SourceHashes.Length > TargetHashes.Length ? RowDifference.Missing : RowDifference.Changed;

        private int Matched()
        {
            int i = 0, j = 0, matched = 0;
            while (i < SourceHashes.Length && j < TargetHashes.Length)
            {
                var c = SourceHashes[i].CompareTo(TargetHashes[j]);
                if (c == 0)
                    (i, j, matched) = (i + 1, j + 1, matched + 1);
                else if (c < 0)
                    i++;
                else
                    j++;
            }

            return matched;
        }
    }
}
