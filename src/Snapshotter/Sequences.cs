using Npgsql;
using Replicator.Core.Sql;

namespace Replicator.Snapshotter;

/// <summary>A sequence's state in the snapshot.</summary>
public sealed record SequenceValue(string Schema, string Name, long LastValue, bool IsCalled);

/// <summary>
/// Sequences are not replicated by logical decoding: the snapshot sets each one on the target to
/// its value in the snapshot (cutover sets them again from the live source before the switch).
/// Identity columns' sequences are included; extension-owned ones and our own schema are not.
/// </summary>
public static class Sequences
{
    /// <summary>Reads every user sequence inside the caller's snapshot transaction on <paramref name="source"/>.</summary>
    public static async Task<List<SequenceValue>> ReadAsync(NpgsqlConnection source, CancellationToken cancellationToken)
    {
        var names = new List<(string Schema, string Name)>();
        await using (var cmd = new NpgsqlCommand("""
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'S' AND c.relpersistence = 'p'
              AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'replicator') AND n.nspname NOT LIKE 'pg\_temp%'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY 1, 2
            """, source))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                names.Add((reader.GetString(0), reader.GetString(1)));
        }

        var values = new List<SequenceValue>();
        foreach (var (schema, name) in names)
        {
            await using var cmd = new NpgsqlCommand($"SELECT last_value, is_called FROM {Identifier.Quote(schema, name)}", source);
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            values.Add(new SequenceValue(schema, name, reader.GetInt64(0), reader.GetBoolean(1)));
        }

        return values;
    }

    /// <summary>Sets every sequence on the target, in one transaction.</summary>
    public static async Task WriteAsync(NpgsqlConnection target, IReadOnlyList<SequenceValue> values, CancellationToken cancellationToken)
    {
        if (values.Count == 0)
            return;
        await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using var batch = new NpgsqlBatch(target, tx);
        foreach (var v in values)
        {
            var cmd = new NpgsqlBatchCommand("SELECT setval($1::regclass, $2, $3)");
            cmd.Parameters.AddWithValue(Identifier.Quote(v.Schema, v.Name));
            cmd.Parameters.AddWithValue(v.LastValue);
            cmd.Parameters.AddWithValue(v.IsCalled);
            batch.BatchCommands.Add(cmd);
        }

        try
        {
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            throw new SnapshotException($"a sequence of the source is missing on the target ({e.MessageText}): the pre-data schema was not restored completely", e);
        }

        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }
}
