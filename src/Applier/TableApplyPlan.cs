using System.Text;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Errors;
using Replicator.Core.Sql;

namespace Replicator.Applier;

/// <summary>
/// How changes of one source relation are written to its target table: which target column each
/// stream column lands in and with which type, which columns identify a row, and the SQL for each
/// shape of multi-row statement (cached). Built when the relation is first seen and again when the
/// stream describes it anew (a schema change).
/// </summary>
/// <remarks>
/// Every statement takes one parameter per column, an array literal sent as text, and casts on
/// the server (<c>unnest($1::text[]) … u.p1::numeric(12,2)</c>): values travel as parameters in
/// PostgreSQL's own text form, identifiers are quoted, and one statement writes any number of rows.
/// </remarks>
internal sealed class TableApplyPlan
{
    private readonly Dictionary<string, string> _statements = [];

    private TableApplyPlan(StreamRelation relation, TableInfo target, string[] types, int[] keyIndexes, ulong syncLsn)
    {
        Relation = relation;
        Target = target;
        Types = types;
        KeyIndexes = keyIndexes;
        NonKeyIndexes = Enumerable.Range(0, relation.Columns.Count).Where(i => Array.IndexOf(keyIndexes, i) < 0).ToArray();
        SyncLsn = syncLsn;
        OverridingSystemValue = target.Columns.Any(c => c.IsIdentityAlways && relation.Columns.Any(s => s.Name == c.Name));
    }

    public StreamRelation Relation { get; }

    public TableInfo Target { get; }

    /// <summary>Target type of each stream column (format_type text).</summary>
    public string[] Types { get; }

    /// <summary>Stream column indexes of the target's key (primary key or replica identity index); empty: no key.</summary>
    public int[] KeyIndexes { get; }

    /// <summary>Stream column indexes not in <see cref="KeyIndexes"/>, in stream order (what a full update sets).</summary>
    public int[] NonKeyIndexes { get; }

    public bool HasKey => KeyIndexes.Length > 0;

    /// <summary>The LSN the table's copy was taken at: changes committed below it are already in the copy (see TargetState.PositionBefore).</summary>
    public ulong SyncLsn { get; }

    public bool OverridingSystemValue { get; }

    public string DisplayName => Relation.DisplayName;

    /// <summary>
    /// Matches the stream's description of a table to the target table. Columns the source added
    /// that the target lacks are returned in <paramref name="missing"/> for the caller to add (or
    /// to refuse); any other difference is a <see cref="ReplicationException"/> of kind Schema
    /// naming the DDL to run on the target.
    /// </summary>
    public static TableApplyPlan Create(StreamRelation relation, TableInfo? target, ulong syncLsn, out List<StreamColumn> missing)
    {
        missing = [];
        if (target is null)
        {
            throw new ReplicationException(ReplicationErrorKind.Schema,
                $"table {relation.DisplayName} does not exist on the target (created on the source after the snapshot?): create it on the target with the source's definition, e.g. pg_dump --schema-only -t '{relation.QuotedName}' <source> | psql <target>; replication resumes by itself");
        }

        var types = new string[relation.Columns.Count];
        for (var i = 0; i < relation.Columns.Count; i++)
        {
            var column = relation.Columns[i];
            var targetColumn = target.Columns.FirstOrDefault(c => c.Name == column.Name);
            if (targetColumn is null)
            {
                missing.Add(column);
                continue;
            }

            if (targetColumn.IsGenerated)
            {
                throw new ReplicationException(ReplicationErrorKind.Schema,
                    $"column {column.Name} of {relation.DisplayName} is generated on the target but a plain column on the source: make them match (ALTER TABLE {target.QuotedName} ALTER COLUMN {targetColumn.QuotedName} DROP EXPRESSION)");
            }

            if (!SameType(targetColumn.TypeName, column.TypeName))
            {
                throw new ReplicationException(ReplicationErrorKind.Schema,
                    $"column {column.Name} of {relation.DisplayName} is {column.TypeName} on the source but {targetColumn.TypeName} on the target: run ALTER TABLE {target.QuotedName} ALTER COLUMN {targetColumn.QuotedName} TYPE {column.TypeName} USING {targetColumn.QuotedName}::{column.TypeName}; on the target, and replication resumes by itself");
            }

            types[i] = targetColumn.TypeName;
        }

        var extra = target.Columns.Where(c => !c.IsGenerated && relation.Columns.All(s => s.Name != c.Name)).ToList();
        if (extra.Count > 0)
        {
            var drops = string.Join(' ', extra.Select(c => $"ALTER TABLE {target.QuotedName} DROP COLUMN {c.QuotedName};"));
            throw new ReplicationException(ReplicationErrorKind.Schema,
                $"table {relation.DisplayName} on the target has column(s) {string.Join(", ", extra.Select(c => c.Name))} that the source no longer sends (dropped or renamed on the source?). Nothing was dropped: check the source, then run {drops} on the target (or add the column back on the source); replication resumes by itself");
        }

        // Identify rows by the target's key when it has one: under REPLICA IDENTITY FULL the stream
        // flags every column as key, but the primary key is what makes a row unique.
        int[] keyIndexes;
        if (target.KeyColumns.Count > 0)
        {
            keyIndexes = target.KeyColumns.Select(k => relation.Columns.Select((c, i) => (c, i)).FirstOrDefault(p => p.c.Name == k, (null!, -1)).Item2).ToArray();
            if (keyIndexes.Any(i => i < 0))
                throw new ReplicationException(ReplicationErrorKind.Schema, $"the key of {relation.DisplayName} on the target ({string.Join(", ", target.KeyColumns)}) is not among the columns the source sends");
        }
        else
        {
            keyIndexes = [];
        }

        return new TableApplyPlan(relation, target, types, keyIndexes, syncLsn);
    }

