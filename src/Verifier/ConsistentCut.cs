using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using NpgsqlTypes;
using Replicator.Core.Configuration;
using Replicator.Core.State;

namespace Replicator.Verifier;

/// <summary>One worker's two connections, each inside its side's snapshot of the cut.</summary>
internal sealed class ConnectionPair(NpgsqlConnection source, NpgsqlConnection target)
{
    public NpgsqlConnection Source { get; } = source;

    public NpgsqlConnection Target { get; } = target;
}

/// <summary>
/// Both databases seen at the same logical point C (DESIGN, Verifier: consistent cuts).
/// <para>Source: a TEMPORARY logical slot created with <c>SNAPSHOT 'export'</c> gives the consistent
/// point C and a snapshot that contains exactly the transactions committed before C. Every source
/// worker imports it (<c>SET TRANSACTION SNAPSHOT</c> in REPEATABLE READ); then the replication
/// connection closes, which drops the slot — the imported snapshots live on in the transactions.</para>
/// <para>Target, with replication running (a <c>replicator.position</c> row for the slot): the
/// barrier protocol of <see cref="TargetState"/> (two steps: hold, then cut at C). The applier,
/// once it has applied everything below C and nothing at or above, sets <c>reached_at</c> and waits.
/// Now the target holds exactly the source's state at C: one target worker opens REPEATABLE READ and
/// exports its snapshot, the others import it, and <c>released_at</c> is set. The pause lasts a few
/// statements because every target connection is opened before the barrier row is written. An applier
/// that reports an <c>applied_lsn</c> at or above C has overshot: that cut is discarded and a new one
/// taken. Without replication (or with <see cref="VerifyRequest.UseBarrier"/> off) the target snapshot
/// is taken right away.</para>
/// <para>Safety: every query of a pass runs on a pair's two connections, so every source read sees C
/// and every target read sees the target at C; the transactions only read, so they cannot block the
/// applier (the applier's writes do not touch the snapshots).</para>
/// </summary>
internal sealed class ConsistentCut : IAsyncDisposable
{
    private const int MaxOvershootRetries = 3;

    private readonly List<ConnectionPair> _pairs;
    private readonly Channel<ConnectionPair> _free;

    private ConsistentCut(List<ConnectionPair> pairs, NpgsqlLogSequenceNumber sourceLsn, string kind, NpgsqlLogSequenceNumber? appliedLsn, TimeSpan pause)
    {
        _pairs = pairs;
        SourceLsn = sourceLsn;
        Kind = kind;
        TargetAppliedLsn = appliedLsn;
        ApplierPause = pause;
        _free = Channel.CreateUnbounded<ConnectionPair>();
        foreach (var pair in pairs)
            _free.Writer.TryWrite(pair);
    }

    /// <summary>The source's consistent point C.</summary>
    public NpgsqlLogSequenceNumber SourceLsn { get; }

    /// <summary><c>barrier</c> (the applier was held at C) or <c>plain</c> (target snapshot taken as is).</summary>
    public string Kind { get; }

    /// <summary>The applier's last applied commit LSN at the barrier; null for a plain cut.</summary>
    public NpgsqlLogSequenceNumber? TargetAppliedLsn { get; }

    /// <summary>How long the applier was held (barrier reached → released).</summary>
    public TimeSpan ApplierPause { get; }

    public ConnectionPair First => _pairs[0];

    /// <summary>Takes a free pair; dispose the lease to give it back.</summary>
    public async ValueTask<Lease> RentAsync(CancellationToken cancellationToken) =>
        new(this, await _free.Reader.ReadAsync(cancellationToken).ConfigureAwait(false));

    public readonly struct Lease(ConsistentCut owner, ConnectionPair pair) : IDisposable
    {
        public ConnectionPair Pair { get; } = pair;

        public void Dispose() => owner._free.Writer.TryWrite(Pair);
    }

