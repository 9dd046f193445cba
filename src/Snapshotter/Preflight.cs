using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Core.Sql;

namespace Replicator.Snapshotter;

/// <summary>A check that failed: what, why, and the exact fix.</summary>
public sealed record PreflightProblem(string Object, string Problem, string Fix)
{
    public override string ToString() => $"{Object}: {Problem}. Fix: {Fix}";
}

/// <summary>Everything preflight learned; <see cref="Ok"/> when nothing stops a snapshot.</summary>
public sealed record PreflightReport(
    IReadOnlyList<PreflightProblem> Problems,
    IReadOnlyList<string> Notes,
    int SourceMajorVersion,
    PgTools? Tools,
    bool Resume,
    bool AlreadyComplete)
{
    public bool Ok => Problems.Count == 0;
}

/// <summary>Preflight found problems; nothing was changed on either side.</summary>
public sealed class PreflightException(PreflightReport report)
    : Exception("preflight found problems:\n" + string.Join("\n", report.Problems.Select(p => "  - " + p)))
{
    public PreflightReport Report { get; } = report;
}

/// <summary>
/// Read-only checks before anything is created, so a failing snapshot is never half done. Checks,
/// in order: (a) both servers reachable and the credentials accepted; (b) the source is
/// PostgreSQL 10 or newer with <c>wal_level=logical</c>; (c) the role may replicate; (d) a free
/// replication slot and WAL sender; (e) a pg_dump not older than the source server; (f) the target
/// database exists, is not older than the source, and holds none of the source's tables (unless
/// this is a resume of the same slot); (g) the slot is either absent or ours to resume; (h) every
/// table whose updates and deletes the publication carries has a replica identity, because
/// without one the APPLICATION's UPDATE and DELETE statements fail on the source once the table
/// is published; (i) large objects, which logical replication does not carry, are reported.
/// </summary>
public static class Preflight
{
    public static async Task<PreflightReport> RunAsync(ReplicatorOptions options, ConnectionInfo source, ConnectionInfo target, bool noSlot, CancellationToken cancellationToken)
    {
        var problems = new List<PreflightProblem>();
        var notes = new List<string>();
        var slot = options.SlotName;

        List<PreflightProblem> sourceProblems = [], targetProblems = [];
        var sourceTask = ConnectAsync(source, "source", sourceProblems, cancellationToken);
        var targetTask = ConnectAsync(target, "target", targetProblems, cancellationToken);
        await using var src = await sourceTask.ConfigureAwait(false);
        await using var tgt = await targetTask.ConfigureAwait(false);
        problems.AddRange(sourceProblems);
        problems.AddRange(targetProblems);
        if (src is null || tgt is null)
            return new PreflightReport(problems, notes, 0, null, false, false);

        var s = await ReadSourceAsync(src, slot, cancellationToken).ConfigureAwait(false);
        // Finding pg_dump runs programs: let it overlap the catalog queries below.
        var toolsTask = Task.Run(() => (Tools: PgTools.Find(s.VersionNum / 10000, out var problem, out var fix), Problem: problem, Fix: fix), cancellationToken);
        var sourceName = $"source {source}";
        if (s.VersionNum < 100000)
            problems.Add(new(sourceName, $"server version {s.Version} is too old (logical replication needs PostgreSQL 10 or newer)", "upgrade the source to a supported PostgreSQL version"));
        if (!noSlot && s.WalLevel != "logical")
            problems.Add(new(sourceName, $"wal_level is '{s.WalLevel}', logical decoding needs 'logical'",
                "run ALTER SYSTEM SET wal_level = logical; and restart the server (Azure/RDS: set the server parameter wal_level or rds.logical_replication and restart)"));
        if (!noSlot && !s.Superuser && !s.Replication)
            problems.Add(new($"role {s.User} on the source", "has neither REPLICATION nor SUPERUSER and cannot create a replication slot",
                $"ALTER ROLE {Identifier.Quote(s.User)} WITH REPLICATION; (Azure: GRANT azure_pg_admin and ALTER ROLE … WITH REPLICATION)"));

        var resumeRun = await SnapshotState.LoadRunAsync(tgt, slot, cancellationToken).ConfigureAwait(false);
        var complete = await Replicator.Core.State.TargetState.ReadPositionAsync(tgt, slot, cancellationToken).ConfigureAwait(false) is not null;
        var resume = !noSlot && resumeRun is not null && !complete;
        if (complete)
            notes.Add($"the target already has a finished snapshot for slot {slot}: nothing to copy");

        if (!noSlot && !complete)
        {
            // A fresh run needs one slot and one WAL sender; a resume needs a temporary slot (and sender) for its new snapshot.
            if (s.MaxSlots - s.UsedSlots < 1)
                problems.Add(new(sourceName, $"all {s.MaxSlots} replication slots are in use (max_replication_slots)",
                    "drop an unused slot (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots and restart"));
            if (s.MaxWalSenders - s.UsedWalSenders < 1)
                problems.Add(new(sourceName, $"all {s.MaxWalSenders} WAL senders are busy (max_wal_senders)", "raise max_wal_senders and restart, or stop another replication client"));
            if (s.SlotExists && resumeRun is null)
                problems.Add(new($"replication slot {slot} on the source", "already exists, but the target has no snapshot progress for it (another replication, or a copy that never got going)",
                    $"choose another slot name (--slot), or if it is stale drop it on the source: SELECT pg_drop_replication_slot('{slot.Replace("'", "''", StringComparison.Ordinal)}');"));
            if (s.SlotExists && s.SlotPlugin != "pgoutput")
                problems.Add(new($"replication slot {slot} on the source", $"uses output plugin {s.SlotPlugin}, not pgoutput", "choose another slot name (--slot)"));
            if (resumeRun is not null && !s.SlotExists)
                problems.Add(new($"replication slot {slot} on the source", "is gone, so the interrupted snapshot on the target cannot resume (the changes since it started are lost)",
                    "start again: recreate the target database (or drop the copied schemas and schema replicator) and rerun"));
        }

        PgTools? tools = null;
        if (s.VersionNum >= 100000)
        {
            (tools, var toolProblem, var toolFix) = await toolsTask.ConfigureAwait(false);
            if (tools is null)
                problems.Add(new("pg_dump", toolProblem!, toolFix!));
        }

        var targetVersion = await ScalarAsync<string>(tgt, "SELECT current_setting('server_version_num')", cancellationToken).ConfigureAwait(false);
        if (int.Parse(targetVersion, System.Globalization.CultureInfo.InvariantCulture) / 10000 < s.VersionNum / 10000)
            problems.Add(new($"target {target}", $"runs PostgreSQL {int.Parse(targetVersion, System.Globalization.CultureInfo.InvariantCulture) / 10000}, older than the source's {s.VersionNum / 10000}; a schema dump may not restore",
                "use a target server of the same or a newer major version"));

        var tables = await TableCatalog.LoadAsync(src, cancellationToken).ConfigureAwait(false);
        if (!resume && !complete)
        {
            var existing = await ExistingTablesAsync(tgt, tables, cancellationToken).ConfigureAwait(false);
            if (existing.Count > 0)
                problems.Add(new($"target {target}", $"already has {existing.Count} of the source's tables ({string.Join(", ", existing.Take(10))}{(existing.Count > 10 ? ", …" : "")})",
                    "copy into an empty database: drop those tables or create a new target database"));
            if (noSlot && resumeRun is not null)
                problems.Add(new($"target {target}", "holds an interrupted snapshot for slot " + slot, "rerun without --no-slot to resume it, or start over on an empty target"));
        }

        if (!noSlot && !complete)
            problems.AddRange(await MissingReplicaIdentityAsync(src, options.PublicationName, tables, cancellationToken).ConfigureAwait(false));

        problems.AddRange(await MissingExtensionsAsync(src, tgt, target, cancellationToken).ConfigureAwait(false));

        var largeObjects = await ScalarAsync<long>(src, "SELECT count(*) FROM pg_largeobject_metadata", cancellationToken).ConfigureAwait(false);
        if (largeObjects > 0)
            notes.Add($"the source has {largeObjects} large objects (pg_largeobject): neither the snapshot nor logical replication copies them; move them separately (pg_dump --large-objects) or store them as bytea");

        return new PreflightReport(problems, notes, s.VersionNum / 10000, tools, resume, complete);
    }

    private static async Task<NpgsqlConnection?> ConnectAsync(ConnectionInfo info, string role, List<PreflightProblem> problems, CancellationToken cancellationToken)
    {
        var conn = new NpgsqlConnection(info.ToNpgsqlConnectionString(b => b.Pooling = false));
        try
        {
            await conn.OpenAsync(cancellationToken).ConfigureAwait(false);
            return conn;
        }
        catch (PostgresException e) when (PostgresErrors.IsAuthentication(e))
        {
            problems.Add(new($"{role} {info}", $"authentication failed ({e.SqlState}: {e.MessageText})",
                $"check the user and password ({(role == "source" ? "Source" : "Target")}:Password, --{role}-password-file or the connection string) and pg_hba.conf on the server"));
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidCatalogName)
        {
            problems.Add(new($"{role} {info}", $"database {info.Database} does not exist",
                role == "target" ? $"create it first: CREATE DATABASE {Identifier.Quote(info.Database)};" : "check the database name in the source connection string"));
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or System.Net.Sockets.SocketException)
        {
            problems.Add(new($"{role} {info}", $"cannot connect ({e.Message})", "check host and port, that the server runs, and that it accepts connections from here (listen_addresses, firewall)"));
        }

        await conn.DisposeAsync().ConfigureAwait(false);
        return null;
    }

    private sealed record SourceFacts(int VersionNum, string Version, string WalLevel, string User, bool Superuser, bool Replication,
        int MaxSlots, long UsedSlots, int MaxWalSenders, long UsedWalSenders, bool SlotExists, string? SlotPlugin);

    private static async Task<SourceFacts> ReadSourceAsync(NpgsqlConnection src, string slot, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT current_setting('server_version_num')::int, current_setting('server_version'), current_setting('wal_level'),
                   current_user::text, r.rolsuper, r.rolreplication,
                   current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots),
                   current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'),
                   (SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1)
            FROM pg_roles r WHERE r.rolname = current_user
            """, src);
        cmd.Parameters.AddWithValue(slot);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new SourceFacts(reader.GetInt32(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetBoolean(4), reader.GetBoolean(5),
            reader.GetInt32(6), reader.GetInt64(7), reader.GetInt32(8), reader.GetInt64(9), !reader.IsDBNull(10), reader.IsDBNull(10) ? null : reader.GetString(10));
    }

    private static async Task<List<string>> ExistingTablesAsync(NpgsqlConnection tgt, IReadOnlyList<TableInfo> tables, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN unnest($1::text[], $2::text[]) AS s(schema_name, table_name) ON s.schema_name = n.nspname AND s.table_name = c.relname
            WHERE c.relkind IN ('r', 'p') ORDER BY 1
            """, tgt);
        cmd.Parameters.AddWithValue(tables.Select(t => t.Schema).ToArray());
        cmd.Parameters.AddWithValue(tables.Select(t => t.Name).ToArray());
        var names = new List<string>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            names.Add(reader.GetString(0));
        return names;
    }

    /// <summary>
    /// Tables the publication will carry UPDATE/DELETE for that have no replica identity. The
    /// publication may not exist yet: then it will be created for every table, publishing all
    /// operations.
    /// </summary>
    private static async Task<List<PreflightProblem>> MissingReplicaIdentityAsync(NpgsqlConnection src, string publication, IReadOnlyList<TableInfo> tables, CancellationToken cancellationToken)
    {
        IEnumerable<TableInfo> published = tables;
        await using (var cmd = new NpgsqlCommand("SELECT pubupdate OR pubdelete FROM pg_publication WHERE pubname = $1", src))
        {
            cmd.Parameters.AddWithValue(publication);
            var carriesUpdates = await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            if (carriesUpdates is false)
                return [];
            if (carriesUpdates is true)
            {
                var members = await TableCatalog.PublishedTablesAsync(src, publication, cancellationToken).ConfigureAwait(false);
                published = tables.Where(t => members.Contains(t.TableName) || (t.Parent is { } p && members.Contains(p)));
            }
        }

        var missing = published
            .Where(t => !t.IsPartitionedParent && (t.ReplicaIdentity == 'n' || (t.ReplicaIdentity == 'd' && t.PrimaryKey.Count == 0)))
            .ToList();
        if (missing.Count == 0)
            return [];
        return
        [
            new PreflightProblem(
                $"{missing.Count} table(s) without a replica identity ({string.Join(", ", missing.Select(t => t.DisplayName))})",
                $"once publication {publication} publishes them, the application's UPDATE and DELETE statements on them FAIL on the source (\"cannot update table because it does not have a replica identity and publishes updates\")",
                "give each a primary key, or run: " + string.Join(" ", missing.Select(t => $"ALTER TABLE {t.QuotedName} REPLICA IDENTITY FULL;"))),
        ];
    }

    /// <summary>Extensions the source uses that the target server cannot create (pre-data would fail on CREATE EXTENSION).</summary>
    private static async Task<List<PreflightProblem>> MissingExtensionsAsync(NpgsqlConnection src, NpgsqlConnection tgt, ConnectionInfo target, CancellationToken cancellationToken)
    {
        var used = new List<string>();
        await using (var cmd = new NpgsqlCommand("SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1", src))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                used.Add(reader.GetString(0));
        }

        if (used.Count == 0)
            return [];
        var missing = new List<string>();
        await using (var cmd = new NpgsqlCommand("SELECT e FROM unnest($1::text[]) e WHERE NOT EXISTS (SELECT 1 FROM pg_available_extensions a WHERE a.name = e) ORDER BY 1", tgt))
        {
            cmd.Parameters.AddWithValue(used.ToArray());
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                missing.Add(reader.GetString(0));
        }

        return missing.Count == 0
            ? []
            : [new PreflightProblem($"target {target}", $"cannot create extension(s) the source uses: {string.Join(", ", missing)}",
                "install them on the target server (Debian: the postgresql-<version>-<extension> package; Azure: add them to the azure.extensions server parameter)")];
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection conn, string sql, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(sql, conn);
        return (T)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }
}
