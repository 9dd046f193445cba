using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Configuration;
using Replicator.Core.Errors;
using Replicator.Core.Metrics;
using Replicator.Core.Sql;
using Replicator.Core.State;

namespace Replicator.Applier;

/// <summary>
/// Applies the framed change stream to the target in source commit order, many source
/// transactions per target transaction, and records the position in that same transaction.
/// </summary>
/// <remarks>
/// Why nothing is lost or applied twice (DESIGN invariants 2–4):
/// (a) a batch holds whole source transactions only and commits as one target transaction
/// together with <c>replicator.position</c> = commit LSN of its last source transaction, so the
/// target never shows part of a source transaction and the position always matches the data;
/// (b) a source transaction whose commit LSN is at or below the position is skipped, so a stream
/// replayed after a crash changes nothing twice;
/// (c) the slot is acknowledged (through the callback) only once the batch's commit is flushed to
/// disk on the target, so the source keeps everything not yet durable there. Commits are
/// asynchronous (<c>synchronous_commit = off</c>, as PostgreSQL's own apply worker does): each
/// commit's WAL position on the target is noted, and the source LSNs it covers are acknowledged
/// when <c>pg_current_wal_flush_lsn()</c> has passed it. A target crash can lose the last
/// commits, but then it loses their <c>replicator.position</c> too, and the source, never told,
/// sends them again.
/// </remarks>
internal sealed class ChangeApplier
{
    private readonly NpgsqlConnection _target;
    private readonly NpgsqlDataSource? _source;
    private readonly ApplierSettings _settings;
    private readonly ILogger _logger;
    private readonly Action<NpgsqlLogSequenceNumber> _acknowledge;
    private readonly Func<ulong> _receivedLsn;
    private readonly Dictionary<uint, TableApplyPlan> _plans = [];
    private readonly Dictionary<TableApplyPlan, TableChanges> _pending = [];
    private readonly Stopwatch _batchClock = new();
    private Dictionary<TableName, TableInfo> _catalog = [];
    private Dictionary<TableName, ulong> _syncLsns = [];
    private bool _inBatch;
    private bool _beginPending;
    private ChannelReader<ChangeEvent>? _reader;
    private Task? _inFlight;
    private ulong _lastTargetCommitLsn;
    private ulong _walBlockSize, _walSegmentSize;
    private readonly Queue<(ulong TargetLsn, ulong SourceLsn)> _unflushed = new();
    private ulong _position;
    private ulong _strictUntil;
    private bool _replicaRole;
    private TransactionBegin? _current;
    private bool _skipping;
    private TransactionCommit? _lastCommit;
    private BufferPosition? _bufferPosition;
    private ulong _pendingAck;
    private int _batchTransactions;
    private int _batchChanges;
    private int _pendingRows;
    private long _syntheticKey;
    private (long Id, ulong Cut, bool Cutover, bool Holder)? _barrier;
    private ulong _heard;
    private long _barrierCheckedAt;

    public ChangeApplier(NpgsqlConnection target, NpgsqlDataSource? source, ApplierSettings settings, ILogger logger,
        Action<NpgsqlLogSequenceNumber> acknowledge, Func<ulong> receivedLsn, ulong strictUntil)
    {
        _target = target;
        _source = source;
        _settings = settings;
        _logger = logger;
        _acknowledge = acknowledge;
        _receivedLsn = receivedLsn;
        _strictUntil = strictUntil;
    }

    /// <summary>A cutover released its barrier as switched: the application writes to the target now, and this applier has stopped.</summary>
    public bool Switched { get; private set; }

    /// <summary>The target WAL position the next acknowledgement waits for the target to flush.</summary>
    internal ulong AcknowledgeAfterTargetLsn => _lastTargetCommitLsn;

    /// <summary>Commit LSN of the last source transaction this applier saw (for a strict replay after a clash).</summary>
    public ulong LastBegunCommitLsn { get; private set; }

