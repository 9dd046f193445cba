using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Sql;

namespace Replicator.Cutover;

/// <summary>
/// Stops writes to the side being left. Database fence (default): new sessions start read-only
/// (<c>ALTER DATABASE … SET default_transaction_read_only = on</c>); idle sessions are ended at once
/// (they started before and would still write); sessions inside a transaction get a grace period to
/// commit, and are ended when they go idle or when it runs out. Walsenders, this session and the
/// allowed roles stay. Or a pooler fence: <c>--fence-command</c> (e.g. PgBouncer <c>PAUSE</c>).
/// Lifting undoes exactly what was done.
/// </summary>
internal sealed class WriteFence
{
    private readonly NpgsqlConnection _connection;
    private readonly Func<CancellationToken, Task<NpgsqlConnection>> _connect;
    private readonly CutoverOptions _options;
    private readonly string _database;
    private readonly IReadOnlyDictionary<string, string> _hookEnvironment;

    /// <summary>Set before the first change: from then on <see cref="LiftAsync"/> undoes (a lift of a fence not up changes nothing).</summary>
    private bool _started;

    private WriteFence(NpgsqlConnection connection, Func<CancellationToken, Task<NpgsqlConnection>> connect, CutoverOptions options, string database,
        IReadOnlyDictionary<string, string> hookEnvironment)
    {
        _connection = connection;
        _connect = connect;
        _options = options;
        _database = database;
        _hookEnvironment = hookEnvironment;
    }

    public int SessionsEnded { get; private set; }

    /// <summary>Other sessions of the cutover itself (the watch for writes after the fence): never ended.</summary>
    public List<int> OwnSessions { get; } = [];

