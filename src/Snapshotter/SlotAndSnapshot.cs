using System.Text.RegularExpressions;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Sql;

namespace Replicator.Snapshotter;

/// <summary>
/// An exported snapshot and the session that keeps it alive. The snapshot is importable with
/// <c>SET TRANSACTION SNAPSHOT</c> only while its exporting session stays open and idle, so this
/// object is held until every reader (COPY workers, pg_dump, counts) has started; disposing it
/// closes the session. A permanent slot survives that; a temporary one goes with it.
/// </summary>
public sealed class ExportedSnapshot : IAsyncDisposable
{
    private readonly IAsyncDisposable _session;

    internal ExportedSnapshot(string name, NpgsqlLogSequenceNumber lsn, IAsyncDisposable session)
    {
        SnapshotSession.ValidateName(name);
        Name = name;
        Lsn = lsn;
        _session = session;
    }

    /// <summary>The name for <c>SET TRANSACTION SNAPSHOT</c> and <c>pg_dump --snapshot</c>.</summary>
    public string Name { get; }

    /// <summary>The LSN the snapshot corresponds to: a slot's consistent point (changes after it are in the slot).</summary>
    public NpgsqlLogSequenceNumber Lsn { get; }

    public ValueTask DisposeAsync() => _session.DisposeAsync();
}

/// <summary>Publication, slot and snapshot handling on the source.</summary>
public static partial class SnapshotSession
{
    /// <summary>
    /// Creates the publication unless it exists: <c>FOR ALL TABLES</c> for a superuser, else
    /// <c>FOR TABLE</c> with every top-level table (a partitioned table publishes its partitions).
    /// This must happen BEFORE the slot is created: pgoutput decodes with the publication as of
    /// each change, so changes made before the publication existed would be lost to it.
    /// Returns true when it was created.
    /// </summary>
    public static async Task<bool> EnsurePublicationAsync(NpgsqlConnection source, string publication, IReadOnlyList<TableInfo> tables, CancellationToken cancellationToken)
    {
        await using (var exists = new NpgsqlCommand("SELECT 1 FROM pg_publication WHERE pubname = $1", source))
        {
            exists.Parameters.AddWithValue(publication);
            if (await exists.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null)
                return false;
        }

        await using var super = new NpgsqlCommand("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", source);
        var isSuperuser = (bool)(await super.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        var topLevel = tables.Where(t => t.Parent is null).ToList();
        var sql = isSuperuser
            ? $"CREATE PUBLICATION {Identifier.Quote(publication)} FOR ALL TABLES"
            : topLevel.Count == 0
                ? $"CREATE PUBLICATION {Identifier.Quote(publication)}"
                : $"CREATE PUBLICATION {Identifier.Quote(publication)} FOR TABLE {string.Join(", ", topLevel.Select(t => t.QuotedName))}";
        await using var create = new NpgsqlCommand(sql, source);
        await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// Creates a logical slot with pgoutput on a replication connection and exports its snapshot
    /// (<c>CREATE_REPLICATION_SLOT … LOGICAL pgoutput (SNAPSHOT 'export')</c>). The snapshot sees
    /// exactly the transactions committed before the slot's consistent point, and the slot streams
    /// exactly those after it: no gap, no duplicate (DESIGN invariant 1).
    /// </summary>
    public static async Task<ExportedSnapshot> CreateSlotAsync(string sourceConnectionString, string slotName, bool temporary, CancellationToken cancellationToken)
    {
        var connection = new LogicalReplicationConnection(new NpgsqlConnectionStringBuilder(sourceConnectionString) { Pooling = false }.ConnectionString);
        try
        {
            await connection.Open(cancellationToken).ConfigureAwait(false);
            var slot = await connection.CreatePgOutputReplicationSlot(slotName, temporarySlot: temporary,
                slotSnapshotInitMode: LogicalSlotSnapshotInitMode.Export, cancellationToken: cancellationToken).ConfigureAwait(false);
            return new ExportedSnapshot(slot.SnapshotName ?? throw new SnapshotException($"slot {slotName} was created without an exported snapshot"),
                slot.ConsistentPoint, connection);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// A plain exported snapshot (<c>pg_export_snapshot()</c> in an open REPEATABLE READ
    /// transaction), for a one-off copy without a slot. Its LSN is only informative.
    /// </summary>
    public static async Task<ExportedSnapshot> ExportPlainAsync(string sourceConnectionString, CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(CopyWorker.CopyConnectionString(sourceConnectionString));
        try
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using (var begin = new NpgsqlCommand("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", connection))
                await begin.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await using var cmd = new NpgsqlCommand("SELECT pg_export_snapshot(), pg_current_wal_lsn()", connection);
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            return new ExportedSnapshot(reader.GetString(0), reader.GetFieldValue<NpgsqlLogSequenceNumber>(1), connection);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Starts a REPEATABLE READ, READ ONLY transaction on <paramref name="connection"/> that sees the exported snapshot.</summary>
    public static async Task ImportAsync(NpgsqlConnection connection, string snapshotName, CancellationToken cancellationToken)
    {
        ValidateName(snapshotName);
        // SET TRANSACTION SNAPSHOT takes no parameters; the name was checked to be a server-made
        // snapshot identifier (hex digits and dashes) just above.
        await using var cmd = new NpgsqlCommand(
            $"SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{snapshotName}'",
            connection);
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    internal static void ValidateName(string snapshotName)
    {
        if (!SnapshotNamePattern().IsMatch(snapshotName))
            throw new SnapshotException($"'{snapshotName}' is not a PostgreSQL snapshot name");
    }

    [GeneratedRegex("^[0-9A-Fa-f-]+$")]
    private static partial Regex SnapshotNamePattern();
}
