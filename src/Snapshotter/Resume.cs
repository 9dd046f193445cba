using Npgsql;
using Replicator.Core.State;
using NpgsqlTypes;
using Replicator.Core.Catalog;

namespace Replicator.Snapshotter;

/// <summary>The run's row in <c>replicator.snapshot_run</c>.</summary>
/// <param name="ConsistentLsn">The slot's consistent point C1: where streaming starts.</param>
public sealed record SnapshotRun(string SlotName, NpgsqlLogSequenceNumber ConsistentLsn, bool PreDataDone);

/// <summary>
/// Per-chunk progress on the target, in the <c>replicator</c> schema, which is what makes a killed
/// snapshot resumable. Why a rerun can trust it:
/// <list type="number">
/// <item>A chunk's rows and its "done" mark are committed in ONE target transaction
/// (<see cref="CopyWorker"/>): a kill leaves either both or neither, so a half-done chunk is
/// cleared by the rollback itself and simply copied again.</item>
/// <item>Pre-data is restored in one transaction together with <c>pre_data_done</c>; each
/// post-data entry (an index, a constraint…) in one transaction with its row in
/// <c>snapshot_postdata</c>.</item>
/// <item>A rerun copies the unfinished chunks from a NEW snapshot C2. Done chunks of an
/// integer-key-ranged table stay (their ranges are disjoint by key, so rows from C1 and C2 cannot
/// meet twice; <c>table_sync.sync_lsn = C2</c> makes the applier replay (C1, C2] idempotently).
/// Any other table with unfinished chunks (no key, or split by ctid, where a row that moved
/// between pages could be copied twice) is truncated and copied whole from C2.</item>
/// </list>
/// </summary>
public sealed class SnapshotState(NpgsqlConnection target, string slotName)
{
    public const string CreateSql = """
        CREATE SCHEMA IF NOT EXISTS replicator;
        CREATE TABLE IF NOT EXISTS replicator.snapshot_run (
            slot_name      text PRIMARY KEY,
            consistent_lsn pg_lsn NOT NULL,
            pre_data_done  boolean NOT NULL DEFAULT false,
            started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at    timestamptz);
        CREATE TABLE IF NOT EXISTS replicator.snapshot_chunk (
            slot_name   text NOT NULL,
            schema_name text NOT NULL,
            table_name  text NOT NULL,
            chunk_no    integer NOT NULL,
            kind        text NOT NULL CHECK (kind IN ('whole', 'key', 'ctid')),
            lower_bound bigint,
            upper_bound bigint,
            done_lsn    pg_lsn,
            rows_copied bigint,
            bytes_copied bigint,
            done_at     timestamptz,
            PRIMARY KEY (slot_name, schema_name, table_name, chunk_no));
        CREATE TABLE IF NOT EXISTS replicator.snapshot_postdata (
            slot_name text NOT NULL,
            entry     text NOT NULL,
            done_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (slot_name, entry));
        """;

    public string SlotName { get; } = slotName;

    public static Task EnsureAsync(NpgsqlConnection target, CancellationToken cancellationToken) =>
        TargetState.EnsureAsync(target, CreateSql, cancellationToken);

    /// <summary>The run for a slot, or null (also when the schema does not exist yet).</summary>
    public static async Task<SnapshotRun?> LoadRunAsync(NpgsqlConnection target, string slotName, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("SELECT consistent_lsn, pre_data_done FROM replicator.snapshot_run WHERE slot_name = $1", target);
        cmd.Parameters.AddWithValue(slotName);
        try
        {
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
                ? new SnapshotRun(slotName, reader.GetFieldValue<NpgsqlLogSequenceNumber>(0), reader.GetBoolean(1))
                : null;
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName)
        {
            return null;
        }
    }