    /// <summary>
    /// The fence for the database <paramref name="connection"/> is in; nothing is changed yet.
    /// <paramref name="connect"/> opens a new session there for <see cref="LiftAsync"/>.
    /// </summary>
    public static async Task<WriteFence> CreateAsync(NpgsqlConnection connection, Func<CancellationToken, Task<NpgsqlConnection>> connect, CutoverOptions options,
        IReadOnlyDictionary<string, string> hookEnvironment, CancellationToken cancellationToken)
    {
        await using var name = new NpgsqlCommand("SELECT current_database()", connection);
        var database = (string)(await name.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        return new WriteFence(connection, connect, options, database, hookEnvironment);
    }

    /// <summary>
    /// Raises the fence. Register <see cref="LiftAsync"/> as the undo before calling this: a failure
    /// part way — a fence command that fails or runs out of time after pausing the pooler, the
    /// session dropped while ending others — leaves the fence (partly) up.
    /// </summary>
    public async Task RaiseAsync(ILogger logger, CancellationToken cancellationToken)
    {
        _started = true;
        if (_options.FenceCommand is { } command)
        {
            var output = await ShellHook.RunAsync("--fence-command", command, _hookEnvironment, _options.HookTimeout, cancellationToken).ConfigureAwait(false);
            logger.LogInformation("Fence command done: {Output}", output.Trim());
            return;
        }

        await FenceDatabaseAsync(_connection, _database, cancellationToken).ConfigureAwait(false);
        await EndSessionsAsync(this, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How long after the grace period sessions from before the fence may still be there before the fence is given up.</summary>
    internal static readonly TimeSpan SessionsEndTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Ends the sessions that began before the fence — idle ones now, busy ones once idle, all of them
    /// at the end of the grace period — and returns when none is left. Sessions begun since start
    /// read-only and may stay (a pool that reconnects at once would otherwise never let the count
    /// reach zero). Sessions that cannot be ended (a superuser's, for a role that is not one) fail
    /// the fence after <see cref="SessionsEndTimeout"/>, named.
    /// </summary>
    private static async Task EndSessionsAsync(WriteFence fence, CancellationToken cancellationToken)
    {
        DateTime fencedAt;
        await using (var now = new NpgsqlCommand("SELECT clock_timestamp()", fence._connection))
            fencedAt = (DateTime)(await now.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        var grace = Stopwatch.StartNew();
        // A superuser's backend may only be ended by a superuser: asking otherwise is an error.
        await using var end = new NpgsqlCommand("""
            SELECT array_remove(array_agg(CASE WHEN (a.state IN ('idle', 'disabled') OR $2) AND (me.rolsuper OR NOT coalesce(r.rolsuper, false))
                                          THEN CASE WHEN pg_terminate_backend(a.pid) THEN a.pid END END), NULL),
                   count(*),
                   string_agg(format('pid %s (role %s%s, %s)', a.pid, a.usename, CASE WHEN r.rolsuper THEN ', superuser' ELSE '' END, coalesce(a.state, 'state unknown')), '; ' ORDER BY a.pid)
            FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
                 CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) me
            WHERE a.datname = current_database() AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() AND a.pid <> ALL ($4)
              AND NOT (a.usename = ANY ($1)) AND a.backend_start <= $3
            """, fence._connection);
        end.Parameters.Add(new NpgsqlParameter { Value = fence._options.AllowRoles.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        var all = end.Parameters.Add(new NpgsqlParameter { Value = false, NpgsqlDbType = NpgsqlDbType.Boolean });
        end.Parameters.Add(new NpgsqlParameter { Value = fencedAt, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        end.Parameters.Add(new NpgsqlParameter { Value = fence.OwnSessions.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Integer });
        var ended = new HashSet<int>();
        while (true)
        {
            all.Value = grace.Elapsed >= fence._options.FenceGrace;
            long left;
            string? which;
            await using (var reader = await end.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                ended.UnionWith(reader.IsDBNull(0) ? [] : reader.GetFieldValue<int[]>(0));
                left = reader.GetInt64(1);
                which = reader.IsDBNull(2) ? null : reader.GetString(2);
            }

            fence.SessionsEnded = ended.Count;
            if (left == 0)
                return;
            if (grace.Elapsed >= fence._options.FenceGrace + SessionsEndTimeout)
                throw new CutoverException(string.Create(CultureInfo.InvariantCulture,
                    $"{left} session(s) from before the fence could not be ended within {(fence._options.FenceGrace + SessionsEndTimeout).TotalSeconds:0.#} s: {which}. End them yourself (a superuser's only a superuser may end), run the cutover as a superuser, or name roles that write nothing in --allow-role"));
            await Task.Delay(5, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Marks the fence in the WAL and returns its position: every transaction committed before the
    /// fence has its commit record below it. The mark is a transactional logical message (or, where
    /// the role may not emit one, the current insert position) in a transaction committed with
    /// <c>synchronous_commit = on</c>, so the WAL is flushed past the mark at once: the walsender
    /// only sends flushed WAL, and would otherwise wait for the WAL writer. pgoutput sends nothing
    /// for it (messages are not requested, and a transaction without changes is skipped), but the
    /// stream's position passes it, which a heartbeat then reports.
    /// </summary>
    public async Task<NpgsqlLogSequenceNumber> MarkAsync(CancellationToken cancellationToken)
    {
        await using var tx = await _connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var sync = new NpgsqlCommand("SET LOCAL synchronous_commit = on", _connection, tx))
            await sync.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        NpgsqlLogSequenceNumber mark;
        await using (var savepoint = new NpgsqlCommand("SAVEPOINT mark", _connection, tx))
            await savepoint.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await using var emit = new NpgsqlCommand("SELECT pg_logical_emit_message(true, 'replicator.cutover', 'fence')", _connection, tx);
            mark = (NpgsqlLogSequenceNumber)(await emit.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            await using (var back = new NpgsqlCommand("ROLLBACK TO SAVEPOINT mark", _connection, tx))
                await back.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await using var insert = new NpgsqlCommand("SELECT pg_current_wal_insert_lsn() FROM (SELECT txid_current()) x", _connection, tx);
            mark = (NpgsqlLogSequenceNumber)(await insert.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return mark;
    }

    /// <summary>
    /// Lets writes in again (the cutover aborted), whatever part of the fence went up. The database
    /// fence is lifted over a new session: the abort may be this one having dropped.
    /// </summary>
    /// <exception cref="CutoverException">A pooler fence without <c>--unfence-command</c>: it cannot be lifted from here.</exception>
    public async Task LiftAsync(CancellationToken cancellationToken)
    {
        if (!_started)
            return;
        if (_options.FenceCommand is not null)
        {
            var command = _options.UnfenceCommand ?? throw new CutoverException("there is no --unfence-command to lift the --fence-command's fence");
            await ShellHook.RunAsync("--unfence-command", command, _hookEnvironment, _options.HookTimeout, cancellationToken).ConfigureAwait(false);
            return;
        }

        await using var connection = await _connect(cancellationToken).ConfigureAwait(false);
        await LiftDatabaseAsync(connection, _database, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Makes a database fenced by an earlier cutover writable for new sessions again.</summary>
    public static async Task LiftDatabaseAsync(NpgsqlConnection connection, string database, CancellationToken cancellationToken)
    {
        await using var lift = new NpgsqlCommand($"ALTER DATABASE {Identifier.Quote(database)} RESET default_transaction_read_only", connection);
        await lift.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Fences a database for new sessions only (the side a failed rollback leaves again).</summary>
    public static async Task FenceDatabaseAsync(NpgsqlConnection connection, string database, CancellationToken cancellationToken)
    {
        await using var fence = new NpgsqlCommand($"ALTER DATABASE {Identifier.Quote(database)} SET default_transaction_read_only = on", connection);
        await fence.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>True when the database has been made read-only for new sessions at the database level.</summary>
    public static async Task<bool> IsDatabaseFencedAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("SELECT " + DatabaseFence.IsSetSql, connection);
        return (bool)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }
}