    private static bool SameType(string a, string b) => string.Equals(a, b, StringComparison.Ordinal);

    /// <summary>
    /// <c>INSERT … SELECT … FROM unnest(…)</c> of whole rows; with <paramref name="upsert"/>, rows whose
    /// key exists are overwritten (idempotent replay and delete-then-insert of a key).
    /// </summary>
    public string InsertSql(bool upsert) => Cached(upsert ? "upsert" : "insert", () =>
    {
        var all = Enumerable.Range(0, Relation.Columns.Count).ToArray();
        var sb = new StringBuilder("INSERT INTO ").Append(Target.QuotedName).Append(" (")
            .AppendJoin(", ", all.Select(i => Relation.Columns[i].QuotedName)).Append(')');
        if (OverridingSystemValue)
            sb.Append(" OVERRIDING SYSTEM VALUE");
        sb.Append(" SELECT ").AppendJoin(", ", all.Select(i => $"u.p{i}::{Types[i]}"))
            .Append(" FROM ").Append(Unnest(all));
        if (upsert)
        {
            sb.Append(" ON CONFLICT (").AppendJoin(", ", KeyIndexes.Select(i => Relation.Columns[i].QuotedName)).Append(')');
            var set = all.Except(KeyIndexes).ToArray();
            if (set.Length == 0)
                sb.Append(" DO NOTHING");
            else
                sb.Append(" DO UPDATE SET ").AppendJoin(", ", set.Select(i => $"{Relation.Columns[i].QuotedName} = EXCLUDED.{Relation.Columns[i].QuotedName}"));
        }

        return sb.ToString();
    });

    /// <summary>
    /// <c>COPY … FROM STDIN</c> of whole rows in text format, the form for many plain inserts: the
    /// server inserts them several to a page (one WAL record per page, where INSERT writes one per
    /// row), and parses no array literals. Like the apply worker, and unlike INSERT, COPY writes
    /// identity columns as given and does not apply rules.
    /// </summary>
    public string CopySql() => Cached("copy", () =>
        new StringBuilder("COPY ").Append(Target.QuotedName).Append(" (")
            .AppendJoin(", ", Relation.Columns.Select(c => c.QuotedName)).Append(") FROM STDIN").ToString());

