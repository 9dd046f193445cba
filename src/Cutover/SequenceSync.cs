using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Sql;
using NpgsqlTypes;

namespace Replicator.Cutover;

/// <summary>
/// Sets every sequence on the side switched to from the side being left — owned (serial), identity
/// and free-standing ones alike — in one read of the catalog, one of the values and one write, so the
/// time does not grow with their number. Runs while writes are fenced, so the values read are final:
/// the next value drawn on the new side is past every value the old side handed out (cached values
/// included: a sequence's stored last_value already covers every session's cache).
/// <para>Each sequence's own <c>last_value, is_called</c> is copied as it is. Not
/// <c>pg_sequence_last_value()</c>: it is NULL whenever <c>is_called</c> is false — after
/// <c>ALTER SEQUENCE … RESTART WITH n</c> or <c>setval(…, n, false)</c>, not only when never drawn
/// from — and, on recent servers, when the role may not read the sequence.</para>
/// </summary>
internal static class SequenceSync
{
    /// <summary>Sequences read per statement.</summary>
    private const int ReadBatch = 500;

    private const string ListSql = $"""
        SELECT n.nspname, c.relname, has_sequence_privilege(c.oid, 'SELECT') AND has_schema_privilege(n.oid, 'USAGE'), current_user
        FROM pg_sequence s
        JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {TableCatalog.UserSchemas}
        ORDER BY 1, 2
        """;

    /// <summary>Every user sequence, as <c>schema.name</c>, and whether this session's role has <paramref name="privilege"/> (SELECT: read it; UPDATE: set it) on it.</summary>
    public static async Task<Dictionary<string, bool>> ListAsync(NpgsqlConnection connection, string privilege, CancellationToken cancellationToken)
    {
        var sequences = new Dictionary<string, bool>(StringComparer.Ordinal);
        await using var cmd = new NpgsqlCommand($"""
            SELECT n.nspname || '.' || c.relname, has_sequence_privilege(c.oid, '{privilege}') AND has_schema_privilege(n.oid, 'USAGE')
            FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE {TableCatalog.UserSchemas}
            """, connection);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            sequences[reader.GetString(0)] = reader.GetBoolean(1);
        return sequences;
    }

    /// <summary>Copies every sequence's position from <paramref name="from"/> to <paramref name="to"/>; returns how many.</summary>
    public static async Task<int> SyncAsync(NpgsqlConnection from, NpgsqlConnection to, CancellationToken cancellationToken)
    {
        var schemas = new List<string>();
        var names = new List<string>();
        var unreadable = new List<string>();
        var role = "";
        await using (var list = new NpgsqlCommand(ListSql, from))
        await using (var reader = await list.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                schemas.Add(reader.GetString(0));
                names.Add(reader.GetString(1));
                if (!reader.GetBoolean(2))
                    unreadable.Add(Identifier.Quote(reader.GetString(0), reader.GetString(1)));
                role = reader.GetString(3);
            }
        }

        if (unreadable.Count > 0)
        {
            throw new CutoverException($"the cutover's role may not read sequence(s) {string.Join(", ", unreadable)} on the side being left, so it cannot carry their positions over: " +
                $"GRANT SELECT ON SEQUENCE {string.Join(", ", unreadable)} TO {Identifier.Quote(role)} (and USAGE on their schemas), or connect as their owner");
        }

        // A few statements read them all: UNION ALLs of every sequence's own row, numbered (the order
        // of a UNION ALL is not guaranteed), at most ReadBatch sequences each (a UNION ALL of tens of
        // thousands would run past the server's stack depth limit).
        var values = new long[names.Count];
        var called = new bool[names.Count];
        for (var first = 0; first < names.Count; first += ReadBatch)
        {
            var readSql = string.Join("\nUNION ALL ", Enumerable.Range(first, Math.Min(ReadBatch, names.Count - first)).Select(i =>
                $"SELECT {i}, last_value, is_called FROM {Identifier.Quote(schemas[i], names[i])}"));
            await using var read = new NpgsqlCommand(readSql, from);
            await using var reader = await read.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var i = reader.GetInt32(0);
                values[i] = reader.GetInt64(1);
                called[i] = reader.GetBoolean(2);
            }
        }

        if (names.Count == 0)
            return 0;
        await using var write = new NpgsqlCommand("""
            SELECT count(setval(format('%I.%I', s, n)::regclass, v, c))
            FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[]) AS t(s, n, v, c)
            """, to);
        write.Parameters.Add(new NpgsqlParameter { Value = schemas.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        write.Parameters.Add(new NpgsqlParameter { Value = names.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        write.Parameters.Add(new NpgsqlParameter { Value = values, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
        write.Parameters.Add(new NpgsqlParameter { Value = called, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Boolean });
        return (int)(long)(await write.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }
}
