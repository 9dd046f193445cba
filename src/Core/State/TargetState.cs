using Npgsql;
using NpgsqlTypes;

namespace Replicator.Core.State;

/// <summary>
/// Replicator's own state on the target, in schema <c>replicator</c>. The tables are the contracts
/// between components that may run in different processes:
/// <list type="number">
/// <item><c>position</c> — one row per slot: commit LSN of the last source transaction applied,
/// written by the applier in the same target transaction as the changes (DESIGN invariant 2), and
/// the Kafka offsets consumed when Kafka is the buffer. The snapshotter inserts the first row
/// (the slot's consistent point) when the copy is complete: its presence means "snapshot done".</item>
/// <item><c>table_sync</c> — per table, the LSN of the snapshot its rows were copied at. A change
/// with commit LSN at or below it is already in the copied data: the applier applies it
/// idempotently when the table has a key (upsert, delete-if-present) and skips it when it has
/// none (the snapshotter recopies such a table whole on resume). Without a resume every sync LSN
/// equals the slot's consistent point, and the stream holds nothing at or below it.</item>
/// <item><c>barrier</c> — the verifier's consistent cut, in two steps so the applier cannot already
/// be past the cut: (1) the verifier inserts a row with <c>cut_lsn</c> NULL; the applier, between
/// two batches, sets <c>held_at</c> and <c>applied_lsn</c> and stops applying; (2) the verifier
/// takes its source snapshot (consistent point C, which is after everything applied) and sets
/// <c>cut_lsn</c> = C; the applier applies every transaction with commit LSN &lt; C and none at or
/// above it, then sets <c>reached_at</c> and <c>applied_lsn</c> and pauses until the verifier sets
/// <c>released_at</c> (having taken its target snapshot). Each wait lasts at most 30 s; an
/// <c>applied_lsn</c> at or above <c>cut_lsn</c> at <c>reached_at</c> means the cut was missed
/// (retry).</item>
/// </list>
/// </summary>
public static class TargetState
{
    public const string Schema = "replicator";

    public const string CreateSql = """
        CREATE SCHEMA IF NOT EXISTS replicator;
        CREATE TABLE IF NOT EXISTS replicator.position (
            slot_name     text PRIMARY KEY,
            commit_lsn    pg_lsn NOT NULL,
            commit_time   timestamptz,
            kafka_offsets jsonb,
            updated_at    timestamptz NOT NULL DEFAULT clock_timestamp());
        CREATE TABLE IF NOT EXISTS replicator.table_sync (
            slot_name   text NOT NULL,
            schema_name text NOT NULL,
            table_name  text NOT NULL,
            sync_lsn    pg_lsn NOT NULL,
            PRIMARY KEY (slot_name, schema_name, table_name));
        CREATE TABLE IF NOT EXISTS replicator.barrier (
            id           bigserial PRIMARY KEY,
            slot_name    text NOT NULL,
            cut_lsn      pg_lsn,
            requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            held_at      timestamptz,
            reached_at   timestamptz,
            applied_lsn  pg_lsn,
            released_at  timestamptz);
        """;

    /// <summary>Creates the schema and tables if missing (idempotent; concurrent callers are safe).</summary>
    public static async Task EnsureAsync(NpgsqlConnection target, CancellationToken cancellationToken)
    {
        await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        // Two processes creating the schema at once would race on the catalog: serialise them.
        await using (var lockCmd = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended('replicator.state', 0))", target, tx))
            await lockCmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await using (var cmd = new NpgsqlCommand(CreateSql, target, tx))
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The applied position for <paramref name="slot"/>, or null when the snapshot has not finished.</summary>
    public static async Task<NpgsqlLogSequenceNumber?> ReadPositionAsync(NpgsqlConnection target, string slot, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT commit_lsn FROM replicator.position WHERE slot_name = $1", target);
        cmd.Parameters.AddWithValue(slot);
        try
        {
            var value = await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return value is NpgsqlLogSequenceNumber lsn ? lsn : null;
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName)
        {
            return null;
        }
    }
}
