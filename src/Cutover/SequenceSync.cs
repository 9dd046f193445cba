using Npgsql;
using Replicator.Core.Catalog;
using NpgsqlTypes;

namespace Replicator.Cutover;

/// <summary>
/// Sets every sequence on the side switched to from the side being left — owned (serial), identity
/// and free-standing ones alike — in one read and one write, so the time does not grow with their
/// number. Runs while writes are fenced, so the values read are final: the next value drawn on the
/// new side is past every value the old side handed out (cached values included: a sequence's
/// stored last_value already covers every session's cache).
/// </summary>
internal static class SequenceSync
{
    private const string ListSql = $"""
        SELECT n.nspname, c.relname, pg_sequence_last_value(c.oid), s.seqstart
        FROM pg_sequence s
        JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {TableCatalog.UserSchemas}
        ORDER BY 1, 2
        """;

    /// <summary>Every user sequence, as <c>schema.name</c>, and whether this session's role may set it.</summary>
    public static async Task<Dictionary<string, bool>> ListAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var sequences = new Dictionary<string, bool>(StringComparer.Ordinal);
        await using var cmd = new NpgsqlCommand($"""
            SELECT n.nspname || '.' || c.relname, has_sequence_privilege(c.oid, 'UPDATE')
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
        var values = new List<long>();
        var called = new List<bool>();
        await using (var read = new NpgsqlCommand(ListSql, from))
        await using (var reader = await read.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                schemas.Add(reader.GetString(0));
                names.Add(reader.GetString(1));
                // Never drawn from: start where it starts (is_called = false hands out the start value first).
                var drawn = !reader.IsDBNull(2);
                values.Add(drawn ? reader.GetInt64(2) : reader.GetInt64(3));
                called.Add(drawn);
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
        write.Parameters.Add(new NpgsqlParameter { Value = values.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
        write.Parameters.Add(new NpgsqlParameter { Value = called.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Boolean });
        return (int)(long)(await write.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }
}
