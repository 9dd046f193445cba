using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Sql;

namespace Replicator.Verifier;

/// <summary>
/// The canonical row text both sides hash, and the SQL fragments built from it for one table on one
/// side. Two rules make equal rows hash equally on two servers: (a) the session settings that shape
/// text output are fixed (<see cref="SessionSettingsSql"/>), and (b) the row text lists the compared
/// columns explicitly, in the source's column order, so a different physical column order or a
/// dropped column on one side does not matter. Hash: <c>hashtextextended</c> (64 bit), never md5
/// (Azure's FIPS mode rejects it, DESIGN invariant 8). A chunk's hash is the count and the numeric
/// sum of its row hashes: order-independent, and a multiset hash for tables without a key.
/// </summary>
internal sealed class CanonicalRow
{
    /// <summary>Every output-shaping setting, fixed; run on every verifier connection before its transaction.</summary>
    public const string SessionSettingsSql =
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; " +
        "SET extra_float_digits = 3; SET lc_monetary = 'C'; SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; " +
        "SET application_name = 'replicator-verify'; " +
        // A bucketed chunk hash groups by width_bucket(key): the planner cannot estimate that
        // expression's few groups and would sort every row of the chunk (to disk) before
        // aggregating; with sorts discouraged it hashes into a handful of groups instead.
        "SET enable_sort = off";

    /// <summary>
    /// Runs <paramref name="work"/> (catalog reads) with <c>search_path = pg_catalog</c> on
    /// <paramref name="connection"/>, then restores the session's path. format_type and pg_get_*def
    /// qualify a name only when the search path does not find it, so a search_path set on one side
    /// (ALTER DATABASE … SET) would make false schema differences; with only pg_catalog every user
    /// object prints qualified. Only for catalog reads: the data queries need the database's path,
    /// where the key types' operators and aggregates live (an ltree key's min(), a citext key's &lt;).
    /// </summary>
    public static async Task<T> WithCatalogNamesAsync<T>(NpgsqlConnection connection, Func<Task<T>> work, CancellationToken cancellationToken)
    {
        string saved;
        await using (var set = new NpgsqlCommand("SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', false)", connection))
        await using (var reader = await set.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            saved = reader.GetString(0);
        }

        var result = await work().ConfigureAwait(false);
        await using var restore = new NpgsqlCommand("SELECT set_config('search_path', $1, false)", connection);
        restore.Parameters.AddWithValue(saved);
        await restore.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        return result;
    }

    /// <summary>The alias every verifier query gives the table, so the whole row can be named.</summary>
    public const string RowAlias = "_replicator_row";

