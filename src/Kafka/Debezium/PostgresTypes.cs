using Npgsql;

namespace Replicator.Kafka.Debezium;

/// <summary>Built-in PostgreSQL type OIDs (stable across versions: they are in pg_type.dat) and typmod decoding.</summary>
internal static class PgOid
{
    public const uint Bool = 16, Bytea = 17, Char = 18, Name = 19, Int8 = 20, Int2 = 21, Int4 = 23, Text = 25, Oid = 26;
    public const uint Json = 114, Xml = 142, Point = 600, Cidr = 650, Float4 = 700, Float8 = 701, Macaddr8 = 774, Money = 790;
    public const uint Macaddr = 829, Inet = 869, Bpchar = 1042, Varchar = 1043, Date = 1082, Time = 1083, Timestamp = 1114;
    public const uint Timestamptz = 1184, Interval = 1186, Timetz = 1266, Bit = 1560, Varbit = 1562, Numeric = 1700, Uuid = 2950;
    public const uint Tsvector = 3614, Jsonb = 3802;

    /// <summary>Array type OID → element type OID, for the built-in arrays Debezium maps.</summary>
    public static readonly IReadOnlyDictionary<uint, uint> ArrayElements = new Dictionary<uint, uint>
    {
        [1000] = Bool, [1001] = Bytea, [1002] = Char, [1003] = Name, [1005] = Int2, [1007] = Int4, [1009] = Text,
        [1014] = Bpchar, [1015] = Varchar, [1016] = Int8, [1021] = Float4, [1022] = Float8, [1028] = Oid,
        [1115] = Timestamp, [1182] = Date, [1183] = Time, [1185] = Timestamptz, [1187] = Interval, [1231] = Numeric,
        [1270] = Timetz, [2951] = Uuid, [199] = Json, [3807] = Jsonb, [1041] = Inet, [651] = Cidr, [1040] = Macaddr,
        [775] = Macaddr8, [791] = Money, [1561] = Bit, [1563] = Varbit, [143] = Xml, [1017] = Point,
    };

    /// <summary>numeric(p,s): (precision, scale), or null for an unconstrained numeric.</summary>
    public static (int Precision, int Scale)? NumericPrecision(int typmod) =>
        typmod < 4 ? null : (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff);

    /// <summary>time(p)/timestamp(p)/timestamptz(p): p, or -1 when not declared.</summary>
    public static int TimePrecision(int typmod) => typmod < 0 ? -1 : typmod;

    /// <summary>Reads a typmod back from a <c>format_type</c> name such as <c>numeric(12,2)</c> or <c>timestamp(3) without time zone</c>.</summary>
    public static int TypmodFromTypeName(uint oid, string typeName)
    {
        var open = typeName.IndexOf('(', StringComparison.Ordinal);
        if (open < 0)
            return -1;
        var close = typeName.IndexOf(')', open);
        if (close < 0)
            return -1;
        var parts = typeName[(open + 1)..close].Split(',');
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (oid is Numeric or 1231)
        {
            var precision = int.Parse(parts[0], inv);
            var scale = parts.Length > 1 ? int.Parse(parts[1], inv) : 0;
            return ((precision << 16) | (scale & 0xffff)) + 4;
        }

        if (oid is Varchar or Bpchar)
            return int.Parse(parts[0], inv) + 4;
        return int.Parse(parts[0], inv);
    }
}

/// <summary>
/// What the serializer needs to know about non-built-in types and cannot read from the stream:
/// the labels of an enum type (Debezium's <c>io.debezium.data.Enum</c> carries them in its
/// <c>allowed</c> parameter) and the element type of an array of such a type. Capture fills this
/// from the source catalog (see <see cref="CatalogTypeResolver"/>) and refreshes it when a Relation
/// message names a type it has not seen.
/// </summary>
public interface IPostgresTypeResolver
{
    /// <summary>The enum's labels in sort order, or null when <paramref name="typeOid"/> is not an enum.</summary>
    IReadOnlyList<string>? EnumLabels(uint typeOid);

    /// <summary>The element type of an array type, or null when <paramref name="typeOid"/> is not an array.</summary>
    uint? ArrayElementType(uint typeOid);

    /// <summary>
    /// Whether the column is declared NOT NULL (Debezium makes such fields non-optional). pgoutput
    /// does not say; false (optional) when unknown. Key columns are always non-optional.
    /// </summary>
    bool IsNotNull(uint relationId, string column) => false;

