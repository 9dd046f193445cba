using System.Globalization;
using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Sql;
using Replicator.Core.State;
using Replicator.Verifier;

namespace Replicator.Cutover;

/// <summary>
/// The checks that run before anything is changed (and all that a dry run does). Each names what it
/// saw and, when it fails, what to do.
/// </summary>
internal static class Preconditions
{
    public static async Task<List<PreconditionResult>> CheckAsync(CutoverOptions options, NpgsqlConnection from, NpgsqlConnection to, CancellationToken cancellationToken)
    {
        var results = new List<PreconditionResult>();
        var c = CultureInfo.InvariantCulture;

        // Replication has finished its snapshot and streams.
        var position = await TargetState.ReadPositionAsync(to, options.Slot, cancellationToken).ConfigureAwait(false);
        results.Add(position is { } p
            ? new("replication position", true, $"slot {options.Slot} applied through {p}")
            : new("replication position", false, $"the switch-to side has no position for slot {options.Slot}: replication has not finished its snapshot (run 'replicator run' first, or name the right --slot)"));

        await using (var slot = new NpgsqlCommand("""
            SELECT active, (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, wal_status
            FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()
            """, from))
        {
            slot.Parameters.AddWithValue(options.Slot);
            await using var reader = await slot.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                results.Add(new("slot streaming", false, $"slot {options.Slot} does not exist in this database: nothing replicates to the target"));
            }
            else
            {
                var active = reader.GetBoolean(0);
                var lag = reader.IsDBNull(1) ? long.MaxValue : reader.GetInt64(1);
                results.Add(active
                    ? new("slot streaming", true, $"slot {options.Slot} is read by a running capture")
                    : new("slot streaming", false, $"no process reads slot {options.Slot}: start 'replicator run' (or capture/apply) and wait for it to catch up"));
                results.Add(lag <= options.MaxLagBytes
                    ? new("replication lag", true, string.Create(c, $"{lag} bytes behind (limit {options.MaxLagBytes})"))
                    : new("replication lag", false, string.Create(c, $"{(lag == long.MaxValue ? "unknown" : lag.ToString(c))} bytes behind, more than {options.MaxLagBytes}: wait for the applier to catch up (or raise --max-lag)")));
            }
        }

        results.Add(await CheckVerificationAsync(options, to, cancellationToken).ConfigureAwait(false));

        await using (var longTx = new NpgsqlCommand("""
            SELECT pid, usename, coalesce(application_name, ''), extract(epoch FROM clock_timestamp() - xact_start)::float8
            FROM pg_stat_activity
            WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
              AND xact_start < clock_timestamp() - $1::interval
            ORDER BY xact_start LIMIT 5
            """, from))
        {
            longTx.Parameters.AddWithValue(options.MaxTransactionAge);
            var old = new List<string>();
            await using (var reader = await longTx.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    old.Add(string.Create(c, $"pid {reader.GetInt32(0)} ({reader.GetString(1)}{(reader.GetString(2).Length > 0 ? ", " + reader.GetString(2) : "")}) open {reader.GetDouble(3):0} s"));
            }

            await using var prepared = new NpgsqlCommand("SELECT gid FROM pg_prepared_xacts WHERE database = current_database() LIMIT 5", from);
            await using (var reader = await prepared.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    old.Add($"prepared transaction '{reader.GetString(0)}'");
            }

            results.Add(old.Count == 0
                ? new("long transactions", true, string.Create(c, $"none open longer than {options.MaxTransactionAge.TotalSeconds:0} s"))
                : new("long transactions", false, $"{string.Join("; ", old)}: let them finish (or end them: pg_terminate_backend(pid), COMMIT/ROLLBACK PREPARED), or raise --max-transaction-age"));
        }