    /// <summary>
    /// Opens a cut with <paramref name="workers"/> pairs. <paramref name="whileHeld"/>, if given, runs
    /// after the source snapshot exists and the applier is held at C, before the target snapshot is
    /// taken — the place where <c>--repair</c> writes, so its rows are the source's rows at C and the
    /// applier resumes on top of them.
    /// </summary>
    public static async Task<ConsistentCut> OpenAsync(
        ConnectionInfo source, ConnectionInfo target, VerifyRequest request, int workers, ILogger logger,
        Func<IReadOnlyList<NpgsqlConnection>, CancellationToken, Task>? whileHeld, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var cut = await TryOpenAsync(source, target, request, workers, logger, whileHeld, cancellationToken).ConfigureAwait(false);
            if (cut is not null)
                return cut;
            if (attempt >= MaxOvershootRetries)
                throw new VerifyException($"the applier for slot '{request.SlotName}' was already past the cut point {MaxOvershootRetries} times; it does not honour the barrier (is it an older version?)");
        }
    }

    private static async Task<ConsistentCut?> TryOpenAsync(
        ConnectionInfo source, ConnectionInfo target, VerifyRequest request, int workers, ILogger logger,
        Func<IReadOnlyList<NpgsqlConnection>, CancellationToken, Task>? whileHeld, CancellationToken cancellationToken)
    {
        var sources = new List<NpgsqlConnection>();
        var targets = new List<NpgsqlConnection>();
        var ok = false;
        NpgsqlConnection? control = null;
        LogicalReplicationConnection? replication = null;
        // A barrier row written and not yet released: the applier honours it (holds still) until its
        // own timeout, so every way out of here releases it — a failed slot creation, a cancelled pass.
        long? unreleased = null;
        try
        {
            // Opened all at once: the round trips of every login overlap. The barrier is driven from
            // its own connection (control), never inside a snapshot transaction, so its INSERT and
            // UPDATE commit at once and the applier sees them. The replication connection only
            // creates the slot once the applier holds still (below).
            var controlOpening = OpenSessionAsync(target, cancellationToken);
            // A quiescent cut takes no slot: no replication connection.
            var replicationOpening = request.Quiescent ? null : OpenReplicationAsync(source, cancellationToken);
            var opening = Enumerable.Range(0, workers).SelectMany(_ => new[] { OpenSessionAsync(source, cancellationToken), OpenSessionAsync(target, cancellationToken) }).ToList();
            try
            {
                await Task.WhenAll(opening.Cast<Task>().Append(controlOpening).Concat(replicationOpening is null ? [] : [replicationOpening])).ConfigureAwait(false);
            }
            finally
            {
                for (var i = 0; i < opening.Count; i++)
                {
                    if (opening[i].IsCompletedSuccessfully)
                        (i % 2 == 0 ? sources : targets).Add(opening[i].Result);
                }

                if (controlOpening.IsCompletedSuccessfully)
                    control = controlOpening.Result;
                if (replicationOpening is { IsCompletedSuccessfully: true })
                    replication = replicationOpening.Result;
            }

            var barrier = control!;
            // It writes the barrier rows even where the database is fenced read-only (a rollback's target).
            await TargetState.WriteThroughFenceAsync(barrier, cancellationToken).ConfigureAwait(false);

            // Two steps with a running applier (see TargetState): first hold it between two batches,
            // then take the source snapshot, whose consistent point C is therefore after everything
            // applied, then let it apply exactly up to C. Taking C first would race with an applier
            // that is only milliseconds behind, and it would usually be past C already.
            NpgsqlLogSequenceNumber? appliedLsn = null;
            var kind = "plain";
            var pause = TimeSpan.Zero;
            long? barrierId = null;
            if (request.Quiescent)
            {
                // Nothing moves on either side (the cutover fenced the source and holds the applier):
                // any snapshot of each side is the cut; no slot, no barrier.
                await BeginSharedSnapshotAsync(sources, cancellationToken).ConfigureAwait(false);
                NpgsqlLogSequenceNumber here;
                await using (var lsn = new NpgsqlCommand("SELECT pg_current_wal_lsn()", sources[0]))
                    here = (NpgsqlLogSequenceNumber)(await lsn.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
                await BeginSharedSnapshotAsync(targets, cancellationToken).ConfigureAwait(false);
                ok = true;
                return new ConsistentCut(sources.Zip(targets, (s, t) => new ConnectionPair(s, t)).ToList(), here, "quiescent", null, TimeSpan.Zero);
            }

            var replicated = await TargetState.ReadPositionAsync(barrier, request.SlotName, cancellationToken).ConfigureAwait(false) is not null;
            // Rows written from the cut's source snapshot are right only where the target stands
            // exactly at the cut: with replication writing meanwhile they would undo what it applied.
            if (whileHeld is not null && replicated && !request.UseBarrier)
                throw new VerifyException($"--repair with --no-barrier on a target that replication writes to (slot {request.SlotName} has a position there): the rows written would undo changes the applier applied after the cut. Repair with the barrier (without --no-barrier) while replication runs");
            var useBarrier = request.UseBarrier && replicated;
            if (useBarrier)
            {
                // Repairing, the applier stays held for as long as this session lives, not only for
                // its own barrier timeout: a long repair must not have changes applied under it.
                barrierId = unreleased = await InsertBarrierAsync(barrier, request.SlotName, null, holder: whileHeld is not null, cancellationToken).ConfigureAwait(false);
                await WaitForHoldAsync(barrier, barrierId.Value, request, cancellationToken).ConfigureAwait(false);
            }

            NpgsqlLogSequenceNumber cutLsn;
            var slotName = $"replicator_verify_{Guid.NewGuid():N}";
            var slotConnection = replication!;
            var slot = await CreateSlotAsync(slotConnection, slotName, source, request, cancellationToken).ConfigureAwait(false);
            cutLsn = slot.ConsistentPoint;
            var snapshot = slot.SnapshotName ?? throw new VerifyException("the source created the slot but exported no snapshot");
            await Task.WhenAll(sources.Select(conn => BeginInSnapshotAsync(conn, snapshot, cancellationToken))).ConfigureAwait(false);
            replication = null;
            await slotConnection.DisposeAsync().ConfigureAwait(false);

            // The slot is gone with its connection; the source transactions keep the snapshot.
            LogMessages.SourceCut(logger, cutLsn.ToString());

            if (barrierId is { } held0)
            {
                var position = await TargetState.ReadPositionAsync(barrier, request.SlotName, cancellationToken).ConfigureAwait(false);
                LogMessages.BarrierRequested(logger, request.SlotName, cutLsn.ToString(), position?.ToString() ?? "-");
                await SetCutAsync(barrier, held0, cutLsn, cancellationToken).ConfigureAwait(false);
                (appliedLsn, pause) = await WaitForBarrierAsync(barrier, held0, request, cutLsn, cancellationToken).ConfigureAwait(false);
                kind = "barrier";
                if (appliedLsn is { } applied && applied >= cutLsn)
                {
                    await ReleaseBarrierAsync(barrier, held0, cancellationToken).ConfigureAwait(false);
                    unreleased = null;
                    LogMessages.BarrierOvershot(logger, request.SlotName, cutLsn.ToString(), applied.ToString());
                    return null;
                }
            }
            else
            {
                LogMessages.PlainCut(logger, request.SlotName);
            }

            var held = Stopwatch.StartNew();
            try
            {
                if (whileHeld is not null)
                    await whileHeld(sources, cancellationToken).ConfigureAwait(false);
                await BeginSharedSnapshotAsync(targets, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                if (barrierId is { } id)
                {
                    await ReleaseBarrierAsync(barrier, id, CancellationToken.None).ConfigureAwait(false);
                    unreleased = null;
                }
            }

            if (barrierId is not null)
            {
                pause += held.Elapsed;
                LogMessages.BarrierReleased(logger, request.SlotName, pause.TotalMilliseconds);
            }

            ok = true;
            return new ConsistentCut(sources.Zip(targets, (s, t) => new ConnectionPair(s, t)).ToList(), cutLsn, kind, appliedLsn, pause);
        }
        finally
        {
            if (unreleased is { } id)
                await ReleaseAfterFailureAsync(control!, target, id, logger).ConfigureAwait(false);
            if (replication is not null)
                await replication.DisposeAsync().ConfigureAwait(false);
            if (control is not null)
                await control.DisposeAsync().ConfigureAwait(false);
            if (!ok)
            {
                foreach (var conn in sources.Concat(targets))
                    await conn.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Creates the temporary slot with an exported snapshot. The source builds that snapshot only once
    /// every transaction holding an xid has ended, so one left idle in transaction blocks it — and with
    /// replication running the applier is held meanwhile. Bounded by the barrier timeout; the error
    /// names the oldest such transactions.
    /// </summary>
    private static async Task<PgOutputReplicationSlot> CreateSlotAsync(
        LogicalReplicationConnection replication, string slotName, ConnectionInfo source, VerifyRequest request, CancellationToken cancellationToken)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(request.BarrierTimeout);
        try
        {
            return await replication.CreatePgOutputReplicationSlot(
                slotName, temporarySlot: true, slotSnapshotInitMode: LogicalSlotSnapshotInitMode.Export, cancellationToken: bounded.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new VerifyException(
                $"the source did not create the verifier's temporary slot within {request.BarrierTimeout.TotalSeconds:0} s: a slot's snapshot waits for every " +
                $"transaction that holds a transaction id to end, oldest: {await OpenTransactionsAsync(source).ConfigureAwait(false)}. " +
                "Commit or end them (pg_terminate_backend), or raise --barrier-timeout");
        }
    }

    /// <summary>The source's oldest transactions holding an xid (<see cref="SlotBlockers"/>); a pass that cannot tell says so.</summary>
    private static async Task<string> OpenTransactionsAsync(ConnectionInfo source)
    {
        try
        {
            await using var conn = await OpenSessionAsync(source, CancellationToken.None).ConfigureAwait(false);
            return await SlotBlockers.DescribeAsync(conn, CancellationToken.None).ConfigureAwait(false) ?? "none found any more";
        }
        catch (NpgsqlException e)
        {
            return $"not listed ({e.Message})";
        }
    }

    private static async Task<LogicalReplicationConnection> OpenReplicationAsync(ConnectionInfo source, CancellationToken cancellationToken)
    {
        var replication = new LogicalReplicationConnection(source.ToNpgsqlConnectionString());
        try
        {
            await replication.Open(cancellationToken).ConfigureAwait(false);
            return replication;
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.InsufficientPrivilege or PostgresErrorCodes.InvalidAuthorizationSpecification)
        {
            await replication.DisposeAsync().ConfigureAwait(false);
            throw new VerifyException($"the source refused a replication connection for {source}: {e.MessageText}; the verifier's user needs the REPLICATION attribute (ALTER ROLE … REPLICATION)", e);
        }
        catch
        {
            await replication.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>One data source per connection string, kept for the process (continuous passes reuse them).</summary>
    private static readonly ConcurrentDictionary<string, NpgsqlDataSource> DataSources = new(StringComparer.Ordinal);

    /// <summary>Opens a connection with the canonical session settings and no transaction yet.</summary>
    public static async Task<NpgsqlConnection> OpenSessionAsync(ConnectionInfo info, CancellationToken cancellationToken)
    {
        var dataSource = DataSources.GetOrAdd(info.ToNpgsqlConnectionString(b =>
        {
            b.Pooling = false;
            b.CommandTimeout = 0;
        }), static connectionString =>
        {
            // The verifier reads only built-in types (text, integers, arrays of them, pg_lsn,
            // interval): no need to load the server's pg_type first (a query and its processing per
            // server, which every connection opened meanwhile waits for, on the pass's start-up path).
            var builder = new NpgsqlDataSourceBuilder(connectionString);
            builder.ConfigureTypeLoading(t => t.EnableTypeLoading(false));
            return builder.Build();
        });
        var conn = dataSource.CreateConnection();
        try
        {
            await conn.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var cmd = new NpgsqlCommand(CanonicalRow.SessionSettingsSql, conn);
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return conn;
        }
        catch
        {
            await conn.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>BEGIN and SET TRANSACTION SNAPSHOT in one round trip (a batch).</summary>
    private static async Task BeginInSnapshotAsync(NpgsqlConnection conn, string snapshot, CancellationToken cancellationToken)
    {
        await using var batch = new NpgsqlBatch(conn)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
                // SET TRANSACTION SNAPSHOT takes a literal, not a parameter; the name comes from the
                // server and is quoted as a string literal anyway.
                new NpgsqlBatchCommand($"SET TRANSACTION SNAPSHOT '{snapshot.Replace("'", "''", StringComparison.Ordinal)}'"),
            },
        };
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One REPEATABLE READ snapshot, exported by the first connection and imported by the others.</summary>
    private static async Task BeginSharedSnapshotAsync(List<NpgsqlConnection> connections, CancellationToken cancellationToken)
    {
        string snapshot;
        await using (var export = new NpgsqlBatch(connections[0])
        {
            BatchCommands = { new NpgsqlBatchCommand("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), new NpgsqlBatchCommand("SELECT pg_export_snapshot()") },
        })
        {
            snapshot = (string)(await export.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        await Task.WhenAll(connections.Skip(1).Select(conn => BeginInSnapshotAsync(conn, snapshot, cancellationToken))).ConfigureAwait(false);
    }

    private static async Task<long> InsertBarrierAsync(NpgsqlConnection conn, string slot, NpgsqlLogSequenceNumber? cutLsn, bool holder, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            $"INSERT INTO replicator.barrier (slot_name, cut_lsn, holder_pid) VALUES ($1, $2, {(holder ? "pg_backend_pid()" : "NULL")}) RETURNING id", conn);
        cmd.Parameters.AddWithValue(slot);
        cmd.Parameters.Add(new NpgsqlParameter { Value = cutLsn is { } lsn ? lsn : DBNull.Value, NpgsqlDbType = NpgsqlDbType.PgLsn });
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>Step 1: waits until the applier holds still between two batches (<c>held_at</c>).</summary>
    private static Task<bool> WaitForHoldAsync(NpgsqlConnection conn, long id, VerifyRequest request, CancellationToken cancellationToken) =>
        WaitForBarrierRowAsync(conn, id, request, "SELECT true FROM replicator.barrier WHERE id = $1 AND held_at IS NOT NULL",
            _ => true, "(to hold between two batches)", cancellationToken);

    /// <summary>Step 2: tells the held applier where the source snapshot stands.</summary>
    private static async Task SetCutAsync(NpgsqlConnection conn, long id, NpgsqlLogSequenceNumber cutLsn, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("UPDATE replicator.barrier SET cut_lsn = $2 WHERE id = $1", conn);
        cmd.Parameters.AddWithValue(id);
        cmd.Parameters.Add(new NpgsqlParameter { Value = cutLsn, NpgsqlDbType = NpgsqlDbType.PgLsn });
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Step 3: waits until the applier has applied exactly up to the cut (<c>reached_at</c>).</summary>
    private static Task<(NpgsqlLogSequenceNumber? Applied, TimeSpan Pause)> WaitForBarrierAsync(
        NpgsqlConnection conn, long id, VerifyRequest request, NpgsqlLogSequenceNumber cutLsn, CancellationToken cancellationToken) =>
        WaitForBarrierRowAsync(conn, id, request,
            "SELECT applied_lsn, clock_timestamp() - reached_at FROM replicator.barrier WHERE id = $1 AND reached_at IS NOT NULL",
            reader => (reader.IsDBNull(0) ? (NpgsqlLogSequenceNumber?)null : reader.GetFieldValue<NpgsqlLogSequenceNumber>(0),
                       reader.IsDBNull(1) ? TimeSpan.Zero : reader.GetFieldValue<TimeSpan>(1)),
            $"at {cutLsn}", cancellationToken);

    /// <summary>
    /// Polls the barrier row with <paramref name="sql"/> (backoff 2 ms → 50 ms) until it returns a row;
    /// past the barrier timeout the row is released, so a late applier does not pause for it, and the
    /// wait fails saying what to do.
    /// </summary>
    private static async Task<T> WaitForBarrierRowAsync<T>(NpgsqlConnection conn, long id, VerifyRequest request, string sql,
        Func<NpgsqlDataReader, T> read, string step, CancellationToken cancellationToken)
    {
        var waited = Stopwatch.StartNew();
        var delay = TimeSpan.FromMilliseconds(2);
        await using var cmd = new NpgsqlCommand(sql, conn);
        cmd.Parameters.AddWithValue(id);
        while (true)
        {
            await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    return read(reader);
            }

            if (waited.Elapsed >= request.BarrierTimeout)
            {
                await ReleaseBarrierAsync(conn, id, CancellationToken.None).ConfigureAwait(false);
                throw new VerifyException(
                    $"the applier for slot '{request.SlotName}' did not reach the verifier's barrier {step} within {request.BarrierTimeout.TotalSeconds:0} s: " +
                    "replication is not running or not keeping up. Start `replicator run`, wait for the lag to drop, raise --barrier-timeout" +
                    (request.Repair ? " (a repair needs the barrier: start replication to repair)" : ", or use --no-barrier when nothing writes to the target"));
            }

            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromMilliseconds(Math.Min(50, delay.TotalMilliseconds * 2));
        }
    }

    /// <summary>
    /// Releases a barrier the pass is abandoning. The control connection may be unusable (a cancelled
    /// command, a dropped link): then a new one is tried. Never throws — the pass's own error is the
    /// one to report; a barrier that cannot be released here is still released by the applier's timeout.
    /// </summary>
    private static async Task ReleaseAfterFailureAsync(NpgsqlConnection control, ConnectionInfo target, long id, ILogger logger)
    {
        try
        {
            await ReleaseBarrierAsync(control, id, CancellationToken.None).ConfigureAwait(false);
            return;
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // Fall through to a new connection.
        }

        try
        {
            await using var fresh = await OpenSessionAsync(target, CancellationToken.None).ConfigureAwait(false);
            await TargetState.WriteThroughFenceAsync(fresh, CancellationToken.None).ConfigureAwait(false);
            await ReleaseBarrierAsync(fresh, id, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            LogMessages.BarrierNotReleased(logger, id, e.Message);
        }
    }

    private static async Task ReleaseBarrierAsync(NpgsqlConnection control, long id, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("UPDATE replicator.barrier SET released_at = clock_timestamp() WHERE id = $1 AND released_at IS NULL", control);
        cmd.Parameters.AddWithValue(id);
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var pair in _pairs)
        {
            await pair.Source.DisposeAsync().ConfigureAwait(false);
            await pair.Target.DisposeAsync().ConfigureAwait(false);
        }
    }
}