    /// <summary>Records a fresh run and its whole chunk plan in one transaction.</summary>
    public async Task StartRunAsync(NpgsqlLogSequenceNumber consistentLsn, IReadOnlyList<Chunk> plan, CancellationToken cancellationToken)
    {
        await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var cmd = new NpgsqlCommand("INSERT INTO replicator.snapshot_run (slot_name, consistent_lsn) VALUES ($1, $2)", target, tx))
        {
            cmd.Parameters.AddWithValue(SlotName);
            cmd.Parameters.Add(Lsn(consistentLsn));
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await InsertChunksAsync(plan, tx, cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task InsertChunksAsync(IEnumerable<Chunk> chunks, NpgsqlTransaction tx, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(target, tx);
        foreach (var c in chunks)
        {
            var cmd = new NpgsqlBatchCommand(
                "INSERT INTO replicator.snapshot_chunk (slot_name, schema_name, table_name, chunk_no, kind, lower_bound, upper_bound) VALUES ($1, $2, $3, $4, $5, $6, $7)");
            cmd.Parameters.AddWithValue(SlotName);
            cmd.Parameters.AddWithValue(c.Table.Schema);
            cmd.Parameters.AddWithValue(c.Table.Name);
            cmd.Parameters.AddWithValue(c.Number);
            cmd.Parameters.AddWithValue(c.KindName);
            cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)c.Lower ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)c.Upper ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            batch.BatchCommands.Add(cmd);
        }

        if (batch.BatchCommands.Count > 0)
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await batch.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Every chunk of the run with its state, in plan order.</summary>
    public async Task<List<ChunkState>> LoadChunksAsync(IReadOnlyDictionary<TableName, TableInfo> tables, CancellationToken cancellationToken)
    {
        var result = new List<ChunkState>();
        await using var cmd = new NpgsqlCommand("""
            SELECT schema_name, table_name, chunk_no, kind, lower_bound, upper_bound, done_lsn, rows_copied, bytes_copied
            FROM replicator.snapshot_chunk WHERE slot_name = $1 ORDER BY schema_name, table_name, chunk_no
            """, target);
        cmd.Parameters.AddWithValue(SlotName);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var name = new TableName(reader.GetString(0), reader.GetString(1));
            if (!tables.TryGetValue(name, out var table))
                throw new SnapshotException($"table {name} is in the snapshot progress on the target but no longer on the source: the source changed during an interrupted snapshot; start again on an empty target (drop the copied objects and schema replicator) with a new slot");
            var chunk = new Chunk(table, reader.GetInt32(2), Chunk.ParseKind(reader.GetString(3)),
                reader.IsDBNull(4) ? null : reader.GetInt64(4), reader.IsDBNull(5) ? null : reader.GetInt64(5));
            result.Add(new ChunkState(chunk,
                reader.IsDBNull(6) ? null : reader.GetFieldValue<NpgsqlLogSequenceNumber>(6),
                reader.IsDBNull(7) ? 0 : reader.GetInt64(7), reader.IsDBNull(8) ? 0 : reader.GetInt64(8)));
        }

        return result;
    }

