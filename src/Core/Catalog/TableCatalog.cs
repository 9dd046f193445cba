using Npgsql;

namespace Replicator.Core.Catalog;

/// <summary>
/// Reads user tables from a database's catalog: everything a logical replication of the database
/// covers. Excluded, with reasons: system schemas; the <c>replicator</c> schema (our own progress
/// tables); tables that belong to an extension (the extension creates them on the target);
/// temporary and unlogged tables (logical decoding does not see their changes).
/// </summary>
public static class TableCatalog
{
    /// <summary>The schema Replicator keeps its own state in, on the target (and skips everywhere).</summary>
    public const string StateSchema = "replicator";

    /// <summary>
    /// SQL condition on <c>n</c> (a <c>pg_namespace</c> row) for user schemas: not the system ones, not
    /// pg_toast/pg_temp and the like, not replicator's own state. Shared by every catalog query that
    /// lists user objects (sequences, constraints, triggers, fingerprints).
    /// </summary>
    public const string UserSchemas = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'replicator') AND n.nspname NOT LIKE 'pg\\_%'";

    private const string TablesSql = """
        SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relreplident::text,
               pn.nspname, pc.relname, c.reltuples::bigint, pg_relation_size(c.oid), row_security_active(c.oid)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND c.relispartition
        LEFT JOIN pg_class pc ON pc.oid = i.inhparent
        LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
        WHERE c.relkind IN ('r', 'p')
          AND c.relpersistence = 'p'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'replicator')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY n.nspname, c.relname
        """;

    private const string ColumnsSql = """
        SELECT a.attrelid, a.attname, a.attnum, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull,
               a.attgenerated <> '', a.attidentity::text
        FROM pg_attribute a
        WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum
        """;

    private const string KeysSql = """
        SELECT i.indrelid, i.indisprimary, i.indisreplident,
               ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
        FROM pg_index i
        WHERE i.indrelid = ANY($1) AND (i.indisprimary OR i.indisreplident)
        """;

    /// <summary>
    /// The tables <paramref name="publication"/> names (<c>pg_publication_tables</c>: the partitions, or
    /// the roots where it publishes via them); empty when it does not exist.
    /// </summary>
    public static async Task<HashSet<TableName>> PublishedTablesAsync(NpgsqlConnection connection, string publication, CancellationToken cancellationToken)
    {
        var names = new HashSet<TableName>();
        await using var cmd = new NpgsqlCommand("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", connection);
        cmd.Parameters.AddWithValue(publication);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            names.Add(new TableName(reader.GetString(0), reader.GetString(1)));
        return names;
    }

    /// <summary>Loads every replicable user table, in <c>schema, name</c> order.</summary>
    public static async Task<IReadOnlyList<TableInfo>> LoadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var rows = new List<(uint Oid, string Schema, string Name, char Kind, char Identity, TableName? Parent, long Rows, long Size, bool RowSecurity)>();
        await using (var cmd = new NpgsqlCommand(TablesSql, connection))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                rows.Add((
                    reader.GetFieldValue<uint>(0), reader.GetString(1), reader.GetString(2), reader.GetString(3)[0], reader.GetString(4)[0],
                    reader.IsDBNull(5) ? null : new TableName(reader.GetString(5), reader.GetString(6)),
                    reader.GetInt64(7), reader.GetInt64(8), reader.GetBoolean(9)));
            }
        }

        var oids = rows.Select(r => r.Oid).ToArray();
        var columns = oids.ToDictionary(o => o, _ => new List<ColumnInfo>());
        await using (var cmd = new NpgsqlCommand(ColumnsSql, connection))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = oids, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Oid });
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var identity = reader.GetString(7);
                columns[reader.GetFieldValue<uint>(0)].Add(new ColumnInfo(
                    reader.GetString(1), reader.GetInt16(2), reader.GetString(3), reader.GetFieldValue<uint>(4), reader.GetBoolean(5),
                    reader.GetBoolean(6), identity.Length > 0 ? identity[0] : '\0'));
            }
        }

        var primaryKeys = new Dictionary<uint, string[]>();
        var identityKeys = new Dictionary<uint, string[]>();
        await using (var cmd = new NpgsqlCommand(KeysSql, connection))
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = oids, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Oid });
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var oid = reader.GetFieldValue<uint>(0);
                var keyColumns = reader.GetFieldValue<string[]>(3);
                if (reader.GetBoolean(1))
                    primaryKeys[oid] = keyColumns;
                if (reader.GetBoolean(2))
                    identityKeys[oid] = keyColumns;
            }
        }

        return rows.Select(r => new TableInfo(
            r.Oid, r.Schema, r.Name, r.Kind, columns[r.Oid],
            primaryKeys.GetValueOrDefault(r.Oid, []), r.Identity, identityKeys.GetValueOrDefault(r.Oid, []),
            r.Parent, r.Rows, r.Size, r.RowSecurity)).ToList();
    }
}
