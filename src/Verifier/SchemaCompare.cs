using Npgsql;
using Replicator.Core.Catalog;

namespace Replicator.Verifier;

/// <summary>
/// Compares the schema of both sides. Five checks: (a) tables present on each side; (b) per table,
/// columns with their types, NOT NULL and generated flags; (c) indexes by name and definition
/// (<c>pg_get_indexdef</c>); (d) constraints by table, name and definition
/// (<c>pg_get_constraintdef</c>); (e) sequences by definition — and their values, which lag on the
/// target while replication runs (logical replication does not carry sequence values; cutover syncs
/// them), so a value difference is <see cref="SchemaDifference.Info"/>, not a difference.
/// The <c>replicator</c> schema is ours and skipped.
/// </summary>
internal static class SchemaCompare
{
    private const string SchemaFilter =
        "n.nspname NOT IN ('pg_catalog', 'information_schema', 'replicator') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

    private const string IndexesSql = $"""
        SELECT n.nspname || '.' || i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE {SchemaFilter}
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = x.indrelid AND d.deptype = 'e')
        """;

    private const string ConstraintsSql = $"""
        SELECT n.nspname || '.' || t.relname || ' ' || c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE {SchemaFilter} AND c.contype IN ('p', 'u', 'f', 'c', 'x')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = t.oid AND d.deptype = 'e')
        """;

    private const string SequencesSql = """
        SELECT schemaname || '.' || sequencename,
               format('%s start %s increment %s min %s max %s cache %s%s', data_type, start_value, increment_by, min_value, max_value, cache_size,
                      CASE WHEN cycle THEN ' cycle' ELSE '' END),
               last_value::text
        FROM pg_sequences WHERE schemaname <> 'replicator'
        """;

    public static async Task<List<SchemaDifference>> CompareAsync(
        ConnectionPair pair, IReadOnlyList<TableInfo> sourceTables, IReadOnlyList<TableInfo> targetTables, CancellationToken cancellationToken)
    {
        var result = new List<SchemaDifference>();
        var targetByName = targetTables.ToDictionary(t => t.DisplayName, StringComparer.Ordinal);
        var sourceByName = sourceTables.ToDictionary(t => t.DisplayName, StringComparer.Ordinal);
        foreach (var s in sourceTables)
        {
            if (!targetByName.TryGetValue(s.DisplayName, out var t))
            {
                result.Add(new("table", s.DisplayName, "missing on target", SchemaDifference.Difference));
                continue;
            }

            var targetColumns = t.Columns.ToDictionary(c => c.Name, StringComparer.Ordinal);
            foreach (var c in s.Columns)
            {
                if (!targetColumns.TryGetValue(c.Name, out var tc))
                    result.Add(new("column", $"{s.DisplayName}.{c.Name}", "missing on target", SchemaDifference.Difference));
                else if (tc.TypeName != c.TypeName || tc.NotNull != c.NotNull || tc.IsGenerated != c.IsGenerated)
                    result.Add(new("column", $"{s.DisplayName}.{c.Name}", $"source {Describe(c)}, target {Describe(tc)}", SchemaDifference.Difference));
            }

            foreach (var tc in t.Columns.Where(tc => s.Columns.All(c => c.Name != tc.Name)))
                result.Add(new("column", $"{s.DisplayName}.{tc.Name}", "extra on target", SchemaDifference.Difference));
        }

        foreach (var t in targetTables.Where(t => !sourceByName.ContainsKey(t.DisplayName)))
            result.Add(new("table", t.DisplayName, "extra on target", SchemaDifference.Difference));

        var (sourceIndexes, targetIndexes) = await BothAsync(pair, IndexesSql, cancellationToken).ConfigureAwait(false);
        Compare("index", sourceIndexes, targetIndexes, result);
        var (sourceConstraints, targetConstraints) = await BothAsync(pair, ConstraintsSql, cancellationToken).ConfigureAwait(false);
        Compare("constraint", sourceConstraints, targetConstraints, result);
        var (sourceSequences, targetSequences) = await BothAsync(pair, SequencesSql, cancellationToken).ConfigureAwait(false);
        Compare("sequence", sourceSequences, targetSequences, result);
        foreach (var (name, (_, sourceValue)) in sourceSequences)
        {
            if (targetSequences.TryGetValue(name, out var target) && target.Extra != sourceValue)
                result.Add(new("sequence", name, $"value: source {sourceValue ?? "unused"}, target {target.Extra ?? "unused"} (lags during replication; cutover syncs it)", SchemaDifference.Info));
        }

        return result;
    }

    private static string Describe(ColumnInfo c) => c.TypeName + (c.NotNull ? " not null" : "") + (c.IsGenerated ? " generated" : "");

    private static void Compare(string kind, Dictionary<string, (string Definition, string? Extra)> source, Dictionary<string, (string Definition, string? Extra)> target, List<SchemaDifference> result)
    {
        foreach (var (name, (definition, _)) in source.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (!target.TryGetValue(name, out var other))
                result.Add(new(kind, name, $"missing on target ({definition})", SchemaDifference.Difference));
            else if (other.Definition == definition + " NOT VALID")
                result.Add(new(kind, name, "NOT VALID on the target (rows are checked on the source; the cutover validates it)", SchemaDifference.Info));
            else if (other.Definition != definition)
                result.Add(new(kind, name, $"source {definition}; target {other.Definition}", SchemaDifference.Difference));
        }

        foreach (var (name, (definition, _)) in target.Where(p => !source.ContainsKey(p.Key)).OrderBy(p => p.Key, StringComparer.Ordinal))
            result.Add(new(kind, name, $"extra on target ({definition})", SchemaDifference.Difference));
    }

    private static async Task<(Dictionary<string, (string Definition, string? Extra)>, Dictionary<string, (string Definition, string? Extra)>)> BothAsync(ConnectionPair pair, string sql, CancellationToken cancellationToken)
    {
        var s = ReadAsync(pair.Source, sql, cancellationToken);
        var t = ReadAsync(pair.Target, sql, cancellationToken);
        return (await s.ConfigureAwait(false), await t.ConfigureAwait(false));
    }

    private static async Task<Dictionary<string, (string Definition, string? Extra)>> ReadAsync(NpgsqlConnection conn, string sql, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(sql, conn);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new Dictionary<string, (string Definition, string? Extra)>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            rows[reader.GetString(0)] = (reader.GetString(1), reader.FieldCount > 2 && !reader.IsDBNull(2) ? reader.GetString(2) : null);
        return rows;
    }
}