        results.Add(await CheckTablesAsync(options, from, to, cancellationToken).ConfigureAwait(false));
        results.Add(await CheckSequencesAsync(from, to, cancellationToken).ConfigureAwait(false));
        if (options.FenceCommand is null)
            results.Add(await CheckFenceAsync(from, options, cancellationToken).ConfigureAwait(false));
        else
            results.Add(new("write fence", true, "by --fence-command (a connection pooler pause); the database itself is not fenced"));
        if (options.Reverse)
            results.Add(await CheckReverseAsync(options, to, cancellationToken).ConfigureAwait(false));
        return results;
    }

    private static async Task<PreconditionResult> CheckVerificationAsync(CutoverOptions options, NpgsqlConnection to, CancellationToken cancellationToken)
    {
        const string name = "verification";
        var c = CultureInfo.InvariantCulture;
        var last = await VerificationHistory.LastAsync(to, options.Slot, cleanOnly: false, cancellationToken).ConfigureAwait(false);
        if (options.MaxVerifyAge is not { } maxAge)
        {
            return new(name, true, last is null ? "not checked (--max-verify-age off); no pass recorded"
                : string.Create(c, $"not checked (--max-verify-age off); last pass {(last.Clean ? "clean" : "found differences")}, {last.Age.TotalMinutes:0.#} min ago"));
        }

        if (last is null)
            return new(name, false, $"no verifier pass is recorded for slot {options.Slot}: run 'replicator verify' (or 'run --verify-interval') while replication runs");
        if (!last.Clean)
            return new(name, false, string.Create(c, $"the last pass ({last.Age.TotalMinutes:0.#} min ago) found {last.RowDifferences} row and {last.SchemaDifferences} schema difference(s): fix them ('replicator verify --repair') and verify again"));
        if (last.Age > maxAge)
            return new(name, false, string.Create(c, $"the last clean pass is {last.Age.TotalMinutes:0.#} min old, older than {maxAge.TotalMinutes:0.#} min: run 'replicator verify' again (or raise --max-verify-age)"));
        return new(name, true, string.Create(c, $"clean {(last.Kind == "pass" ? "pass" : "state at the " + last.Kind)} {last.Age.TotalMinutes:0.#} min ago (pass #{last.Id})"));
    }

    private static async Task<PreconditionResult> CheckTablesAsync(CutoverOptions options, NpgsqlConnection from, NpgsqlConnection to, CancellationToken cancellationToken)
    {
        const string name = "tables streaming";
        var sourceTables = (await TableCatalog.LoadAsync(from, cancellationToken).ConfigureAwait(false)).Where(t => !t.IsPartitionedParent).ToList();
        var targetTables = (await TableCatalog.LoadAsync(to, cancellationToken).ConfigureAwait(false)).Select(t => t.DisplayName).ToHashSet(StringComparer.Ordinal);
        var published = await TableCatalog.PublishedTablesAsync(from, options.Publication, cancellationToken).ConfigureAwait(false);

        // A partition is published through its parent when publish_via_partition_root is on.
        var unpublished = sourceTables.Where(t => !published.Contains(t.TableName) && !(t.Parent is { } parent && published.Contains(parent)))
            .Select(t => t.DisplayName).ToList();
        var missing = sourceTables.Where(t => !targetTables.Contains(t.DisplayName)).Select(t => t.DisplayName).ToList();
        if (unpublished.Count == 0 && missing.Count == 0)
            return new(name, true, $"all {sourceTables.Count} table(s) are in publication {options.Publication} and on the target");
        var problems = new List<string>();
        if (unpublished.Count > 0)
            problems.Add($"not in publication {options.Publication} (their changes are not replicated): {Few(unpublished)} — ALTER PUBLICATION … ADD TABLE, then copy them");
        if (missing.Count > 0)
            problems.Add($"missing on the target: {Few(missing)} — create and copy them (replicator snapshot)");
        return new(name, false, string.Join("; ", problems));
    }

    internal static async Task<PreconditionResult> CheckSequencesAsync(NpgsqlConnection from, NpgsqlConnection to, CancellationToken cancellationToken)
    {
        var sourceSequences = await SequenceSync.ListAsync(from, "SELECT", cancellationToken).ConfigureAwait(false);
        var targetSequences = await SequenceSync.ListAsync(to, "UPDATE", cancellationToken).ConfigureAwait(false);
        var missing = sourceSequences.Keys.Where(s => !targetSequences.ContainsKey(s)).Order(StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
            return new("sequences", false, $"missing on the target: {Few(missing)} — create them (CREATE SEQUENCE …) so the cutover can set them");
        var unreadable = sourceSequences.Where(s => !s.Value).Select(s => s.Key).Order(StringComparer.Ordinal).ToList();
        if (unreadable.Count > 0)
            return new("sequences", false, $"the cutover's role may not read {Few(unreadable)} on the side being left: GRANT SELECT ON SEQUENCE … TO it (and USAGE on their schemas), or connect as the owner");
        var denied = targetSequences.Where(s => !s.Value).Select(s => s.Key).Order(StringComparer.Ordinal).ToList();
        return denied.Count == 0
            ? new("sequences", true, $"all {sourceSequences.Count} sequence(s) exist on the target and may be set")
            : new("sequences", false, $"the target role may not set {Few(denied)}: GRANT UPDATE ON SEQUENCE … TO it, or connect as the owner");
    }

    private static async Task<PreconditionResult> CheckFenceAsync(NpgsqlConnection from, CutoverOptions options, CancellationToken cancellationToken)
    {
        const string name = "write fence";
        await using var cmd = new NpgsqlCommand("""
            SELECT r.rolsuper OR pg_has_role(current_user, d.datdba, 'MEMBER'),
                   r.rolsuper OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'),
                   current_database(),
                   r.rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
            FROM pg_database d, pg_roles r
            WHERE d.datname = current_database() AND r.rolname = current_user
            """, from);
        bool owner, signal, seeAll;
        string database;
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            (owner, signal, database, seeAll) = (reader.GetBoolean(0), reader.GetBoolean(1), reader.GetString(2), reader.GetBoolean(3));
        }

        if (await WriteFence.IsDatabaseFencedAsync(from, cancellationToken).ConfigureAwait(false))
            return new(name, false, $"database {database} is already read-only for new sessions (default_transaction_read_only = on): an earlier cutover switched away from it. Lift it (ALTER DATABASE … RESET default_transaction_read_only) only if this side is really the live one");
        if (!owner)
            return new(name, false, $"the cutover's role may not ALTER DATABASE {database} (it must own it): connect as the owner, or fence through your connection pooler with --fence-command/--unfence-command");
        if (!signal)
            return new(name, false, "the cutover's role may not end other sessions: GRANT pg_signal_backend TO it, or fence through your connection pooler with --fence-command");
        // Other roles' sessions show no backend type or state without it: they would be neither
        // told from walsenders nor ended.
        if (!seeAll)
            return new(name, false, "the cutover's role may not see other roles' sessions, so it could not end them: GRANT pg_read_all_stats TO it, or fence through your connection pooler with --fence-command");

        // The fence is the database's default: a role's own setting wins over it, and a
        // subscription's apply worker is not a client session that the fence ends.
        var bypass = new List<string>();
        // Per role that may log in (settings are not inherited), its own setting for this database
        // wins over its setting for all databases; the roles of --allow-role stay anyway.
        await using (var roles = new NpgsqlCommand("""
            SELECT r.rolname, s.setdatabase <> 0
            FROM pg_roles r
            CROSS JOIN LATERAL (
              SELECT d.setdatabase, split_part(c, '=', 2) AS value
              FROM pg_db_role_setting d CROSS JOIN LATERAL unnest(d.setconfig) c
              WHERE d.setrole = r.oid AND d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
                AND split_part(c, '=', 1) = 'default_transaction_read_only'
              ORDER BY d.setdatabase DESC LIMIT 1) s
            WHERE r.rolcanlogin AND NOT (r.rolname = ANY ($1))
              AND lower(s.value) ~ '^(of|off|f|fa|fal|fals|false|n|no|0)$'
            ORDER BY 1
            """, from))
        {
            roles.Parameters.Add(new NpgsqlParameter { Value = options.AllowRoles.ToArray(), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text });
            await using var reader = await roles.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var role = Identifier.Quote(reader.GetString(0));
                bypass.Add($"role {role} sets default_transaction_read_only = off, so its new sessions would write through the fence and their writes would be lost: ALTER ROLE {role}{(reader.GetBoolean(1) ? $" IN DATABASE {Identifier.Quote(database)}" : "")} RESET default_transaction_read_only");
            }
        }

        await using (var subscriptions = new NpgsqlCommand(
            "SELECT subname FROM pg_subscription WHERE subenabled AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1", from))
        await using (var reader = await subscriptions.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var subscription = Identifier.Quote(reader.GetString(0));
                bypass.Add($"subscription {subscription} writes into {database} through the fence: ALTER SUBSCRIPTION {subscription} DISABLE for the cutover (and point its publisher at the new side)");
            }
        }

        // Only a superuser may end a superuser's session, and one begun before the fence may write.
        await using (var superusers = new NpgsqlCommand("""
            SELECT string_agg(format('pid %s (role %s)', a.pid, a.usename), ', ' ORDER BY a.pid)
            FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
            WHERE a.datname = current_database() AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
              AND r.rolsuper AND NOT (a.usename = ANY ($1)) AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            """, from))
        {
            superusers.Parameters.Add(new NpgsqlParameter { Value = options.AllowRoles.ToArray(), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text });
            if (await superusers.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string sessions)
                bypass.Add($"superuser sessions are connected to {database} ({sessions}) and the cutover's role may not end them: end them, run the cutover as a superuser, or name their roles in --allow-role if they write nothing");
        }

        if (bypass.Count > 0)
            return new(name, false, string.Join("; ", bypass));
        return new(name, true, string.Create(CultureInfo.InvariantCulture,
            $"database {database} goes read-only for new sessions; sessions still in a transaction get {options.FenceGrace.TotalMilliseconds:0} ms, then every session{(options.AllowRoles.Count > 0 ? $" except roles {string.Join(", ", options.AllowRoles)}" : "")} is ended"));
    }

    /// <summary>
    /// After the fence is marked: a prepared transaction of this database would still commit
    /// (COMMIT PREPARED is allowed in a read-only session) after the mark, where the applier never
    /// goes. The preconditions saw none; one prepared since then aborts the cutover.
    /// </summary>
    public static async Task RefusePreparedTransactionsAsync(NpgsqlConnection from, CancellationToken cancellationToken)
    {
        await using var prepared = new NpgsqlCommand(
            "SELECT gid, owner, prepared FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared LIMIT 5", from);
        var found = new List<string>();
        await using (var reader = await prepared.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                found.Add($"'{reader.GetString(0)}' of role {reader.GetString(1)}, prepared {reader.GetFieldValue<DateTimeOffset>(2):u}");
        }

        if (found.Count > 0)
            throw new CutoverException(
                $"prepared transaction(s) {string.Join("; ", found)} could still commit after the fence, and what they wrote would never reach the target: let the transaction manager finish them (or COMMIT PREPARED / ROLLBACK PREPARED '<gid>') and run the cutover again",
                true);
    }

    private static async Task<PreconditionResult> CheckReverseAsync(CutoverOptions options, NpgsqlConnection to, CancellationToken cancellationToken)
    {
        const string name = "reverse replication";
        await using var cmd = new NpgsqlCommand("""
            SELECT current_setting('wal_level'),
                   (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                   (current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots))::int,
                   EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)
            """, to);
        cmd.Parameters.AddWithValue(options.ReverseSlot);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        if (reader.GetString(0) != "logical")
            return new(name, false, $"the target has wal_level = {reader.GetString(0)}: set wal_level = logical there (restart; on Azure: server parameter wal_level) to replicate back");
        if (!reader.GetBoolean(1))
            return new(name, false, "the target role lacks REPLICATION: ALTER ROLE … REPLICATION (Azure: the admin role has it)");
        if (reader.GetInt32(2) < 1)
            return new(name, false, "the target has no free replication slot: raise max_replication_slots or drop an unused slot");
        if (reader.GetBoolean(3))
            return new(name, false, $"slot {options.ReverseSlot} already exists on the target: drop it (SELECT pg_drop_replication_slot('{options.ReverseSlot}')) or choose --reverse-slot");
        return new(name, true, $"slot {options.ReverseSlot} will be created on the target before it takes writes");
    }

    private static string Few(IReadOnlyList<string> names) =>
        names.Count <= 5 ? string.Join(", ", names) : string.Join(", ", names.Take(5)) + $" and {names.Count - 5} more";
}