    /// <summary>Prepares the session and reads the catalog and per-table sync positions.</summary>
    public async Task InitializeAsync(ulong position, CancellationToken cancellationToken)
    {
        _position = position;
        _replicaRole = await TargetState.TrySetReplicaRoleAsync(_target, cancellationToken).ConfigureAwait(false);
        if (!_replicaRole)
        {
            _logger.NoReplicaRole();
            try
            {
                foreach (var trigger in await TargetState.DisableUserTriggersAsync(_target, cancellationToken).ConfigureAwait(false))
                    _logger.TriggerDisabled(trigger);
            }
            catch (PostgresException denied) when (denied.SqlState == PostgresErrorCodes.InsufficientPrivilege)
            {
                throw new ReplicationException(ReplicationErrorKind.Permanent,
                    $"the target role may neither set session_replication_role nor disable triggers ({denied.MessageText}): replicated changes would fire the target's triggers a second time. Connect as the tables' owner, or disable the triggers yourself (ALTER TABLE … DISABLE TRIGGER USER) and enable them at cutover", denied);
            }
        }

        // Values arrive as text printed in canonical form (ConnectionInfo.CanonicalTextOptions);
        // the settings that change how the target reads such text are fixed to match.
        await using (var async = new NpgsqlCommand("SET synchronous_commit = off; " + ConnectionInfo.CanonicalTextInputSql, _target))
            await async.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        // What an earlier session committed (asynchronously) may not be flushed yet: nothing is
        // acknowledged to the source, skipped transactions and heartbeats included, until the
        // target has flushed past where its WAL stands now.
        await using (var insertLsn = new NpgsqlCommand("""
            SELECT pg_current_wal_insert_lsn(), current_setting('wal_block_size')::bigint,
                   (SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576 ELSE 0 END
                    FROM pg_settings WHERE name = 'wal_segment_size')
            """, _target))
        await using (var reader = await insertLsn.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            (_walBlockSize, _walSegmentSize) = ((ulong)reader.GetInt64(1), reader.IsDBNull(2) ? 0UL : (ulong)reader.GetInt64(2));
            _lastTargetCommitLsn = WalPosition.EndOfInserted((ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(0), _walBlockSize, _walSegmentSize);
        }
        await ReloadCatalogAsync(cancellationToken).ConfigureAwait(false);
        foreach (var (table, lsn) in await TargetState.ReadSyncLsnsAsync(_target, _settings.Slot, cancellationToken).ConfigureAwait(false))
            _syncLsns[table] = (ulong)lsn;

        _logger.Resuming(new NpgsqlLogSequenceNumber(position), _settings.Slot);
    }

    private int _sourceVersion;

    /// <summary>
    /// The kept missing value of column <c>$2</c> of relation <c>$1</c> as the column type's text:
    /// PostgreSQL keeps it as an array of one element of that type, whose text form read as
    /// <c>text[]</c> gives the element's own text, arrays included. A partitioned table keeps none
    /// itself; its partitions do (the same value: the default was evaluated once for the command).
    /// </summary>
    private const string MissingValueSql = """
        (WITH RECURSIVE tree AS (SELECT $1::oid AS relid UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.relid)
         SELECT (m.attmissingval::text::text[])[1] FROM tree JOIN pg_attribute m ON m.attrelid = tree.relid
         WHERE m.attname = $2 AND m.atthasmissing LIMIT 1)
        """;

    /// <summary>The source's <c>server_version_num</c>, asked once.</summary>
    private async Task<int> SourceVersionAsync(CancellationToken cancellationToken)
    {
        if (_sourceVersion == 0)
        {
            await using var cmd = _source!.CreateCommand("SELECT current_setting('server_version_num')::int");
            _sourceVersion = (int)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        return _sourceVersion;
    }

    private async Task ReloadCatalogAsync(CancellationToken cancellationToken) =>
        _catalog = (await TableCatalog.LoadAsync(_target, cancellationToken).ConfigureAwait(false)).ToDictionary(t => t.TableName);

    /// <summary>Applies events until the channel completes or cancellation. An open batch is rolled back on the way out.</summary>
    public async Task RunAsync(ChannelReader<ChangeEvent> reader, CancellationToken cancellationToken)
    {
        _reader = reader;
        try
        {
            while (true)
            {
                if (!reader.TryRead(out var change))
                {
                    // Nothing waiting. A batch that is still young waits a few milliseconds for more
                    // (fewer, larger commits); then what is complete is committed now (latency).
                    var young = MinBatchAge - _batchClock.Elapsed; // read the clock once: it keeps moving
                    if (_inBatch && _current is null && young > TimeSpan.Zero)
                    {
                        var more = reader.WaitToReadAsync(cancellationToken).AsTask();
                        if (await Task.WhenAny(more, Task.Delay(young, cancellationToken)).ConfigureAwait(false) == more)
                        {
                            if (!await more.ConfigureAwait(false))
                                return;
                            continue;
                        }
                    }

                    if (_current is null)
                    {
                        if (_inBatch)
                            await CommitBatchAsync(cancellationToken).ConfigureAwait(false);
                        await CheckBarrierAsync(cancellationToken).ConfigureAwait(false);
                        if (_unflushed.Count > 0)
                            await ReleaseFlushedAsync(null, cancellationToken).ConfigureAwait(false);
                    }

                    var wait = reader.WaitToReadAsync(cancellationToken).AsTask();
                    // Idle: look again soon (flushes to acknowledge, a barrier row to answer).
                    if (await Task.WhenAny(wait, Task.Delay(_unflushed.Count > 0 ? 20 : 25, cancellationToken)).ConfigureAwait(false) != wait)
                        continue;
                    if (!await wait.ConfigureAwait(false))
                        return;
                    continue;
                }

                await HandleAsync(change, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (SwitchedException)
        {
            // The cutover is done: stop here, with nothing open.
        }
        finally
        {
            if (_inFlight is { } inFlight)
            {
                _inFlight = null;
                try
                {
                    await inFlight.ConfigureAwait(false);
                }
                catch (Exception e) when (e is NpgsqlException or OperationCanceledException or InvalidOperationException)
                {
                    // Already failing or stopping: the batch is rolled back below.
                }
            }

            if (_inBatch && _beginPending)
            {
                _inBatch = _beginPending = false; // nothing of this batch reached the server
            }
            else if (_inBatch && _target.State == System.Data.ConnectionState.Open)
            {
                _inBatch = false;
                try
                {
                    await using var rollback = new NpgsqlCommand("ROLLBACK", _target);
                    await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
                {
                    // The connection is going away anyway; the server rolls the batch back.
                }
            }
        }
    }

    /// <summary>
    /// A backlog is waiting in the buffer (catching up): batches may grow by
    /// <see cref="ApplierSettings.BehindBatchScale"/>: fewer commits, and the repeated updates of hot
    /// rows fold into fewer statements. Live, the buffer is nearly empty and batches stay small (lag).
    /// </summary>
    private bool Behind => _reader is { CanCount: true } reader && reader.Count >= _settings.BehindEvents;

    /// <summary>A batch is given at least this long to gather more transactions before an idle stream commits it.</summary>
    private static readonly TimeSpan MinBatchAge = TimeSpan.FromMilliseconds(10);

    private async Task HandleAsync(ChangeEvent change, CancellationToken cancellationToken)
    {
        switch (change)
        {
            case TransactionBegin begin:
                _current = begin;
                // A snapshot read shares its position with every row of its snapshot: the position cannot
                // tell whether it is applied (the Kafka offsets stored with it can), see ApplyRowAsync.
                // Nor is it a commit: it does not count for strict replay or the verifier's cut.
                if (!begin.SnapshotRead)
                    LastBegunCommitLsn = (ulong)begin.CommitLsn;
                _skipping = !begin.SnapshotRead && (ulong)begin.CommitLsn <= _position;
                if (_skipping)
                    break;
                if (_barrier is { } barrier && !begin.SnapshotRead && (ulong)begin.CommitLsn >= barrier.Cut)
                {
                    if (_inBatch)
                        await CommitBatchAsync(cancellationToken).ConfigureAwait(false);
                    await ReachBarrierAsync(cancellationToken).ConfigureAwait(false);
                }

                if (!_inBatch)
                    await BeginBatchAsync(cancellationToken).ConfigureAwait(false);
                if (_batchTransactions++ == 0)
                    ReplicatorMetrics.ApplierWaitingSince(begin.CommitTime); // the oldest of the batch: lag counts from it until the commit
                break;

            case RowChange row when !_skipping:
                await ApplyRowAsync(row, cancellationToken).ConfigureAwait(false);
                break;

            case TruncateChange truncate when !_skipping:
                await ApplyTruncateAsync(truncate, cancellationToken).ConfigureAwait(false);
                break;

            case BufferPosition buffer:
                _bufferPosition = buffer;
                break;

            case TransactionCommit commit:
                var snapshotRead = _current?.SnapshotRead == true;
                _current = null;
                if (_skipping)
                {
                    // Already on the target: its WAL may be released.
                    _skipping = false;
                    _pendingAck = Math.Max(_pendingAck, (ulong)commit.EndLsn);
                    if (!_inBatch)
                        QueueAcknowledgement();
                    break;
                }

                if (snapshotRead)
                {
                    // Not a commit: the applied position stays (later commits of the source may lie
                    // below the snapshot's), but the batch still stores the offsets that passed it.
                    _lastCommit ??= commit with { CommitLsn = new NpgsqlLogSequenceNumber(_position), CommitTime = default };
                }
                else
                {
                    _lastCommit = commit;
                    _position = (ulong)commit.CommitLsn;
                }

                _pendingAck = Math.Max(_pendingAck, (ulong)commit.EndLsn);
                var scale = Behind ? _settings.BehindBatchScale : 1;
                if (_batchTransactions >= _settings.MaxBatchTransactions * scale || _batchChanges >= _settings.MaxBatchChanges * scale
                    || _batchClock.Elapsed >= _settings.MaxBatchDuration * scale || _strictUntil >= _position)
                {
                    await CommitBatchAsync(cancellationToken).ConfigureAwait(false);
                }

                break;

            case Heartbeat heartbeat:
                _pendingAck = Math.Max(_pendingAck, (ulong)heartbeat.WalEnd);
                _heard = Math.Max(_heard, (ulong)heartbeat.WalEnd);
                if (!_inBatch)
                    QueueAcknowledgement();

                if (_barrier is { } cut && (ulong)heartbeat.WalEnd >= cut.Cut)
                {
                    // Every transaction that committed before the cut has been received, and applied.
                    if (_inBatch)
                        await CommitBatchAsync(cancellationToken).ConfigureAwait(false);
                    await ReachBarrierAsync(cancellationToken).ConfigureAwait(false);
                }

                break;
        }
    }

    /// <summary>
    /// Opens a batch. The BEGIN itself travels with the batch's first statements (or its commit),
    /// saving a round trip per batch; <see cref="EnsureBegunAsync"/> sends it alone before a
    /// statement that goes on its own.
    /// </summary>
    private Task BeginBatchAsync(CancellationToken cancellationToken)
    {
        _ = cancellationToken;
        _beginPending = true;
        _inBatch = true;
        _batchClock.Restart();
        _batchTransactions = 0;
        _batchChanges = 0;
        return Task.CompletedTask;
    }

    /// <summary>Sends the batch's pending BEGIN on its own (before a statement that is not part of a pipelined batch).</summary>
    private async Task EnsureBegunAsync(CancellationToken cancellationToken)
    {
        if (!_beginPending)
            return;
        await DrainAsync().ConfigureAwait(false);
        await using (var begin = new NpgsqlCommand("BEGIN", _target))
            await begin.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        _beginPending = false;
    }

    /// <summary>Puts the batch's pending BEGIN first in <paramref name="batch"/>.</summary>
    private void TakeBegin(NpgsqlBatch batch)
    {
        if (!_beginPending)
            return;
        batch.BatchCommands.Insert(0, new NpgsqlBatchCommand("BEGIN"));
        _beginPending = false;
    }

    /// <summary>
    /// Writes the position and commits in one round trip, which also returns where the commit
    /// ended in the target's WAL and how far the target has flushed.
    /// </summary>
    private async Task CommitBatchAsync(CancellationToken cancellationToken)
    {
        await FlushAndWaitAsync(cancellationToken).ConfigureAwait(false);
        ulong flushed;
        var batch = new NpgsqlBatch(_target);
        await using (batch.ConfigureAwait(false))
        {
            if (_lastCommit is { } last)
            {
                var position = new NpgsqlBatchCommand("""
                    INSERT INTO replicator.position (slot_name, commit_lsn, commit_time, kafka_offsets, updated_at) VALUES ($1, $2, $3, $4::jsonb, clock_timestamp())
                    ON CONFLICT (slot_name) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, commit_time = EXCLUDED.commit_time,
                        kafka_offsets = COALESCE(EXCLUDED.kafka_offsets, replicator.position.kafka_offsets), updated_at = EXCLUDED.updated_at
                    """);
                position.Parameters.AddWithValue(_settings.Slot);
                position.Parameters.Add(Parameters.Lsn(last.CommitLsn));
                // No source commit time when only snapshot reads were applied since the start.
                position.Parameters.Add(new NpgsqlParameter { Value = last.CommitTime == default ? DBNull.Value : last.CommitTime, NpgsqlDbType = NpgsqlDbType.TimestampTz });
                position.Parameters.Add(new NpgsqlParameter { Value = (object?)_bufferPosition?.Json ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
                batch.BatchCommands.Add(position);
            }

            TakeBegin(batch);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn()"));
            _inBatch = false;
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (reader.FieldCount != 2)
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            _lastTargetCommitLsn = WalPosition.EndOfInserted((ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(0), _walBlockSize, _walSegmentSize);
            flushed = (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(1);
        }

        QueueAcknowledgement();
        await ReleaseFlushedAsync(flushed, cancellationToken).ConfigureAwait(false);
        ReplicatorMetrics.ApplyTransactions.Add(_batchTransactions);
        ReplicatorMetrics.ApplyBatchTransactions.Record(_batchTransactions);
        ReplicatorMetrics.ApplyBatchDuration.Record(_batchClock.Elapsed.TotalSeconds);
        ReplicatorMetrics.ApplierWaitingSince(null); // everything received is applied: transactions are whole in a batch
        if (_lastCommit is { } applied)
            ReplicatorMetrics.ApplyAppliedLsn.Record((ulong)applied.CommitLsn);

        await CheckBarrierAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Everything seen so far (<c>_pendingAck</c>) may be acknowledged to the source once the target
    /// has flushed its latest commit: queue that pair.
    /// </summary>
    private void QueueAcknowledgement()
    {
        if (_pendingAck == 0)
            return;
        _unflushed.Enqueue((_lastTargetCommitLsn, _pendingAck));
    }

    /// <summary>Acknowledges every source LSN whose target commit is flushed (asks the target when <paramref name="flushed"/> is null).</summary>
    private async Task ReleaseFlushedAsync(ulong? flushed, CancellationToken cancellationToken)
    {
        if (flushed is null)
        {
            await DrainAsync().ConfigureAwait(false);
            await using var cmd = new NpgsqlCommand("SELECT pg_current_wal_flush_lsn()", _target);
            flushed = (ulong)(NpgsqlLogSequenceNumber)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        ulong release = 0;
        while (_unflushed.Count > 0 && _unflushed.Peek().TargetLsn <= flushed)
            release = _unflushed.Dequeue().SourceLsn;
        if (release == 0)
            return;
        _acknowledge(new NpgsqlLogSequenceNumber(release));
        var received = _receivedLsn();
        ReplicatorMetrics.ApplyLagBytes.Record(received > release ? received - release : 0);
    }

    private async Task<TableApplyPlan> PlanAsync(StreamRelation relation, CancellationToken cancellationToken)
    {
        if (_plans.TryGetValue(relation.RelationId, out var plan) && ReferenceEquals(plan.Relation, relation))
            return plan;
        if (plan is not null)
        {
            // The stream described the table anew: write out what the old description covers first.
            await FlushAsync(cancellationToken).ConfigureAwait(false);
            _pending.Remove(plan);
        }

        await DrainAsync().ConfigureAwait(false); // adding columns and reading the catalog use the connection
        var name = new TableName(relation.Schema, relation.Name);
        var sync = _syncLsns.GetValueOrDefault(name);
        plan = TableApplyPlan.Create(relation, _catalog.GetValueOrDefault(name), sync, out var missing);
        if (missing.Count > 0)
        {
            await AddColumnsAsync(relation, missing, cancellationToken).ConfigureAwait(false);
            await ReloadCatalogAsync(cancellationToken).ConfigureAwait(false);
            plan = TableApplyPlan.Create(relation, _catalog.GetValueOrDefault(name), sync, out missing);
        }

        foreach (var i in plan.NonKeyIndexes)
        {
            var column = relation.Columns[i];
            if (plan.Target.Columns.FirstOrDefault(c => c.Name == column.Name) is { IsIdentityAlways: true })
                _logger.IdentityAlwaysColumn(plan.DisplayName, column.Name, plan.Target.QuotedName, column.QuotedName);
        }

        _plans[relation.RelationId] = plan;
        return plan;
    }

    /// <summary>
    /// A column the source added: added on the target too when it is nullable or has a constant
    /// default (inside the open batch, so it commits with the rows that use it); anything else
    /// stops with the DDL to run.
    /// </summary>
    private async Task AddColumnsAsync(StreamRelation relation, List<StreamColumn> missing, CancellationToken cancellationToken)
    {
        if (_source is null)
        {
            throw new ReplicationException(ReplicationErrorKind.Schema,
                $"the source added column(s) {string.Join(", ", missing.Select(c => c.Name + " " + c.TypeName))} to {relation.DisplayName}, and this applier (reading Kafka) cannot look at the source to see whether they may be added as they are: add them on the target ({string.Join(" ", missing.Select(c => $"ALTER TABLE {relation.QuotedName} ADD COLUMN {c.QuotedName} {c.TypeName};"))}) with the source's default; replication resumes by itself");
        }

        foreach (var column in missing)
        {
            // What the source's existing rows hold in the new column decides. A default that PostgreSQL
            // evaluated once when the column was added (a constant, or a stable call such as now()) is
            // kept as the column's "missing value" (PostgreSQL 11+): the target gets that very value,
            // not its own now(). Without one, the rows got a value each (a volatile default rewrote the
            // table) or nothing (the default came later), which only the rows themselves tell.
            await using var cmd = _source.CreateCommand($"""
                SELECT a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                       {(await SourceVersionAsync(cancellationToken).ConfigureAwait(false) >= 110000 ? MissingValueSql : "NULL::text")},
                       COALESCE(pg_get_expr(d.adbin, d.adrelid) !~* '(nextval|random|clock_timestamp|now|uuid|timeofday)\s*\(', false)
                FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attrelid = $1 AND a.attname = $2
                """);
            cmd.Parameters.Add(Parameters.Oid(relation.RelationId));
            cmd.Parameters.AddWithValue(column.Name);
            bool notNull;
            string? defaultExpression;
            string? missingValue;
            bool constantDefault;
            await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    throw new ReplicationException(ReplicationErrorKind.Schema, $"column {column.Name} of {relation.DisplayName} is sent by the stream but no longer exists on the source; add it to the target table by hand");
                notNull = reader.GetBoolean(0);
                defaultExpression = reader.IsDBNull(1) ? null : reader.GetString(1);
                missingValue = reader.IsDBNull(2) ? null : reader.GetString(2);
                constantDefault = reader.GetBoolean(3);
            }

            var add = $"ALTER TABLE {relation.QuotedName} ADD COLUMN {column.QuotedName} {column.TypeName}";
            var ddl = add + (defaultExpression is null ? "" : $" DEFAULT {defaultExpression}") + (notNull ? " NOT NULL" : "");
            if (missingValue is not null)
            {
                // The source's value for its existing rows, then its default for new ones.
                ddl = $"{add} DEFAULT {SqlLiteral.Quote(missingValue)}::{column.TypeName}{(notNull ? " NOT NULL" : "")}; "
                    + (defaultExpression is null ? $"ALTER TABLE {relation.QuotedName} ALTER COLUMN {column.QuotedName} DROP DEFAULT"
                        : $"ALTER TABLE {relation.QuotedName} ALTER COLUMN {column.QuotedName} SET DEFAULT {defaultExpression}");
            }
            else if ((notNull || defaultExpression is not null) && !(defaultExpression is not null && constantDefault && _sourceVersion < 110000))
            {
                // PostgreSQL 11+ keeps every non-volatile default's value: without one, the default is
                // volatile or came after the column. Older servers rewrite the table for any default,
                // and only a volatile one gives rows different values.
                throw new ReplicationException(ReplicationErrorKind.Schema,
                    $"the source added column {column.Name} {column.TypeName} to {relation.DisplayName}{(notNull ? " NOT NULL" : "")}{(defaultExpression is null ? "" : " with default " + defaultExpression)}, which Replicator does not add by itself (existing rows could get other values than on the source): add it on the target ({ddl};) and fill existing rows like the source, then replication resumes by itself");
            }

            await EnsureBegunAsync(cancellationToken).ConfigureAwait(false);
            await using var alter = new NpgsqlCommand(ddl, _target);
            await alter.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            _logger.ColumnAdded(relation.DisplayName, column.Name, column.TypeName);
        }
    }

    private async Task ApplyRowAsync(RowChange row, CancellationToken cancellationToken)
    {
        var plan = await PlanAsync(row.Relation, cancellationToken).ConfigureAwait(false);
        if (row.Kind == ChangeKind.Insert && ColumnValue.AnyUnchangedToast(row.New!))
        {
            var column = plan.Relation.Columns[Array.FindIndex(Own(row.New!), v => v.Kind == ValueKind.UnchangedToast)].Name;
            throw new ReplicationException(ReplicationErrorKind.Permanent,
                $"an insert into {plan.DisplayName} (source LSN {row.Lsn}) has no value for column {column}, only Debezium's unchanged-TOAST placeholder: "
                + "a key-changing update of a row whose TOASTed column it left unchanged, written as a delete and a create. It can be applied only from topics "
                + "with transaction metadata (provide.transaction.metadata=true), where the pair is joined back into the update; the value is in neither record");
        }

        bool idempotent;
        if (_current!.SnapshotRead)
        {
            // A row as a snapshot read it (Debezium's op r). Already in the target's copy of the table
            // when that copy is as new (our own snapshot published for downstream consumers); else
            // written so that reading the snapshot again (a connector restarted mid-snapshot) is
            // harmless where the table has a key.
            if ((ulong)_current.CommitLsn <= plan.SyncLsn)
                return;
            idempotent = plan.HasKey;
        }
        else
        {
            // In the table's copy when committed before the snapshot it was copied at (a commit at
            // exactly that point is not in it: see TargetState.PositionBefore).
            idempotent = (ulong)_current.CommitLsn < plan.SyncLsn;
        }

        _batchChanges++;
        if (!plan.HasKey)
        {
            if (idempotent)
                return; // a table without a key is recopied whole on resume: the snapshot holds this change
            if (row.Kind == ChangeKind.Insert)
            {
                Changes(plan).Add("#" + Interlocked.Increment(ref _syntheticKey), NetOp.Insert, Own(row.New!), false);
                _pendingRows++;
            }
            else
            {
                await FlushAndWaitAsync(cancellationToken).ConfigureAwait(false);
                await ApplyKeylessAsync(plan, row, cancellationToken).ConfigureAwait(false);
            }
        }
        else
        {
            var keys = plan.KeyIndexes;
            switch (row.Kind)
            {
                case ChangeKind.Insert:
                    Changes(plan).Add(TableChanges.KeyOf(row.New!, keys), NetOp.Insert, Own(row.New!), idempotent);
                    break;
                case ChangeKind.Delete:
                    Changes(plan).Add(TableChanges.KeyOf(row.Old!, keys), NetOp.Delete, Own(row.Old!), idempotent);
                    break;
                case ChangeKind.Update:
                    var newKey = TableChanges.KeyOf(row.New!, keys);
                    var oldKey = row.Old is null ? newKey : TableChanges.KeyOf(row.Old, keys);
                    if (oldKey == newKey)
                    {
                        Changes(plan).Add(newKey, NetOp.Update, Own(row.New!), idempotent);
                    }
                    else if ((!_replicaRole && !idempotent) || ColumnValue.AnyUnchangedToast(row.New!))
                    {
                        // The key moved and some values were not sent: move the row in place so it keeps them.
                        // Without replica role the target's foreign-key actions fire: a delete and an insert
                        // would run ON DELETE actions (cascading away the children) where the source ran ON
                        // UPDATE ones; an update in place runs those, as the source did. Not when replaying
                        // what a resumed copy may hold already (either key may be there): the idempotent
                        // delete and upsert below are right whatever the copy holds.
                        await FlushAndWaitAsync(cancellationToken).ConfigureAwait(false);
                        await ApplyKeyChangeAsync(plan, row, cancellationToken).ConfigureAwait(false);
                        return;
                    }
                    else
                    {
                        Changes(plan).Add(oldKey, NetOp.Delete, Own(row.Old!), idempotent);
                        Changes(plan).Add(newKey, NetOp.Insert, Own(row.New!), idempotent);
                    }

                    break;
            }

            _pendingRows++;
        }

        if (_pendingRows >= _settings.FlushRows || Strict)
            await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The event's values as the array pending rows hold. Events are immutable and nothing writes
    /// into these arrays (folding builds new ones), so the capture's own array is used as it is.
    /// </summary>
    private static ColumnValue[] Own(IReadOnlyList<ColumnValue> values) => values as ColumnValue[] ?? [.. values];

    /// <summary>Strict mode: every change written in source order as it comes (no coalescing across keys).</summary>
    private bool Strict => !_replicaRole || _strictUntil >= LastBegunCommitLsn;

    private TableChanges Changes(TableApplyPlan plan)
    {
        if (!_pending.TryGetValue(plan, out var changes))
            _pending[plan] = changes = new TableChanges(plan);
        return changes;
    }

    private async Task ApplyTruncateAsync(TruncateChange truncate, CancellationToken cancellationToken)
    {
        await FlushAndWaitAsync(cancellationToken).ConfigureAwait(false);
        var names = new List<string>();
        foreach (var relation in truncate.Relations)
        {
            var plan = await PlanAsync(relation, cancellationToken).ConfigureAwait(false);
            // A keyless table's snapshot already reflects a truncate at or below its sync position.
            if (plan.HasKey || (ulong)_current!.CommitLsn >= plan.SyncLsn)
                names.Add(plan.Target.QuotedName);
        }

        if (names.Count == 0)
            return;
        var sql = $"TRUNCATE {string.Join(", ", names)}{(truncate.RestartIdentity ? " RESTART IDENTITY" : "")}{(truncate.Cascade ? " CASCADE" : "")}";
        await EnsureBegunAsync(cancellationToken).ConfigureAwait(false);
        await using var cmd = new NpgsqlCommand(sql, _target);
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        foreach (var relation in truncate.Relations)
            ReplicatorMetrics.ApplyRows.Add(1, Tag(relation.DisplayName), new("op", "truncate"));
    }

    /// <summary>
    /// Writes every table's pending rows and waits for them, before a statement that must see them
    /// (a keyless update or delete, a key move). All tables, not just the one concerned: one round
    /// trip either way, and the order of writes stays the source's.
    /// </summary>
    private async Task FlushAndWaitAsync(CancellationToken cancellationToken)
    {
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        await DrainAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Sends every pending coalesced row, all tables in one round trip, without waiting for the
    /// server: the next changes are coalesced while it executes (the connection runs one command at
    /// a time, so anything else sent on it first waits in <see cref="DrainAsync"/>). An error
    /// surfaces at the next drain, before the batch can commit.
    /// </summary>
    private async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (_pendingRows == 0)
            return;
        var batch = new NpgsqlBatch(_target);
        List<CopyLoad>? copies = null;
        foreach (var changes in _pending.Values)
        {
            if (changes.Count > 0)
                AddCommands(batch, changes, _settings.CopyMinRows, ref copies);
            changes.Clear();
        }

        _pendingRows = 0;
        await DrainAsync().ConfigureAwait(false);
        if (batch.BatchCommands.Count == 0 && copies is null)
        {
            await batch.DisposeAsync().ConfigureAwait(false);
            return;
        }

        TakeBegin(batch);
        _inFlight = ExecuteAndDisposeAsync(batch, copies, cancellationToken);
    }

    /// <summary>A table's plain inserts as COPY text rows, built while the previous flush executes.</summary>
    private sealed record CopyLoad(string Sql, string Rows);

    /// <summary>
    /// Runs a flush: the batch, then the COPYs. The COPYs go last: they hold only plain inserts of
    /// keys no other statement of the flush touches (each key's changes are folded into one), and
    /// under the replica role no trigger or foreign-key check makes tables depend on each other.
    /// </summary>
    private async Task ExecuteAndDisposeAsync(NpgsqlBatch batch, List<CopyLoad>? copies, CancellationToken cancellationToken)
    {
        await using (batch.ConfigureAwait(false))
        {
            if (batch.BatchCommands.Count > 0)
                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        foreach (var copy in copies ?? [])
        {
            var writer = await _target.BeginTextImportAsync(copy.Sql, cancellationToken).ConfigureAwait(false);
            await using (writer.ConfigureAwait(false))
                await writer.WriteAsync(copy.Rows.AsMemory(), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Waits for the flush in flight, if any (and rethrows its error).</summary>
    private async Task DrainAsync()
    {
        if (_inFlight is { } inFlight)
        {
            _inFlight = null;
            await inFlight.ConfigureAwait(false);
        }
    }

    private static void AddCommands(NpgsqlBatch batch, TableChanges changes, int copyMinRows, ref List<CopyLoad>? copies)
    {
        var plan = changes.Plan;
        var deletes = new List<ColumnValue[]>();
        var inserts = new List<ColumnValue[]>();
        var upserts = new List<ColumnValue[]>();
        var updates = new Dictionary<string, (int[] Columns, List<ColumnValue[]> Rows)>(StringComparer.Ordinal);
        foreach (var row in changes.Rows)
        {
            switch (row.Op)
            {
                case NetOp.Delete:
                    deletes.Add(row.Values);
                    break;
                case NetOp.Insert when !row.Idempotent:
                    inserts.Add(row.Values);
                    break;
                case NetOp.Insert or NetOp.Replace:
                    upserts.Add(row.Values);
                    break;
                case NetOp.Update:
                    // Rows with every value present (the usual case) share one statement without
                    // building a column list per row; rows with unchanged TOAST values are grouped
                    // by the columns they set.
                    var set = plan.NonKeyIndexes;
                    var mask = "*";
                    if (ColumnValue.AnyUnchangedToast(row.Values))
                    {
                        set = plan.NonKeyIndexes.Where(i => row.Values[i].Kind != ValueKind.UnchangedToast).ToArray();
                        mask = string.Join(',', set);
                    }

                    if (set.Length == 0)
                        break;
                    if (!updates.TryGetValue(mask, out var group))
                        updates[mask] = group = (set, []);
                    group.Rows.Add(row.Values);
                    break;
            }
        }

        var all = Enumerable.Range(0, plan.Relation.Columns.Count).ToArray();
        if (deletes.Count > 0)
            Add(batch, plan.DeleteSql(), plan.KeyIndexes, deletes, plan.DisplayName, "delete");
        foreach (var (columns, rows) in updates.Values)
            Add(batch, plan.UpdateSql(columns), [.. plan.KeyIndexes, .. columns], rows, plan.DisplayName, "update");
        if (inserts.Count >= copyMinRows && !plan.Target.RowSecurityActive)
            (copies ??= []).Add(Copy(plan, inserts));
        else if (inserts.Count > 0)
            Add(batch, plan.InsertSql(upsert: false), all, inserts, plan.DisplayName, "insert");
        if (upserts.Count > 0)
            Add(batch, plan.InsertSql(upsert: true), all, upserts, plan.DisplayName, "insert");
    }

    private static void Add(NpgsqlBatch batch, string sql, int[] columns, List<ColumnValue[]> rows, string table, string op)
    {
        var command = new NpgsqlBatchCommand(sql);
        var literal = new StringBuilder();
        foreach (var column in columns)
        {
            // Each column travels as one array literal ('{"a","b",NULL}', cast to text[] by the
            // statement), built here while the previous flush executes: written by Npgsql as one
            // string, where a text[] parameter cost an element converter call per value after the
            // drain, with the server waiting.
            literal.Clear().Append('{');
            for (var r = 0; r < rows.Count; r++)
            {
                var value = rows[r][column];
                if (value.Kind == ValueKind.UnchangedToast)
                    throw new InvalidOperationException($"internal error: an unchanged TOAST value of {table} reached a {op}; refusing to write it");
                if (r > 0)
                    literal.Append(',');
                ArrayLiteral.AppendElement(literal, value.Text);
            }

            command.Parameters.Add(new NpgsqlParameter { Value = literal.Append('}').ToString(), NpgsqlDbType = NpgsqlDbType.Text });
        }

        batch.BatchCommands.Add(command);
        ReplicatorMetrics.ApplyRows.Add(rows.Count, Tag(table), new("op", op));
    }

    private static CopyLoad Copy(TableApplyPlan plan, List<ColumnValue[]> rows)
    {
        var text = new StringBuilder(rows.Count * 16 * rows[0].Length);
        foreach (var row in rows)
        {
            for (var c = 0; c < row.Length; c++)
            {
                if (row[c].Kind == ValueKind.UnchangedToast)
                    throw new InvalidOperationException($"internal error: an unchanged TOAST value of {plan.DisplayName} reached an insert; refusing to write it");
                if (c > 0)
                    text.Append('\t');
                CopyText.AppendField(text, row[c].Text);
            }

            text.Append('\n');
        }

        ReplicatorMetrics.ApplyRows.Add(rows.Count, Tag(plan.DisplayName), new("op", "insert"));
        return new CopyLoad(plan.CopySql(), text.ToString());
    }

    private async Task ApplyKeylessAsync(TableApplyPlan plan, RowChange row, CancellationToken cancellationToken)
    {
        if (row.Old is null || row.OldIsKeyOnly)
        {
            throw new ReplicationException(ReplicationErrorKind.Permanent,
                $"table {plan.DisplayName} has no primary key on the target and the source does not send whole old rows for it: run ALTER TABLE {plan.Relation.QuotedName} REPLICA IDENTITY FULL; on the source (or add the same primary key on both sides)");
        }

        var n = plan.Relation.Columns.Count;
        var compare = Enumerable.Range(0, n).Where(i => row.Old[i].Kind != ValueKind.UnchangedToast).ToArray();
        var set = row.Kind == ChangeKind.Delete ? null : Enumerable.Range(0, n).Where(i => row.New![i].Kind != ValueKind.UnchangedToast).ToArray();
        await EnsureBegunAsync(cancellationToken).ConfigureAwait(false);
        await using var cmd = new NpgsqlCommand(plan.KeylessSql(compare, set), _target);
        for (var i = 0; i < n; i++)
            cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)row.Old[i].Text ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        for (var i = 0; i < n; i++)
            cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)row.New?[i].Text ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        var affected = await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        var op = row.Kind == ChangeKind.Delete ? "delete" : "update";
        if (affected == 0)
            _logger.KeylessRowNotFound(op, plan.DisplayName);
        ReplicatorMetrics.ApplyRows.Add(1, Tag(plan.DisplayName), new("op", op));
    }

    private async Task ApplyKeyChangeAsync(TableApplyPlan plan, RowChange row, CancellationToken cancellationToken)
    {
        var n = plan.Relation.Columns.Count;
        var set = Enumerable.Range(0, n).Where(i => row.New![i].Kind != ValueKind.UnchangedToast).ToArray();
        await EnsureBegunAsync(cancellationToken).ConfigureAwait(false);
        await using var cmd = new NpgsqlCommand(plan.KeyChangeSql(set), _target);
        for (var i = 0; i < n; i++)
            cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)row.Old![i].Text ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        for (var i = 0; i < n; i++)
            cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)row.New![i].Text ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        ReplicatorMetrics.ApplyRows.Add(1, Tag(plan.DisplayName), new("op", "update"));
    }

    private static KeyValuePair<string, object?> Tag(string table) => new("table", table);

    /// <summary>
    /// The applier's half of the verifier's consistent cut (see TargetState): called only between
    /// batches. A new request without a cut LSN is answered by holding still at this transaction
    /// boundary until the verifier has taken its source snapshot and set the cut; a request with a
    /// cut is remembered, and reached when the next transaction would cross it.
    /// </summary>
    private async Task CheckBarrierAsync(CancellationToken cancellationToken)
    {
        var now = Environment.TickCount64;
        if (_barrier is not null || now - _barrierCheckedAt < 25)
            return;
        _barrierCheckedAt = now;
        long id;
        NpgsqlLogSequenceNumber? cut;
        bool cutover, holder;
        await using (var cmd = new NpgsqlCommand("""
            SELECT id, cut_lsn, purpose = 'cutover', holder_pid IS NOT NULL FROM replicator.barrier
            WHERE slot_name = $1 AND reached_at IS NULL AND released_at IS NULL AND requested_at > clock_timestamp() - interval '10 minutes'
            ORDER BY id LIMIT 1
            """, _target))
        {
            cmd.Parameters.AddWithValue(_settings.Slot);
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                return;
            id = reader.GetInt64(0);
            cut = reader.IsDBNull(1) ? null : reader.GetFieldValue<NpgsqlLogSequenceNumber>(1);
            cutover = reader.GetBoolean(2);
            holder = reader.GetBoolean(3);
        }

        if (cut is null)
        {
            await ExecAsync("UPDATE replicator.barrier SET held_at = clock_timestamp(), applied_lsn = $2 WHERE id = $1", id, cancellationToken).ConfigureAwait(false);
            _logger.BarrierHeld(id, new NpgsqlLogSequenceNumber(_position));
            cut = await PollAsync<NpgsqlLogSequenceNumber>("SELECT cut_lsn FROM replicator.barrier WHERE id = $1 AND cut_lsn IS NOT NULL", id, cancellationToken).ConfigureAwait(false);
            if (cut is null)
            {
                _logger.BarrierTimedOut(id, _settings.BarrierTimeout.TotalSeconds);
                return;
            }
        }

        _barrier = (id, (ulong)cut.Value, cutover, holder);
        // Already past it (a verifier sees applied_lsn >= cut and retries), or, between batches, a
        // heartbeat already said that everything below the cut has arrived, and so has been applied.
        if (_position >= (ulong)cut.Value || (!_inBatch && _current is null && _heard >= (ulong)cut.Value))
            await ReachBarrierAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task ReachBarrierAsync(CancellationToken cancellationToken)
    {
        var (id, cut, cutover, holder) = _barrier!.Value;
        _barrier = null;
        await ExecAsync("UPDATE replicator.barrier SET reached_at = clock_timestamp(), applied_lsn = $2 WHERE id = $1", id, cancellationToken).ConfigureAwait(false);
        _logger.BarrierReached(id, new NpgsqlLogSequenceNumber(cut), new NpgsqlLogSequenceNumber(_position));
        // A cutover, or a verifier repairing rows, holds the applier for as long as its session lives.
        if (cutover || holder)
        {
            await WaitForHolderAsync(id, cutover, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (await PollAsync<DateTime>("SELECT released_at FROM replicator.barrier WHERE id = $1 AND released_at IS NOT NULL", id, cancellationToken).ConfigureAwait(false) is null)
            _logger.BarrierTimedOut(id, _settings.BarrierTimeout.TotalSeconds);
    }

    /// <summary>
    /// Held at a barrier with a holder (a cutover's drain point, a verifier's repair): waits as long
    /// as the holder's session lives and has not released the barrier (its steps have their own
    /// timeouts). A cutover switched: stop for good; aborted, or the cutover's session gone for
    /// <see cref="CutoverSessionGrace"/> without a release: go on replicating (the source is writable
    /// again). The grace lets a cutover whose session broke right after the switch say so over a
    /// new one. A verifier's barrier: go on once released or its session is gone.
    /// </summary>
    private async Task WaitForHolderAsync(long id, bool cutover, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT outcome, released_at IS NOT NULL, holder_pid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = b.holder_pid)
            FROM replicator.barrier b WHERE id = $1
            """, _target);
        cmd.Parameters.AddWithValue(id);
        Stopwatch? holderGone = null;
        var held = Stopwatch.StartNew();
        while (true)
        {
            // A verifier's repair is meant for a handful of rows: a hold past this is a verifier whose
            // session lingers (a pooler, a half-open connection), not a repair.
            if (!cutover && held.Elapsed >= RepairHoldLimit)
            {
                _logger.BarrierTimedOut(id, held.Elapsed.TotalSeconds);
                return;
            }

            await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    return;
                var outcome = reader.IsDBNull(0) ? null : reader.GetString(0);
                if (reader.GetBoolean(1))
                {
                    if (!cutover)
                        return;
                    if (outcome == "switched")
                    {
                        _logger.CutoverSwitched(id, new NpgsqlLogSequenceNumber(_position));
                        Switched = true;
                        throw new SwitchedException();
                    }

                    _logger.CutoverAbandoned(id, outcome ?? "released");
                    return;
                }

                if (reader.GetBoolean(2))
                {
                    holderGone = null;
                }
                else if (!cutover)
                {
                    _logger.BarrierHolderGone(id);
                    return;
                }
                else if ((holderGone ??= Stopwatch.StartNew()).Elapsed >= CutoverSessionGrace)
                {
                    _logger.CutoverAbandoned(id, "its session ended");
                    return;
                }
            }

            await Task.Delay(10, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>How long a verifier's repair may hold the applier at most.</summary>
    internal static readonly TimeSpan RepairHoldLimit = TimeSpan.FromMinutes(10);

    /// <summary>How long a held applier waits for a cutover whose session has ended before it takes the cutover for abandoned.</summary>
    internal static readonly TimeSpan CutoverSessionGrace = TimeSpan.FromSeconds(5);

    /// <summary>Unwinds <see cref="RunAsync"/> after a cutover switched.</summary>
    private sealed class SwitchedException : Exception;

    private async Task ExecAsync(string sql, long id, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(sql, _target);
        cmd.Parameters.AddWithValue(id);
        cmd.Parameters.Add(Parameters.Lsn(new NpgsqlLogSequenceNumber(_position)));
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<T?> PollAsync<T>(string sql, long id, CancellationToken cancellationToken)
        where T : struct
    {
        var deadline = Stopwatch.StartNew();
        await using var cmd = new NpgsqlCommand(sql, _target);
        cmd.Parameters.AddWithValue(id);
        while (deadline.Elapsed < _settings.BarrierTimeout)
        {
            if (await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is T value)
                return value;
            await Task.Delay(2, cancellationToken).ConfigureAwait(false);
        }

        return null;
    }
}
