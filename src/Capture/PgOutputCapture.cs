using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Configuration;
using Replicator.Core.Errors;
using Replicator.Core.Metrics;

namespace Replicator.Capture;

/// <summary>
/// Reads the source's logical replication stream (pgoutput) from a slot and writes framed
/// <see cref="ChangeEvent"/>s to a bounded channel.
/// </summary>
/// <remarks>
/// Contract with downstream: the slot is acknowledged only through <see cref="Acknowledge"/>,
/// which the consumer calls with an LSN once every change up to it is durable downstream
/// (applied on the target, or acknowledged by Kafka). Until then the source keeps the WAL, so a
/// crash anywhere loses nothing: the next session streams again from the slot's confirmed
/// position. Why WAL can grow: the source cannot recycle WAL behind the slot's confirmed
/// position, so a stalled applier makes the source keep WAL (watch replicator_slot_retained_wal_bytes).
/// Idle sources still advance: when no transaction is open and the server's keepalives moved the
/// received position, a <see cref="Heartbeat"/> travels the same path and is acknowledged like a
/// transaction.
/// </remarks>
public sealed class PgOutputCapture
{
    private readonly ConnectionInfo _source;
    private readonly string _slot;
    private readonly string _publication;
    private readonly ILogger _logger;
    private readonly TimeSpan _heartbeatInterval;
    private readonly KeyValuePair<string, object?> _slotTag;
    private LogicalReplicationConnection? _connection;
    private ulong _acknowledged;

    public PgOutputCapture(ConnectionInfo source, string slot, string publication, ILogger logger, TimeSpan? heartbeatInterval = null)
    {
        _source = source;
        _slot = slot;
        _publication = publication;
        _logger = logger;
        _heartbeatInterval = heartbeatInterval ?? TimeSpan.FromSeconds(1);
        _slotTag = new("slot", slot);
    }

    /// <summary>
    /// Downstream made every change up to <paramref name="lsn"/> durable: the slot may release WAL up
    /// to there. Thread-safe; never moves backwards.
    /// </summary>
    public void Acknowledge(NpgsqlLogSequenceNumber lsn)
    {
        var value = (ulong)lsn;
        ulong current;
        do
        {
            current = Interlocked.Read(ref _acknowledged);
            if (value <= current)
                return;
        }
        while (Interlocked.CompareExchange(ref _acknowledged, value, current) != current);

        _connection?.SetReplicationStatus(lsn);
        ReplicatorMetrics.CaptureConfirmedLsn.Record(value, _slotTag);
        _logger.Acknowledged(lsn, _slot);
    }