    /// <summary>
    /// The table's primary-key columns, or null when unknown. Debezium keys records by the primary
    /// key; pgoutput flags replica-identity columns, which differ under REPLICA IDENTITY FULL or
    /// USING INDEX. Without an answer the flagged columns are the key (none under FULL).
    /// </summary>
    IReadOnlyList<string>? PrimaryKey(uint relationId) => null;
}

/// <summary>Knows only built-in types: every enum is unknown (sent as a plain string).</summary>
public sealed class BuiltInTypeResolver : IPostgresTypeResolver
{
    public static readonly BuiltInTypeResolver Instance = new();

    public IReadOnlyList<string>? EnumLabels(uint typeOid) => null;

    public uint? ArrayElementType(uint typeOid) => PgOid.ArrayElements.TryGetValue(typeOid, out var e) ? e : null;
}

/// <summary>Enum labels, array element types and NOT NULL columns read from a database's catalog at one moment.</summary>
public sealed class CatalogTypeResolver : IPostgresTypeResolver
{
    private readonly Dictionary<uint, IReadOnlyList<string>> _enums;
    private readonly Dictionary<uint, uint> _arrays;
    private readonly HashSet<(uint, string)> _notNull;
    private readonly Dictionary<uint, IReadOnlyList<string>> _primaryKeys = [];

    /// <summary>Primary keys by table OID (set by <see cref="LoadAsync"/>).</summary>
    public IDictionary<uint, IReadOnlyList<string>> PrimaryKeys => _primaryKeys;

    public IReadOnlyList<string>? PrimaryKey(uint relationId) => _primaryKeys.TryGetValue(relationId, out var pk) ? pk : null;

    public CatalogTypeResolver(IReadOnlyDictionary<uint, IReadOnlyList<string>> enums, IReadOnlyDictionary<uint, uint> arrays, IEnumerable<(uint RelationId, string Column)>? notNullColumns = null)
    {
        _enums = new Dictionary<uint, IReadOnlyList<string>>(enums);
        _arrays = new Dictionary<uint, uint>(arrays);
        _notNull = new HashSet<(uint, string)>(notNullColumns ?? []);
    }

    public bool IsNotNull(uint relationId, string column) => _notNull.Contains((relationId, column));

    public IReadOnlyList<string>? EnumLabels(uint typeOid) => _enums.TryGetValue(typeOid, out var labels) ? labels : null;

    public uint? ArrayElementType(uint typeOid) =>
        _arrays.TryGetValue(typeOid, out var e) ? e : PgOid.ArrayElements.TryGetValue(typeOid, out var b) ? b : null;

    /// <summary>Reads every enum's labels (in <c>enumsortorder</c>) and every user array type's element type.</summary>
    public static async Task<CatalogTypeResolver> LoadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var enums = new Dictionary<uint, IReadOnlyList<string>>();
        await using (var cmd = new NpgsqlCommand("SELECT enumtypid, array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_catalog.pg_enum GROUP BY enumtypid", connection))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                enums[reader.GetFieldValue<uint>(0)] = reader.GetFieldValue<string[]>(1);
        }

        var arrays = new Dictionary<uint, uint>();
        await using (var cmd = new NpgsqlCommand("SELECT oid, typelem FROM pg_catalog.pg_type WHERE typcategory = 'A' AND typelem <> 0", connection))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                arrays[reader.GetFieldValue<uint>(0)] = reader.GetFieldValue<uint>(1);
        }

        var notNull = new List<(uint, string)>();
        await using (var cmd = new NpgsqlCommand(
            "SELECT a.attrelid, a.attname::text FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid " +
            "WHERE a.attnotnull AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p') " +
            "AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)", connection))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                notNull.Add((reader.GetFieldValue<uint>(0), reader.GetString(1)));
        }

        var resolver = new CatalogTypeResolver(enums, arrays, notNull);
        await using (var cmd = new NpgsqlCommand(
            "SELECT i.indrelid, array_agg(a.attname::text ORDER BY k.ord) FROM pg_catalog.pg_index i " +
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) " +
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum " +
            "WHERE i.indisprimary GROUP BY i.indrelid", connection))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                resolver._primaryKeys[reader.GetFieldValue<uint>(0)] = reader.GetFieldValue<string[]>(1);
        }

        return resolver;
    }
}