    /// <param name="wholeRow">
    /// The compared columns are all of the table's columns in its own order, on both sides: the row
    /// text is then the whole-row value <c>alias::text</c>, which prints exactly what
    /// <c>ROW(a, b, …)::text</c> prints but without building a new row first (about 15% less work
    /// per row). The caller checks both sides, and that no column is named like the alias.
    /// </param>
    /// <param name="typedColumns">
    /// Null: the row hash is <c>hashtextextended(row text, 0)</c>. Otherwise (both servers
    /// PostgreSQL 14+) the row hash is built by <c>hash_record_extended</c> over a row of the compared
    /// columns named here (whose types hash exactly when their text is equal, see
    /// <see cref="HashesLikeText"/>), plus the row text of all other columns as one field; about half
    /// the CPU of printing the whole row as text. See <see cref="Hash"/>.
    /// </param>
    public CanonicalRow(TableInfo table, IReadOnlyList<string> columns, IReadOnlyList<string> keyColumns, bool wholeRow, IReadOnlySet<string>? typedColumns = null)
    {
        Table = table;
        Columns = columns.Select(table.Column).ToList();
        Keys = keyColumns.Select(table.Column).ToList();
        AnyKeyNull = Keys.Any(c => !c.NotNull) ? string.Join(" OR ", Keys.Where(c => !c.NotNull).Select(c => c.QuotedName + " IS NULL")) : null;
        // ONLY: a classic (INHERITS) parent's scan would include its children's rows, which are
        // compared in the children; a partitioned root's rows are all in its partitions.
        FromItem = (table.IsPartitionedParent ? "" : "ONLY ") + table.QuotedName + " AS " + Identifier.Quote(RowAlias);
        RowText = wholeRow
            ? Identifier.Quote(RowAlias) + "::text"
            : "ROW(" + string.Join(", ", Columns.Select(c => c.QuotedName)) + ")::text";
        Typed = typedColumns is not null;
        if (typedColumns is null)
        {
            RawHash = $"hashtextextended({RowText}, 0)";
        }
        else
        {
            // Text-like values are hashed byte by byte (COLLATE "C": a nondeterministic collation would
            // hash 'A' like 'a'); the other columns go into one field, the canonical text of a row of
            // them (record output prints each with its output function — a cast to text would not:
            // bpchar's drops trailing blanks).
            var fields = Columns.Where(c => typedColumns.Contains(c.Name))
                .Select(c => IsTextLike(c) ? $"{c.QuotedName} COLLATE \"C\"" : c.QuotedName).ToList();
            var byText = Columns.Where(c => !typedColumns.Contains(c.Name)).Select(c => c.QuotedName).ToList();
            if (byText.Count > 0)
                fields.Add($"ROW({string.Join(", ", byText)})::text COLLATE \"C\"");
            RawHash = $"hash_record_extended(ROW({string.Join(", ", fields)}), 0)";
        }

        Hash = Mix(RawHash);
        KeyOrder = string.Join(", ", Keys.Select(c => c.QuotedName));
        KeyTuple = "(" + KeyOrder + ")";
        KeyTextArray = "ARRAY[" + string.Join(", ", Keys.Select(c => c.QuotedName + "::text")) + "]::text[]";
        ColumnTexts = string.Join(", ", Columns.Select(TextOf));
    }

    public TableInfo Table { get; }

    /// <summary>Compared columns (present on both sides), in source order.</summary>
    public IReadOnlyList<ColumnInfo> Columns { get; }

    /// <summary>Key columns; empty for a table compared as a multiset.</summary>
    public IReadOnlyList<ColumnInfo> Keys { get; }

    public bool HasKey => Keys.Count > 0;

    /// <summary><c>ONLY "schema"."table" AS "_replicator_row"</c>, for FROM (also valid in DELETE FROM and before TABLESAMPLE).</summary>
    public string FromItem { get; }

    /// <summary><c>ROW("a", "b")::text</c>: the canonical row text.</summary>
    public string RowText { get; }

    /// <summary>
    /// The 64-bit row hash (an SQL expression over <see cref="FromItem"/>'s row). For the text method
    /// it is <c>hashtextextended(row text, 0)</c>. For the typed method it is
    /// <c>Mix(hash_record_extended(ROW(…), 0))</c>: <c>hash_record_extended</c> combines its fields'
    /// hashes linearly (h·31 + next), so two rows that swapped a value would keep the sum of their
    /// hashes; the mix (<c>hashint8extended(h, h)</c>, the whole 64 bits as seed) removes that.
    /// </summary>
    public string Hash { get; }

    /// <summary>True when <see cref="Hash"/> is the typed (<c>hash_record_extended</c>) method.</summary>
    public bool Typed { get; }

    /// <summary>The row hash before <see cref="Mix"/>: computed once in a subquery where the mixed value is summed.</summary>
    public string RawHash { get; }

    /// <summary>Turns <see cref="RawHash"/> (or a column holding it) into the row hash <see cref="Hash"/>.</summary>
    public string Mix(string rawHash) => Typed ? $"hashint8extended({rawHash}, {rawHash})" : rawHash;