    /// <summary><c>UPDATE … FROM unnest(…) WHERE key = …</c> setting the columns in <paramref name="setColumns"/> (non-key).</summary>
    public string UpdateSql(int[] setColumns) => Cached("update:" + string.Join(',', setColumns), () =>
    {
        var all = KeyIndexes.Concat(setColumns).ToArray();
        return new StringBuilder("UPDATE ").Append(Target.QuotedName).Append(" AS t SET ")
            .AppendJoin(", ", setColumns.Select(i => $"{Relation.Columns[i].QuotedName} = u.p{i}::{Types[i]}"))
            .Append(" FROM ").Append(Unnest(all)).Append(" WHERE ").Append(KeyMatch())
            .ToString();
    });

    /// <summary><c>DELETE … USING unnest(…) WHERE key = …</c>.</summary>
    public string DeleteSql() => Cached("delete", () =>
        new StringBuilder("DELETE FROM ").Append(Target.QuotedName).Append(" AS t USING ").Append(Unnest(KeyIndexes))
            .Append(" WHERE ").Append(KeyMatch()).ToString());

    /// <summary>
    /// Tables without a key: change exactly one row whose content equals the old row (also when
    /// several identical rows exist). Columns compare as text after a cast to their own type, which
    /// also works for types without an equality operator (json, point, xml). Only
    /// <paramref name="compareColumns"/> are compared; <paramref name="setColumns"/> null means delete.
    /// The row is located by <c>tableoid</c> and <c>ctid</c>: a ctid alone names a row of each
    /// partition when the target is a partitioned table (changes published via the partition root).
    /// </summary>
    public string KeylessSql(int[] compareColumns, int[]? setColumns) => Cached($"keyless:{string.Join(',', compareColumns)}:{(setColumns is null ? "d" : string.Join(',', setColumns))}", () =>
    {
        var n = Relation.Columns.Count;
        var match = string.Join(" AND ", compareColumns.Select(i => $"{Relation.Columns[i].QuotedName}::text IS NOT DISTINCT FROM (${i + 1}::{Types[i]})::text"));
        var hit = $"WITH hit AS (SELECT tableoid, ctid FROM {Target.QuotedName} WHERE {(match.Length == 0 ? "true" : match)} LIMIT 1) ";
        const string Locate = "ctid = (SELECT ctid FROM hit) AND tableoid = (SELECT tableoid FROM hit)";
        if (setColumns is null)
            return $"{hit}DELETE FROM {Target.QuotedName} WHERE {Locate}";
        var set = string.Join(", ", setColumns.Select(i => $"{Relation.Columns[i].QuotedName} = ${n + i + 1}::{Types[i]}"));
        return $"{hit}UPDATE {Target.QuotedName} SET {set} WHERE {Locate}";
    });

    /// <summary>A key-changing update with unchanged TOAST columns: moves the row in place so the target keeps those values.</summary>
    public string KeyChangeSql(int[] setColumns) => Cached("keychange:" + string.Join(',', setColumns), () =>
    {
        var n = Relation.Columns.Count;
        var set = string.Join(", ", setColumns.Select(i => $"{Relation.Columns[i].QuotedName} = ${n + i + 1}::{Types[i]}"));
        var where = string.Join(" AND ", KeyIndexes.Select(i => $"{Relation.Columns[i].QuotedName} = ${i + 1}::{Types[i]}"));
        return $"UPDATE {Target.QuotedName} SET {set} WHERE {where}";
    });

    private string KeyMatch() => string.Join(" AND ", KeyIndexes.Select(i => $"t.{Relation.Columns[i].QuotedName} = u.p{i}::{Types[i]}"));

    private static string Unnest(IEnumerable<int> columns)
    {
        var list = columns.ToArray();
        var sb = new StringBuilder("unnest(");
        for (var j = 0; j < list.Length; j++)
            sb.Append(j == 0 ? "" : ", ").Append('$').Append(j + 1).Append("::text[]");
        return sb.Append(") AS u(").AppendJoin(", ", list.Select(i => $"p{i}")).Append(')').ToString();
    }

    private string Cached(string key, Func<string> build)
    {
        if (!_statements.TryGetValue(key, out var sql))
            _statements[key] = sql = build();
        return sql;
    }
}