    /// <summary>
    /// Checks the slot and publication, then streams from <paramref name="startLsn"/> (the server
    /// starts at the later of it and the slot's confirmed position) into <paramref name="output"/>
    /// until cancelled. Throws on connection loss (the caller retries) and
    /// <see cref="ReplicationException"/> on problems a person must fix.
    /// </summary>
    public async Task RunAsync(ChannelWriter<ChangeEvent> output, NpgsqlLogSequenceNumber startLsn, CancellationToken cancellationToken)
    {
        await using var dataSource = NpgsqlDataSource.Create(_source.ToNpgsqlConnectionString());
        await CheckSlotAndPublicationAsync(dataSource, cancellationToken).ConfigureAwait(false);
        var relations = new RelationCache(dataSource);

        await using var connection = new LogicalReplicationConnection(_source.ToNpgsqlConnectionString())
        {
            WalReceiverStatusInterval = TimeSpan.FromMilliseconds(100), // the source learns promptly what may be released
        };
        await connection.Open(cancellationToken).ConfigureAwait(false);
        var encoding = new NpgsqlConnectionStringBuilder(_source.ToNpgsqlConnectionString()).ClientEncoding;
        _utf8 = encoding is null || encoding.Replace("-", "", StringComparison.Ordinal).Equals("UTF8", StringComparison.OrdinalIgnoreCase);
        var protocol = connection.PostgreSqlVersion.Major >= 14 ? PgOutputProtocolVersion.V2 : PgOutputProtocolVersion.V1;
        // Large transactions are not streamed in progress: the server spills them to its own disk
        // (logical_decoding_work_mem) and sends them at commit, and this stage passes them through
        // change by change without holding them, so memory stays bounded either way.
        var options = new PgOutputReplicationOptions(_publication, protocol, binary: false, streamingMode: PgOutputStreamingMode.Off, messages: false, twoPhase: false);
        Interlocked.Exchange(ref _acknowledged, Math.Max((ulong)startLsn, Interlocked.Read(ref _acknowledged)));
        connection.SetReplicationStatus(new NpgsqlLogSequenceNumber(Interlocked.Read(ref _acknowledged)));
        _connection = connection;
        try
        {
            _logger.StreamingStarted(_slot, _publication, startLsn, (int)protocol);
            await StreamAsync(connection, relations, options, output, startLsn, cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse)
        {
            throw new ReplicationException(ReplicationErrorKind.SlotInUse,
                $"replication slot \"{_slot}\" is in use by another process: only one capture may stream from a slot. Waiting for it to be released; stop the other replicator, or use another --slot. ({e.MessageText})", e);
        }
        finally
        {
            _connection = null;
        }
    }

    private async Task StreamAsync(LogicalReplicationConnection connection, RelationCache relations, PgOutputReplicationOptions options,
        ChannelWriter<ChangeEvent> output, NpgsqlLogSequenceNumber startLsn, CancellationToken cancellationToken)
    {
        var messages = connection.StartReplication(new PgOutputReplicationSlot(_slot), options, cancellationToken, startLsn);
        var enumerator = messages.GetAsyncEnumerator(cancellationToken);
        Task<bool>? next = null;
        try
        {
            await ReadMessagesAsync(connection, relations, enumerator, output, startLsn, t => next = t, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // An async iterator must not be disposed while a MoveNextAsync is in flight: let the
            // pending read finish (cancellation or connection loss ends it) before disposing.
            if (next is not null)
            {
                try
                {
                    await next.ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // Its outcome is already reported by whatever ended the stream.
                }
            }

            await enumerator.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task ReadMessagesAsync(LogicalReplicationConnection connection, RelationCache relations, IAsyncEnumerator<PgOutputReplicationMessage> enumerator,
        ChannelWriter<ChangeEvent> output, NpgsqlLogSequenceNumber startLsn, Action<Task<bool>?> pendingRead, CancellationToken cancellationToken)
    {
        var inTransaction = false;
        uint xid = 0;
        var lastPosition = (ulong)startLsn;
        Task<bool>? next = null;
        Task? heartbeat = null;
        while (true)
        {
            if (next is null)
            {
                next = enumerator.MoveNextAsync().AsTask();
                pendingRead(next);
            }
            if (!inTransaction)
            {
                // Between transactions: wait for the next message, but speak up when the source is idle.
                heartbeat ??= Task.Delay(_heartbeatInterval, cancellationToken);
                if (await Task.WhenAny(next, heartbeat).ConfigureAwait(false) == heartbeat)
                {
                    heartbeat = null;
                    cancellationToken.ThrowIfCancellationRequested();
                    var received = (ulong)connection.LastReceivedLsn;
                    if (received > lastPosition)
                    {
                        lastPosition = received;
                        await output.WriteAsync(new Heartbeat(connection.LastReceivedLsn, DateTimeOffset.UtcNow), cancellationToken).ConfigureAwait(false);
                    }

                    continue;
                }
            }

            var more = await next.ConfigureAwait(false);
            next = null;
            pendingRead(null);
            if (!more)
                return;
            var message = enumerator.Current;
            ChangeEvent? change;
            switch (message)
            {
                case BeginMessage begin:
                    inTransaction = true;
                    xid = begin.TransactionXid;
                    Count("begin");
                    change = new TransactionBegin(begin.TransactionXid, begin.TransactionFinalLsn, begin.TransactionCommitTimestamp);
                    break;
                case CommitMessage commit:
                    inTransaction = false;
                    lastPosition = Math.Max(lastPosition, (ulong)commit.TransactionEndLsn);
                    Count("commit");
                    PublishCounts(commit.TransactionEndLsn);
                    change = new TransactionCommit(xid, commit.CommitLsn, commit.TransactionEndLsn, commit.TransactionCommitTimestamp);
                    break;
                case RelationMessage relation:
                    Count("relation");
                    var described = await relations.AddAsync(relation, cancellationToken).ConfigureAwait(false);
                    _logger.RelationReceived(described.DisplayName, described.RelationId, described.Columns.Count);
                    change = null;
                    break;
                case InsertMessage insert:
                    Count("insert");
                    change = new RowChange(relations.Get(insert.Relation.RelationId), ChangeKind.Insert, insert.WalStart, null, false,
                        await ReadTupleAsync(insert.NewRow, cancellationToken).ConfigureAwait(false));
                    break;
                case FullUpdateMessage update:
                    Count("update");
                    {
                        var old = await ReadTupleAsync(update.OldRow, cancellationToken).ConfigureAwait(false);
                        change = new RowChange(relations.Get(update.Relation.RelationId), ChangeKind.Update, update.WalStart, old, false,
                            await ReadTupleAsync(update.NewRow, cancellationToken).ConfigureAwait(false));
                    }

                    break;
                case IndexUpdateMessage update:
                    Count("update");
                    {
                        var key = await ReadTupleAsync(update.Key, cancellationToken).ConfigureAwait(false);
                        change = new RowChange(relations.Get(update.Relation.RelationId), ChangeKind.Update, update.WalStart, key, true,
                            await ReadTupleAsync(update.NewRow, cancellationToken).ConfigureAwait(false));
                    }

                    break;
                case UpdateMessage update:
                    Count("update");
                    change = new RowChange(relations.Get(update.Relation.RelationId), ChangeKind.Update, update.WalStart, null, false,
                        await ReadTupleAsync(update.NewRow, cancellationToken).ConfigureAwait(false));
                    break;
                case KeyDeleteMessage delete:
                    Count("delete");
                    change = new RowChange(relations.Get(delete.Relation.RelationId), ChangeKind.Delete, delete.WalStart,
                        await ReadTupleAsync(delete.Key, cancellationToken).ConfigureAwait(false), true, null);
                    break;
                case FullDeleteMessage delete:
                    Count("delete");
                    change = new RowChange(relations.Get(delete.Relation.RelationId), ChangeKind.Delete, delete.WalStart,
                        await ReadTupleAsync(delete.OldRow, cancellationToken).ConfigureAwait(false), false, null);
                    break;
                case TruncateMessage truncate:
                    Count("truncate");
                    change = new TruncateChange(
                        truncate.Relations.Select(r => relations.Get(r.RelationId)).ToArray(),
                        (truncate.Options & TruncateMessage.TruncateOptions.Cascade) != 0,
                        (truncate.Options & TruncateMessage.TruncateOptions.RestartIdentity) != 0,
                        truncate.WalStart);
                    break;
                case TypeMessage or OriginMessage or LogicalDecodingMessage:
                    // Type names are resolved with format_type; origins and decoding messages carry no row data.
                    Count(message is TypeMessage ? "type" : message is OriginMessage ? "origin" : "message");
                    _logger.Ignored(message.GetType().Name, message.WalStart);
                    change = null;
                    break;
                default:
                    throw new ReplicationException(ReplicationErrorKind.Permanent,
                        $"unexpected logical replication message {message.GetType().Name} at {message.WalStart} from slot \"{_slot}\" (streaming and two-phase are not requested)");
            }

            // Replicator's own state never travels: a database that was a target (reverse replication
            // after a cutover) has a replicator schema, and a FOR ALL TABLES publication includes it.
            if (change is RowChange { Relation.Schema: TableCatalog.StateSchema })
                change = null;
            else if (change is TruncateChange truncated && truncated.Relations.Any(r => r.Schema == TableCatalog.StateSchema))
                change = truncated.Relations.All(r => r.Schema == TableCatalog.StateSchema) ? null : truncated with { Relations = truncated.Relations.Where(r => r.Schema != TableCatalog.StateSchema).ToArray() };

            if (change is not null)
                await output.WriteAsync(change, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task CheckSlotAndPublicationAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var cmd = dataSource.CreateCommand("""
            SELECT (SELECT plugin FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()),
                   (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1),
                   EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2)
            """);
        cmd.Parameters.AddWithValue(_slot);
        cmd.Parameters.AddWithValue(_publication);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        if (reader.IsDBNull(0))
        {
            throw new ReplicationException(ReplicationErrorKind.Permanent,
                $"replication slot \"{_slot}\" does not exist in database {_source.Database} on {_source.Endpoint}: run 'replicator run' (or 'replicator snapshot'), which creates it with the initial copy");
        }

        if (reader.GetString(0) != "pgoutput")
            throw new ReplicationException(ReplicationErrorKind.Permanent, $"replication slot \"{_slot}\" uses plugin {reader.GetString(0)}, not pgoutput: use another --slot");
        if (!reader.IsDBNull(1))
        {
            throw new ReplicationException(ReplicationErrorKind.SlotInUse,
                $"replication slot \"{_slot}\" is in use by another process (pid {reader.GetInt32(1)}): only one capture may stream from a slot. Waiting for it to be released; stop the other replicator, or use another --slot");
        }

        if (!reader.GetBoolean(2))
        {
            throw new ReplicationException(ReplicationErrorKind.Permanent,
                $"publication \"{_publication}\" does not exist on the source: create it (CREATE PUBLICATION \"{_publication}\" FOR ALL TABLES) or let 'replicator run' create it");
        }

        await reader.DisposeAsync().ConfigureAwait(false);
        await CheckReplicaIdentityAsync(dataSource, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A table published for updates or deletes without a replica identity makes the
    /// application's own UPDATE and DELETE fail on the source: refuse to go on, naming the fix.
    /// </summary>
    private async Task CheckReplicaIdentityAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var cmd = dataSource.CreateCommand("""
            SELECT format('%I.%I', t.schemaname, t.tablename)
            FROM pg_publication p
            JOIN pg_publication_tables t ON t.pubname = p.pubname
            JOIN pg_namespace n ON n.nspname = t.schemaname
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
            WHERE p.pubname = $1 AND (p.pubupdate OR p.pubdelete)
              AND (c.relreplident = 'n'
                   OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
            ORDER BY 1
            """);
        cmd.Parameters.AddWithValue(_publication);
        var tables = new List<string>();
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                tables.Add(reader.GetString(0));
        }

        if (tables.Count > 0)
        {
            throw new ReplicationException(ReplicationErrorKind.Permanent,
                $"table(s) {string.Join(", ", tables)} are published for updates and deletes but have no replica identity (no primary key): the application's UPDATE and DELETE on them fail on the source while publication \"{_publication}\" exists. Fix on the source: {string.Join(" ", tables.Select(t => $"ALTER TABLE {t} REPLICA IDENTITY FULL;"))} (or add a primary key)");
        }
    }

    // Message counts are kept here and published per transaction: a metric update per message
    // would cost more than decoding the message.
    private readonly Dictionary<string, long> _counts = new(StringComparer.Ordinal);

    private void Count(string type) => _counts[type] = _counts.GetValueOrDefault(type) + 1;

    private void PublishCounts(NpgsqlLogSequenceNumber received)
    {
        foreach (var (type, count) in _counts)
        {
            if (count > 0)
                ReplicatorMetrics.CaptureMessages.Add(count, new KeyValuePair<string, object?>("type", type));
        }

        _counts.Clear();
        ReplicatorMetrics.CaptureReceivedLsn.Record((ulong)received, _slotTag);
    }

    /// <summary>Reads a tuple's values as owned copies (the tuple's buffer is reused by the next message).</summary>
    private async ValueTask<ColumnValue[]> ReadTupleAsync(ReplicationTuple tuple, CancellationToken cancellationToken)
    {
        var values = new ColumnValue[tuple.NumColumns];
        var i = 0;
        await foreach (var value in tuple.ConfigureAwait(false))
        {
            values[i++] = value.Kind switch
            {
                TupleDataKind.Null => ColumnValue.Null,
                TupleDataKind.UnchangedToastedValue => ColumnValue.UnchangedToast,
                TupleDataKind.TextValue => ColumnValue.Of(_utf8
                    ? await ReadUtf8Async(value, cancellationToken).ConfigureAwait(false)
                    : await value.GetTextReader().ReadToEndAsync(cancellationToken).ConfigureAwait(false)),
                _ => throw new ReplicationException(ReplicationErrorKind.Permanent, "binary tuple data was not requested but arrived"),
            };
        }

        return values;
    }

    /// <summary>
    /// A text value straight from the message bytes (the session's client encoding is UTF-8): one
    /// string per value and nothing else, where a TextReader per value cost more than the decoding.
    /// The scratch buffer is kept for values up to 1 MiB; a larger value gets its own array.
    /// </summary>
    private async ValueTask<string> ReadUtf8Async(ReplicationValue value, CancellationToken cancellationToken)
    {
        var length = value.Length;
        if (length == 0)
            return string.Empty;
        var buffer = length <= _textBuffer.Length ? _textBuffer
            : length <= MaxKeptTextBuffer ? _textBuffer = new byte[Math.Min(MaxKeptTextBuffer, Math.Max(length, _textBuffer.Length * 2))]
            : new byte[length];
        await value.GetStream().ReadExactlyAsync(buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        return Encoding.UTF8.GetString(buffer, 0, length);
    }

    private const int MaxKeptTextBuffer = 1 << 20;
    private byte[] _textBuffer = new byte[4096];
    private bool _utf8;
}