    /// <summary>
    /// Types whose hash function (the one <c>hash_record_extended</c> uses) tells values apart exactly
    /// when their text under the verifier's session settings differs: integers, bool, oid, date, time,
    /// timestamps (the session time zone only shapes the text), uuid, bytea, and text, varchar and
    /// char(n) hashed byte by byte. Not: numeric (1.0 = 1.00), floats (0 = -0), interval
    /// ('1 day' = '24 hours'), arrays (the hash ignores dimensions), jsonb, unbounded bpchar (trailing
    /// blanks), domains, ranges, records, and types without a hash function — those go through text.
    /// </summary>
    public static bool HashesLikeText(ColumnInfo column) => column.TypeOid switch
    {
        16 or 17 or 20 or 21 or 23 or 25 or 26 or 1043 or 1082 or 1083 or 1114 or 1184 or 2950 => true,
        1042 => column.TypeName.Contains('(', StringComparison.Ordinal), // char(n): blank-padded to n, so trailing blanks never differ
        _ => false,
    };

    /// <summary>
    /// The column's text as its output function prints it (NULL stays NULL). A cast to text does that
    /// for every type but bpchar, whose cast drops trailing blanks; <c>concat</c> keeps them.
    /// </summary>
    public static string TextOf(ColumnInfo column) => column.TypeOid == 1042
        ? $"CASE WHEN {column.QuotedName} IS NULL THEN NULL ELSE concat({column.QuotedName}) END"
        : column.QuotedName + "::text";

    private static bool IsTextLike(ColumnInfo column) => column.TypeOid is 25 or 1042 or 1043;

    public string KeyOrder { get; }

    public string KeyTuple { get; }

    /// <summary>The key as a text array, for transport and as a dictionary key.</summary>
    public string KeyTextArray { get; }

    /// <summary>Every compared column as text, in <see cref="Columns"/> order.</summary>
    public string ColumnTexts { get; }

    /// <summary>
    /// <c>WHERE</c> condition for the half-open key range (lower, upper]; null bounds are open. Bounds
    /// travel as text parameters cast to this side's key types. A key with a NULL column (only on a
    /// target without the key's constraints) compares as unknown, so it would be in no range: the
    /// first range (no lower bound) takes every such row, the others exclude them — a composite key
    /// with a NULL in a later column can still compare as inside by its first one. Only for key
    /// columns this side lets be NULL: a side with the key's constraints keeps plain index range scans.
    /// </summary>
    public string RangePredicate(ChunkRange range, NpgsqlCommand command)
    {
        var parts = new List<string>(3);
        if (range.Lower is { } lower)
            parts.Add($"{KeyTuple} > {BoundTuple(lower, command)}");
        if (range.Upper is { } upper)
            parts.Add($"{KeyTuple} <= {BoundTuple(upper, command)}");
        if (parts.Count == 0 || AnyKeyNull is null)
            return parts.Count == 0 ? "true" : string.Join(" AND ", parts);
        if (range.Lower is null)
            return $"({parts[0]} OR {AnyKeyNull})";
        if (Keys.Count > 1)
            parts.Add($"NOT ({AnyKeyNull})");
        return string.Join(" AND ", parts);
    }

    /// <summary>True for a row whose key has a NULL column; null when this side's key columns are all NOT NULL.</summary>
    private string? AnyKeyNull { get; }

    /// <summary>Whether the key can be bucketed with <c>width_bucket</c>: one column, not itself an array.</summary>
    public bool CanBucket => Keys.Count == 1 && !Keys[0].TypeName.EndsWith("[]", StringComparison.Ordinal);

    /// <summary>
    /// <c>width_bucket(key, thresholds)</c>: 0 below the first threshold, i in [t(i-1), t(i)), n at or
    /// above the last. A NULL key (a target without the key's constraints) goes into bucket 0.
    /// </summary>
    public string BucketExpression(IReadOnlyList<string> buckets, NpgsqlCommand command)
    {
        command.Parameters.Add(new NpgsqlParameter { Value = buckets.ToArray(), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text });
        return $"coalesce(width_bucket({Keys[0].QuotedName}, ${command.Parameters.Count}::text[]::{Keys[0].TypeName}[]), 0)";
    }

