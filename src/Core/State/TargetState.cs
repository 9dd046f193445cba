using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Errors;
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
/// <item>A barrier with <c>purpose</c> = <c>cutover</c> is the cutover's drain: it is written with
/// <c>cut_lsn</c> set (the source is fenced, nothing commits after it), and the applier, having reached
/// it, waits while the cutover's session (<c>holder_pid</c>) lives and the row is not released. Released
/// with <c>outcome</c> = <c>switched</c>, the applier stops for good: the application now writes to the
/// target.</item>
/// <item><c>verification</c> — one row per finished verifier pass (and one written by a cutover for the
/// reverse direction): when, whether clean, and per-table change fingerprints taken just before its cut
/// (<see cref="TableFingerprints"/>), so a cutover knows which tables changed since.</item>
/// <item><c>cutover</c> — one row per cutover or rollback attempt, with its outcome and measured outage.</item>
/// <item><c>disabled_triggers</c> — user triggers the applier disabled on the target because its role
/// may not set <c>session_replication_role = replica</c> (managed servers): they would fire a second
/// time for changes the source's own triggers already made. <c>enabled_mode</c> is the trigger's
/// <c>pg_trigger.tgenabled</c> before (<c>O</c> origin, <c>A</c> always, <c>R</c> replica; NULL in rows
/// recorded before it was kept: <c>O</c>). The cutover enables them again as they were
/// (<see cref="RestoreTriggersAsync"/>).</item>
/// <item><c>snapshot_events</c> — the slot's initial snapshot was published to Kafka as <c>op: r</c>
/// records (<c>Buffer:Kafka:PublishSnapshot</c>): not again at the next start.</item>
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
        ALTER TABLE replicator.barrier ADD COLUMN IF NOT EXISTS purpose text NOT NULL DEFAULT 'verify';
        ALTER TABLE replicator.barrier ADD COLUMN IF NOT EXISTS holder_pid integer;
        ALTER TABLE replicator.barrier ADD COLUMN IF NOT EXISTS outcome text;
        CREATE TABLE IF NOT EXISTS replicator.verification (
            id                 bigserial PRIMARY KEY,
            slot_name          text NOT NULL,
            kind               text NOT NULL,
            started_at         timestamptz NOT NULL,
            finished_at        timestamptz NOT NULL,
            cut_lsn            pg_lsn,
            clean              boolean NOT NULL,
            tables             integer NOT NULL,
            rows_checked       bigint NOT NULL,
            row_differences    bigint NOT NULL,
            schema_differences integer NOT NULL,
            fingerprints       jsonb);
        CREATE TABLE IF NOT EXISTS replicator.cutover (
            id          bigserial PRIMARY KEY,
            slot_name   text NOT NULL,
            direction   text NOT NULL,
            started_at  timestamptz NOT NULL,
            finished_at timestamptz,
            fence_lsn   pg_lsn,
            outcome     text,
            outage_ms   double precision,
            report      jsonb);
        CREATE TABLE IF NOT EXISTS replicator.disabled_triggers (
            schema_name  text NOT NULL,
            table_name   text NOT NULL,
            trigger_name text NOT NULL,
            disabled_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (schema_name, table_name, trigger_name));
        ALTER TABLE replicator.disabled_triggers ADD COLUMN IF NOT EXISTS enabled_mode text;
        CREATE TABLE IF NOT EXISTS replicator.snapshot_events (
            slot_name    text PRIMARY KEY,
            records      bigint NOT NULL,
            published_at timestamptz NOT NULL DEFAULT clock_timestamp());
        """;

    /// <summary>Creates the schema and tables if missing (idempotent; concurrent callers are safe).</summary>
    public static Task EnsureAsync(NpgsqlConnection target, CancellationToken cancellationToken) =>
        EnsureAsync(target, CreateSql, cancellationToken);

    /// <summary>
    /// Runs idempotent DDL for tables in the <c>replicator</c> schema (this one's, or a component's own),
    /// serialised with every other caller: two processes creating the schema at once would race on the catalog.
    /// </summary>
    public static async Task EnsureAsync(NpgsqlConnection target, string createSql, CancellationToken cancellationToken)
    {
        await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        // Two processes creating the schema at once would race on the catalog: serialise them.
        await using (var lockCmd = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended('replicator.state', 0))", target, tx))
            await lockCmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await using (var cmd = new NpgsqlCommand(createSql, target, tx))
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes the applier's lock for <paramref name="slot"/> on this target, held by the session for
    /// as long as it lives: one applier per slot and target. Taken by appliers reading Kafka: the
    /// source slot keeps two embedded pipelines apart, but a second applier reading the topics would
    /// apply every transaction again.
    /// </summary>
    /// <exception cref="ReplicationException">Kind <see cref="ReplicationErrorKind.SlotInUse"/>: another session holds it (named with its pid and client).</exception>
    public static async Task LockApplierAsync(NpgsqlConnection target, string slot, CancellationToken cancellationToken)
    {
        const string key = "hashtextextended('replicator.applier:' || $1, 0)";
        await using (var take = new NpgsqlCommand($"SELECT pg_try_advisory_lock({key})", target))
        {
            take.Parameters.AddWithValue(slot);
            if ((bool)(await take.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
                return;
        }

        string holder;
        await using (var who = new NpgsqlCommand($"""
            SELECT string_agg(format('pid %s, %s from %s', a.pid, coalesce(nullif(a.application_name, ''), 'no application name'), coalesce(a.client_addr::text, 'a local socket')), '; ')
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = {key}
            """, target))
        {
            who.Parameters.AddWithValue(slot);
            holder = await who.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string ?? "a session that has just ended";
        }

        throw new ReplicationException(ReplicationErrorKind.SlotInUse,
            $"another applier is applying slot {slot} to this target ({holder}): only one may; this one waits until it stops (stop one of them if both were meant to run)");
    }

    /// <summary>
    /// Sets <c>session_replication_role = replica</c> for the session (no user triggers, no
    /// foreign-key checks or actions); false where the role may not (superusers may, and on
    /// PostgreSQL 15+ roles granted SET on it; managed servers often grant neither).
    /// </summary>
    public static async Task<bool> TrySetReplicaRoleAsync(NpgsqlConnection target, CancellationToken cancellationToken)
    {
        try
        {
            await using var cmd = new NpgsqlCommand("SET session_replication_role = replica", target);
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            return false;
        }
    }

    /// <summary>
    /// Disables every enabled user trigger on user tables and records it, so replicated changes do
    /// not fire them a second time. Returns the triggers disabled by this call.
    /// </summary>
    /// <exception cref="PostgresException">The role does not own a table (SQLSTATE 42501).</exception>
    public static async Task<IReadOnlyList<string>> DisableUserTriggersAsync(NpgsqlConnection target, CancellationToken cancellationToken)
    {
        var triggers = new List<(string Schema, string Table, string Trigger, string Mode)>();
        await using (var cmd = new NpgsqlCommand($"""
            SELECT n.nspname, c.relname, t.tgname, t.tgenabled::text
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND c.relkind IN ('r', 'p')
              AND {TableCatalog.UserSchemas}
            ORDER BY 1, 2, 3
            """, target))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                triggers.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3)));
        }

        foreach (var (schema, table, trigger, mode) in triggers)
        {
            await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (var record = new NpgsqlCommand(
                "INSERT INTO replicator.disabled_triggers (schema_name, table_name, trigger_name, enabled_mode) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", target, tx))
            {
                record.Parameters.AddWithValue(schema);
                record.Parameters.AddWithValue(table);
                record.Parameters.AddWithValue(trigger);
                record.Parameters.AddWithValue(mode);
                await record.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await using (var disable = new NpgsqlCommand($"ALTER TABLE {Sql.Identifier.Quote(schema, table)} DISABLE TRIGGER {Sql.Identifier.Quote(trigger)}", target, tx))
                await disable.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        return triggers.Select(t => $"{t.Schema}.{t.Table}: {t.Trigger}").ToList();
    }

    /// <summary>
    /// Enables again, each as it was (origin, <c>ALWAYS</c> or <c>REPLICA</c>), the triggers
    /// <see cref="DisableUserTriggersAsync"/> disabled (at cutover). Returns how many. All in one
    /// transaction: a failure part way leaves every one disabled and recorded, so an applier that
    /// resumes after the aborted cutover fires none of them.
    /// </summary>
    public static async Task<int> RestoreTriggersAsync(NpgsqlConnection target, CancellationToken cancellationToken)
    {
        await using var tx = await target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var triggers = new List<(string Schema, string Table, string Trigger, string? Mode)>();
        // Forgotten first, in the same transaction: exactly the rows read, whatever is recorded meanwhile.
        await using (var forget = new NpgsqlCommand("DELETE FROM replicator.disabled_triggers RETURNING schema_name, table_name, trigger_name, enabled_mode", target, tx))
        await using (var reader = await forget.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                triggers.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3)));
        }

        foreach (var (schema, table, trigger, mode) in triggers)
        {
            var enable = mode switch { "A" => "ENABLE ALWAYS", "R" => "ENABLE REPLICA", _ => "ENABLE" };
            await using var alter = new NpgsqlCommand($"ALTER TABLE {Sql.Identifier.Quote(schema, table)} {enable} TRIGGER {Sql.Identifier.Quote(trigger)}", target, tx);
            await alter.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return triggers.Count;
    }

    /// <summary>
    /// Lets this session write where a cutover's fence makes new sessions read-only (database-level
    /// <c>default_transaction_read_only</c>): replicator's own writers — the applier (reverse
    /// replication writes to the fenced old source), the verifier's barrier and pass records, the
    /// cutover itself — must go on through it.
    /// </summary>
    public static async Task WriteThroughFenceAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var readWrite = new NpgsqlCommand("SET default_transaction_read_only = off", connection);
        await readWrite.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Per table, the LSN of the snapshot its rows were copied at (<c>replicator.table_sync</c>) for <paramref name="slot"/>.</summary>
    public static async Task<Dictionary<TableName, NpgsqlLogSequenceNumber>> ReadSyncLsnsAsync(NpgsqlConnection target, string slot, CancellationToken cancellationToken)
    {
        var lsns = new Dictionary<TableName, NpgsqlLogSequenceNumber>();
        await using var cmd = new NpgsqlCommand("SELECT schema_name, table_name, sync_lsn FROM replicator.table_sync WHERE slot_name = $1", target);
        cmd.Parameters.AddWithValue(slot);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            lsns[new TableName(reader.GetString(0), reader.GetString(1))] = reader.GetFieldValue<NpgsqlLogSequenceNumber>(2);
        return lsns;
    }

    /// <summary>
    /// The applied position to record when a target holds a snapshot taken at a slot's consistent
    /// point: one below it. The applier skips transactions whose commit LSN is at or below its
    /// position (they are applied), but a transaction whose commit record starts exactly at the
    /// consistent point (the record right after the one that made the slot consistent) is not in
    /// the snapshot and is decoded: recorded as the consistent point itself, it was skipped and lost.
    /// Nothing commits below the consistent point that the slot would still send.
    /// </summary>
    public static NpgsqlLogSequenceNumber PositionBefore(NpgsqlLogSequenceNumber consistentPoint) =>
        consistentPoint == default ? consistentPoint : new NpgsqlLogSequenceNumber((ulong)consistentPoint - 1);

    /// <summary>
    /// The last cutover that switched the application to this database away from the source of
    /// <paramref name="slot"/> after the slot's position was last written, or null. After it,
    /// replication into this database in that direction is over: the application writes here. A
    /// position written since (a new snapshot, a reverse set-up after a rollback) starts anew.
    /// </summary>
    public static async Task<(long Id, DateTimeOffset? At)?> ReadSwitchedCutoverAsync(NpgsqlConnection target, string slot, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            """
            SELECT c.id, c.finished_at FROM replicator.cutover c
            WHERE c.slot_name = $1 AND c.outcome = 'switched'
              AND c.finished_at > coalesce((SELECT p.updated_at FROM replicator.position p WHERE p.slot_name = $1), '-infinity')
            ORDER BY c.id DESC LIMIT 1
            """, target);
        cmd.Parameters.AddWithValue(slot);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            return null;
        return (reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetFieldValue<DateTimeOffset>(1));
    }

    /// <summary>The applied position for <paramref name="slot"/>, or null when the snapshot has not finished.</summary>
    public static async Task<NpgsqlLogSequenceNumber?> ReadPositionAsync(NpgsqlConnection target, string slot, CancellationToken cancellationToken) =>
        (await ReadPositionRowAsync(target, slot, cancellationToken).ConfigureAwait(false))?.CommitLsn;

    /// <summary>The whole <c>replicator.position</c> row for <paramref name="slot"/>, or null when there is none (or no replicator schema).</summary>
    public static async Task<PositionRow?> ReadPositionRowAsync(NpgsqlConnection target, string slot, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT commit_lsn, commit_time, kafka_offsets::text, updated_at FROM replicator.position WHERE slot_name = $1", target);
        cmd.Parameters.AddWithValue(slot);
        try
        {
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                return null;
            return new PositionRow(reader.GetFieldValue<NpgsqlLogSequenceNumber>(0), reader.IsDBNull(1) ? null : reader.GetFieldValue<DateTimeOffset>(1),
                reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetFieldValue<DateTimeOffset>(3));
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName)
        {
            return null;
        }
    }
}

/// <summary>One row of <c>replicator.position</c>: the last source commit applied, when it committed on the source, the Kafka offsets consumed with it, and when it was written.</summary>
public sealed record PositionRow(NpgsqlLogSequenceNumber CommitLsn, DateTimeOffset? CommitTime, string? KafkaOffsets, DateTimeOffset UpdatedAt);
