using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Configuration;
using Replicator.Core.State;

namespace Replicator.Verifier;

/// <summary>
/// Records finished full passes in <c>replicator.verification</c> on the target: the cutover's
/// precondition ("a recent clean pass") and its final verification ("what changed since") read them,
/// and so does <c>replicator status</c>.
/// </summary>
public static class VerificationHistory
{
    /// <summary>Both sides' table fingerprints, or null when this pass is not recorded.</summary>
    internal static async Task<(Dictionary<string, string> Source, Dictionary<string, string> Target)?> ReadFingerprintsAsync(
        VerifyRequest request, ConnectionInfo source, ConnectionInfo target, CancellationToken cancellationToken)
    {
        if (!request.Record || request.Tables.Count > 0)
            return null;
        var sourceTask = ReadAsync(source, cancellationToken);
        var targetTask = ReadAsync(target, cancellationToken);
        return (await sourceTask.ConfigureAwait(false), await targetTask.ConfigureAwait(false));
    }

    private static async Task<Dictionary<string, string>> ReadAsync(ConnectionInfo info, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(info.ToNpgsqlConnectionString(b => b.Pooling = false));
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await TableFingerprints.ReadAsync(connection, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes the pass when the target holds replication state (a verify of two unrelated databases leaves no trace).</summary>
    internal static async Task WriteAsync(VerifyRequest request, ConnectionInfo target, VerifyReport report,
        (Dictionary<string, string> Source, Dictionary<string, string> Target) fingerprints, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(target.ToNpgsqlConnectionString(b => b.Pooling = false));
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using (var probe = new NpgsqlCommand("SELECT to_regclass('replicator.position') IS NOT NULL", connection))
        {
            if (!(bool)(await probe.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
                return;
        }

        await TargetState.WriteThroughFenceAsync(connection, cancellationToken).ConfigureAwait(false);
        await TargetState.EnsureAsync(connection, cancellationToken).ConfigureAwait(false);
        await InsertAsync(connection, request.SlotName, "pass", report.StartedAt, report.FinishedAt,
            string.IsNullOrEmpty(report.CutLsn) ? null : NpgsqlLogSequenceNumber.Parse(report.CutLsn), report.Identical, report.Tables.Count,
            report.RowsChecked, report.RowDifferences, report.SchemaDifferences, TableFingerprints.ToJson(fingerprints.Source, fingerprints.Target),
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One row of <c>replicator.verification</c> (a pass, or a cutover's baseline for the reverse direction).</summary>
    public static async Task InsertAsync(NpgsqlConnection connection, string slot, string kind, DateTimeOffset started, DateTimeOffset finished,
        NpgsqlLogSequenceNumber? cutLsn, bool clean, int tables, long rows, long rowDifferences, int schemaDifferences, string fingerprintsJson,
        CancellationToken cancellationToken)
    {
        await using var insert = new NpgsqlCommand("""
            INSERT INTO replicator.verification (slot_name, kind, started_at, finished_at, cut_lsn, clean, tables, rows_checked, row_differences, schema_differences, fingerprints)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)
            """, connection);
        insert.Parameters.AddWithValue(slot);
        insert.Parameters.AddWithValue(kind);
        insert.Parameters.AddWithValue(started);
        insert.Parameters.AddWithValue(finished);
        insert.Parameters.Add(new NpgsqlParameter { Value = cutLsn is { } lsn ? lsn : DBNull.Value, NpgsqlDbType = NpgsqlDbType.PgLsn });
        insert.Parameters.AddWithValue(clean);
        insert.Parameters.AddWithValue(tables);
        insert.Parameters.AddWithValue(rows);
        insert.Parameters.AddWithValue(rowDifferences);
        insert.Parameters.AddWithValue(schemaDifferences);
        insert.Parameters.AddWithValue(fingerprintsJson);
        await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The latest recorded pass for <paramref name="slot"/> (only clean ones when <paramref name="cleanOnly"/>), or null.</summary>
    public static async Task<VerificationEntry?> LastAsync(NpgsqlConnection target, string slot, bool cleanOnly, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand($"""
            SELECT id, kind, finished_at, clean, row_differences, schema_differences, fingerprints::text, cut_lsn::text,
                   extract(epoch FROM clock_timestamp() - finished_at)::float8
            FROM replicator.verification WHERE slot_name = $1{(cleanOnly ? " AND clean" : "")} ORDER BY id DESC LIMIT 1
            """, target);
        cmd.Parameters.AddWithValue(slot);
        try
        {
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                return null;
            return new VerificationEntry(reader.GetInt64(0), reader.GetString(1), reader.GetFieldValue<DateTimeOffset>(2), reader.GetBoolean(3),
                reader.GetInt64(4), reader.GetInt32(5), reader.IsDBNull(6) ? null : reader.GetString(6), reader.IsDBNull(7) ? null : reader.GetString(7),
                TimeSpan.FromSeconds(reader.GetDouble(8)));
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName)
        {
            return null;
        }
    }
}

/// <summary>One row of <c>replicator.verification</c>.</summary>
public sealed record VerificationEntry(long Id, string Kind, DateTimeOffset FinishedAt, bool Clean, long RowDifferences, int SchemaDifferences,
    string? FingerprintsJson, string? CutLsn, TimeSpan Age);