    /// <summary>The range's predicate narrowed to bucket <paramref name="bucket"/> of its <see cref="ChunkRange.Buckets"/>.</summary>
    public string BucketPredicate(ChunkRange range, int bucket, NpgsqlCommand command)
    {
        var buckets = range.Buckets ?? throw new InvalidOperationException("range has no buckets");
        var parts = new List<string> { RangePredicate(range, command) };
        if (bucket > 0)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = buckets[bucket - 1], NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            parts.Add($"{Keys[0].QuotedName} >= ${command.Parameters.Count}::{Keys[0].TypeName}");
        }

        if (bucket < buckets.Count)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = buckets[bucket], NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            parts.Add(bucket == 0 && !Keys[0].NotNull
                ? $"({Keys[0].QuotedName} < ${command.Parameters.Count}::{Keys[0].TypeName} OR {Keys[0].QuotedName} IS NULL)"
                : $"{Keys[0].QuotedName} < ${command.Parameters.Count}::{Keys[0].TypeName}");
        }

        return string.Join(" AND ", parts);
    }

    private string BoundTuple(IReadOnlyList<string> values, NpgsqlCommand command)
    {
        var items = new List<string>(values.Count);
        for (var i = 0; i < values.Count; i++)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = values[i], NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            items.Add($"${command.Parameters.Count}::{Keys[i].TypeName}");
        }

        return "(" + string.Join(", ", items) + ")";
    }

    /// <summary>
    /// <c>(keys) IN (…)</c> for a set of keys given as text: one text[] parameter per key column,
    /// unnested and cast to this side's types (the cast goes per element, so array-typed keys work).
    /// A key with a NULL column matches nothing by IN: when one is listed, every row whose key has a
    /// NULL column is included (the source's key columns are NOT NULL, so all such rows are
    /// differences and all are listed).
    /// </summary>
    public string KeyInPredicate(IReadOnlyList<string?[]> keys, NpgsqlCommand command)
    {
        var names = new List<string>(Keys.Count);
        var casts = new List<string>(Keys.Count);
        for (var i = 0; i < Keys.Count; i++)
        {
            var column = i;
            command.Parameters.Add(new NpgsqlParameter
            {
                Value = keys.Select(k => k[column]).ToArray(),
                NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text,
            });
            names.Add($"${command.Parameters.Count}::text[]");
            casts.Add($"u.{Identifier.Quote("k" + i)}::{Keys[i].TypeName}");
        }

        var aliases = string.Join(", ", Enumerable.Range(0, Keys.Count).Select(i => Identifier.Quote("k" + i)));
        var keyIn = $"{KeyTuple} IN (SELECT {string.Join(", ", casts)} FROM unnest({string.Join(", ", names)}) AS u({aliases}))";
        return AnyKeyNull is not null && keys.Any(k => k.Any(v => v is null)) ? $"({keyIn} OR {AnyKeyNull})" : keyIn;
    }

    /// <summary>A key (text values) as one string for dictionaries: unambiguous, since values cannot hold NUL.</summary>
    public static string KeyId(IReadOnlyList<string?> key) => string.Join('\0', key.Select(v => v ?? "\u0001NULL"));
}

/// <summary>
/// A key range (Lower, Upper]: rows whose key is above Lower and at most Upper; null is unbounded.
/// <see cref="Buckets"/>, for a single-column key, are sampled keys inside the range: the chunk is
/// hashed per bucket (<c>width_bucket</c>) in the same scan, so a differing chunk already says which
/// small bucket holds the difference and needs no further scans to find it.
/// </summary>
internal sealed record ChunkRange(string[]? Lower, string[]? Upper)
{
    /// <summary>Sorted key values (text) splitting the range into buckets [Buckets[i-1], Buckets[i]); null for no buckets.</summary>
    public IReadOnlyList<string>? Buckets { get; init; }


    public static readonly ChunkRange All = new(null, null);

    public override string ToString() =>
        $"({(Lower is null ? "-inf" : string.Join(",", Lower))}, {(Upper is null ? "+inf" : string.Join(",", Upper))}]";
}