    /// <summary>
    /// Forgets the progress of <paramref name="table"/> and empties it on the target, in one
    /// transaction, so it can be copied whole from the new snapshot. A table that foreign keys
    /// created before the data point at cannot be truncated: its rows are deleted without firing
    /// the keys' actions (the referencing rows are snapshot rows too, replayed by replication).
    /// </summary>
    public async Task ResetTableAsync(TableInfo table, CancellationToken cancellationToken)
    {
        await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await tx.SaveAsync("reset", cancellationToken).ConfigureAwait(false);
        try
        {
            await using var truncate = new NpgsqlCommand($"TRUNCATE ONLY {table.QuotedName}", target, tx);
            await truncate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.FeatureNotSupported)
        {
            await tx.RollbackAsync("reset", cancellationToken).ConfigureAwait(false);
            await using var delete = new NpgsqlCommand($"SET LOCAL session_replication_role = replica; DELETE FROM ONLY {table.QuotedName}", target, tx);
            await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await using (var cmd = new NpgsqlCommand("""
            UPDATE replicator.snapshot_chunk SET done_lsn = NULL, rows_copied = NULL, bytes_copied = NULL, done_at = NULL
            WHERE slot_name = $1 AND schema_name = $2 AND table_name = $3
            """, target, tx))
        {
            cmd.Parameters.AddWithValue(SlotName);
            cmd.Parameters.AddWithValue(table.Schema);
            cmd.Parameters.AddWithValue(table.Name);
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The "chunk done" command, to run in the chunk's own copy transaction.</summary>
    public static NpgsqlCommand MarkChunkDoneCommand(NpgsqlConnection connection, string slotName, Chunk chunk, NpgsqlLogSequenceNumber lsn, long rows, long bytes)
    {
        var cmd = new NpgsqlCommand("""
            UPDATE replicator.snapshot_chunk SET done_lsn = $5, rows_copied = $6, bytes_copied = $7, done_at = clock_timestamp()
            WHERE slot_name = $1 AND schema_name = $2 AND table_name = $3 AND chunk_no = $4
            """, connection);
        cmd.Parameters.AddWithValue(slotName);
        cmd.Parameters.AddWithValue(chunk.Table.Schema);
        cmd.Parameters.AddWithValue(chunk.Table.Name);
        cmd.Parameters.AddWithValue(chunk.Number);
        cmd.Parameters.Add(Lsn(lsn));
        cmd.Parameters.AddWithValue(rows);
        cmd.Parameters.AddWithValue(bytes);
        return cmd;
    }

    private static NpgsqlParameter Lsn(NpgsqlLogSequenceNumber lsn) => new() { Value = lsn, NpgsqlDbType = NpgsqlDbType.PgLsn };

    public async Task<HashSet<string>> LoadPostDataDoneAsync(CancellationToken cancellationToken)
    {
        var done = new HashSet<string>(StringComparer.Ordinal);
        await using var cmd = new NpgsqlCommand("SELECT entry FROM replicator.snapshot_postdata WHERE slot_name = $1", target);
        cmd.Parameters.AddWithValue(SlotName);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            done.Add(reader.GetString(0));
        return done;
    }

    /// <summary>
    /// The hand-over to continuous replication, in ONE transaction: <c>table_sync</c> for every
    /// copied table, then the <c>position</c> row (one below the slot's consistent point: see
    /// <see cref="TargetState.PositionBefore"/>), whose presence
    /// means "snapshot done". Nothing streams before this commits.
    /// </summary>
    public async Task CompleteAsync(NpgsqlLogSequenceNumber consistentLsn, IEnumerable<(TableName Table, NpgsqlLogSequenceNumber SyncLsn)> tables, CancellationToken cancellationToken)
    {
        await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var batch = new NpgsqlBatch(target, tx);
        foreach (var (table, lsn) in tables)
        {
            var cmd = new NpgsqlBatchCommand("""
                INSERT INTO replicator.table_sync (slot_name, schema_name, table_name, sync_lsn) VALUES ($1, $2, $3, $4)
                ON CONFLICT (slot_name, schema_name, table_name) DO UPDATE SET sync_lsn = EXCLUDED.sync_lsn
                """);
            cmd.Parameters.AddWithValue(SlotName);
            cmd.Parameters.AddWithValue(table.Schema);
            cmd.Parameters.AddWithValue(table.Name);
            cmd.Parameters.Add(Lsn(lsn));
            batch.BatchCommands.Add(cmd);
        }

        var position = new NpgsqlBatchCommand("INSERT INTO replicator.position (slot_name, commit_lsn) VALUES ($1, $2)");
        position.Parameters.AddWithValue(SlotName);
        position.Parameters.Add(Lsn(TargetState.PositionBefore(consistentLsn)));
        batch.BatchCommands.Add(position);
        var finished = new NpgsqlBatchCommand("UPDATE replicator.snapshot_run SET finished_at = clock_timestamp() WHERE slot_name = $1");
        finished.Parameters.AddWithValue(SlotName);
        batch.BatchCommands.Add(finished);
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await batch.DisposeAsync().ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>A chunk and what the target knows about it.</summary>
/// <param name="DoneLsn">LSN of the snapshot it was copied from; null while not done.</param>
/// <param name="Rows">Rows read from the source (a done chunk: rows copied).</param>
/// <param name="TargetRows">Rows the target took, when known from this run; a chunk is only marked done when it equals <paramref name="Rows"/>.</param>
public sealed record ChunkState(Chunk Chunk, NpgsqlLogSequenceNumber? DoneLsn, long Rows, long Bytes, long? TargetRows = null);
