using Npgsql;

namespace Replicator.Verifier;

/// <summary>
/// Turns differing keys into report rows: fetches both sides' rows for the listed keys (one query
/// per side, keys as parameters) and names the columns whose text differs.
/// </summary>
internal static class RowDetails
{
    private const int MaxValueLength = 120;

    public static async Task<List<RowDifference>> DescribeAsync(
        ConnectionPair pair, TableMatch table, IReadOnlyList<DifferenceCollector.KeyState> keys, CancellationToken cancellationToken)
    {
        var changed = keys.Where(k => k.Kind == RowDifference.Changed && !k.Duplicated).Select(k => k.Key).ToList();
        Dictionary<string, string?[]> sourceRows = [], targetRows = [];
        if (changed.Count > 0)
        {
            var s = FetchAsync(pair.Source, table.Source, changed, cancellationToken);
            var t = FetchAsync(pair.Target, table.Target, changed, cancellationToken);
            sourceRows = await s.ConfigureAwait(false);
            targetRows = await t.ConfigureAwait(false);
        }

        var names = table.Source.Columns.Select(c => c.Name).ToList();
        var result = new List<RowDifference>(keys.Count);
        foreach (var key in keys)
        {
            var keyMap = table.Source.Keys.Select((c, i) => (c.Name, Value: key.Key[i])).ToDictionary(p => p.Name, p => (string?)p.Value);
            if (key.Duplicated)
            {
                result.Add(new RowDifference
                {
                    Kind = key.Kind, Key = keyMap, Count = key.Count,
                    SourceRowsWithKey = key.SourceHashes.Length, TargetRowsWithKey = key.TargetHashes.Length,
                });
                continue;
            }

            if (key.Kind != RowDifference.Changed)
            {
                result.Add(new RowDifference { Kind = key.Kind, Key = keyMap });
                continue;
            }

            var id = CanonicalRow.KeyId(key.Key);
            if (!sourceRows.TryGetValue(id, out var sourceValues) || !targetRows.TryGetValue(id, out var targetValues))
            {
                result.Add(new RowDifference { Kind = RowDifference.Changed, Key = keyMap, Columns = [] });
                continue;
            }

            var differing = Enumerable.Range(0, names.Count).Where(i => !string.Equals(sourceValues[i], targetValues[i], StringComparison.Ordinal)).ToList();
            result.Add(new RowDifference
            {
                Kind = RowDifference.Changed,
                Key = keyMap,
                Columns = differing.Select(i => names[i]).ToList(),
                SourceValues = differing.ToDictionary(i => names[i], i => Shorten(sourceValues[i])),
                TargetValues = differing.ToDictionary(i => names[i], i => Shorten(targetValues[i])),
            });
        }

        return result;
    }

    /// <summary>Rows by key id → every compared column as text.</summary>
    public static async Task<Dictionary<string, string?[]>> FetchAsync(NpgsqlConnection conn, CanonicalRow table, IReadOnlyList<string[]> keys, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand { Connection = conn };
        var where = table.KeyInPredicate(keys, cmd);
        cmd.CommandText = $"SELECT {table.KeyTextArray}, {table.ColumnTexts} FROM {table.FromItem} WHERE {where}";
        var rows = new Dictionary<string, string?[]>(StringComparer.Ordinal);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var values = new string?[table.Columns.Count];
            for (var i = 0; i < values.Length; i++)
                values[i] = reader.IsDBNull(i + 1) ? null : reader.GetString(i + 1);
            rows[CanonicalRow.KeyId(reader.GetFieldValue<string[]>(0))] = values;
        }

        return rows;
    }

    public static string? Shorten(string? value) =>
        value is null || value.Length <= MaxValueLength ? value : $"{value[..MaxValueLength]}… ({value.Length} chars)";
}
