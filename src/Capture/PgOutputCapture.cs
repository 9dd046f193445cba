using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.Internal;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Configuration;
using Replicator.Core.Errors;
using Replicator.Core.Metrics;
using Replicator.Core.Sql;

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
    private readonly bool _streaming;
    private readonly string _spoolDirectory;
    private LogicalReplicationConnection? _connection;
    private ulong _acknowledged;

    /// <param name="streaming">Ask a PostgreSQL 14+ source to stream large in-progress transactions (spooled here until they commit).</param>
    /// <param name="spoolDirectory">Where streamed transactions wait for their commit; the system's temporary directory by default.</param>
    public PgOutputCapture(ConnectionInfo source, string slot, string publication, ILogger logger, TimeSpan? heartbeatInterval = null,
        bool streaming = true, string? spoolDirectory = null)
    {
        _streaming = streaming;
        _spoolDirectory = spoolDirectory ?? Path.GetTempPath();
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

        if (_connection is { } connection)
        {
            connection.SetReplicationStatus(lsn);
            // Tell the source now rather than at the next status interval: the slot's confirmed
            // position is what a catch-up, a cutover's drain and an operator watch.
            if (Interlocked.Exchange(ref _sendingStatus, 1) == 0)
                _ = SendStatusAsync(connection);
        }

        ReplicatorMetrics.CaptureConfirmedLsn.Record(value, _slotTag);
        _logger.Acknowledged(lsn, _slot);
    }

    /// <summary>
    /// One directory per slot and source: a slot has one reader at a time, so the directory is
    /// this capture's alone, and what a killed predecessor left there is deleted when it starts.
    /// </summary>
    internal static string SpoolDirectoryName(ConnectionInfo source, string slot)
    {
        var where = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes($"{source.Endpoint}/{source.Database}/{slot}"));
        var safeSlot = string.Concat(slot.Select(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '_'));
        return $"replicator-stream-{safeSlot}-{Convert.ToHexString(where, 0, 6).ToLowerInvariant()}";
    }

    private async Task SendStatusAsync(LogicalReplicationConnection connection)
    {
        try
        {
            await connection.SendStatusUpdate(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or ObjectDisposedException or IOException)
        {
            // The connection is going away; the next session reports the position again.
        }
        finally
        {
            Volatile.Write(ref _sendingStatus, 0);
        }
    }

    private int _sendingStatus;

    /// <summary>
    /// Checks the slot and publication and opens the replication connection, then streams from
    /// <paramref name="start"/> once it is known (the target may still be read meanwhile; the server
    /// starts at the later of it and the slot's confirmed position) into <paramref name="output"/>
    /// until cancelled. Throws on connection loss (the caller retries) and
    /// <see cref="ReplicationException"/> on problems a person must fix.
    /// </summary>
    public async Task RunAsync(ChannelWriter<ChangeEvent> output, Task<NpgsqlLogSequenceNumber> start, CancellationToken cancellationToken)
    {
        await using var dataSource = NpgsqlDataSource.Create(_source.ToCanonicalTextConnectionString());
        await CheckSlotAndPublicationAsync(dataSource, cancellationToken).ConfigureAwait(false);
        var relations = new RelationCache(dataSource);

        // Values are decoded as UTF-8 straight from the message bytes: the server converts them to
        // the session's client encoding, so the session asks for UTF-8 whatever the connection string
        // says; and they are printed with this session's settings, so those are fixed too.
        await using var connection = new LogicalReplicationConnection(_source.ToCanonicalTextConnectionString(b => b.ClientEncoding = "UTF8"))
        {
            WalReceiverStatusInterval = TimeSpan.FromMilliseconds(100), // the source learns promptly what may be released
        };
        await connection.Open(cancellationToken).ConfigureAwait(false);
        // Protocol 2 (PostgreSQL 14+) streams transactions that outgrow the source's
        // logical_decoding_work_mem while they are still in progress, instead of spilling them to the
        // source's disk until commit; they wait in a local spool until their Stream Commit.
        var protocol = connection.PostgreSqlVersion.Major >= 14 ? 2 : 1;
        var options = new List<KeyValuePair<string, string?>>
        {
            new("proto_version", protocol.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("publication_names", Identifier.Quote(_publication)),
        };
        if (protocol >= 2 && _streaming)
            options.Add(new("streaming", "on"));
        var startLsn = await start.WaitAsync(cancellationToken).ConfigureAwait(false);
        Interlocked.Exchange(ref _acknowledged, Math.Max((ulong)startLsn, Interlocked.Read(ref _acknowledged)));
        connection.SetReplicationStatus(new NpgsqlLogSequenceNumber(Interlocked.Read(ref _acknowledged)));
        _connection = connection;
        using var spool = new StreamSpool(Path.Combine(_spoolDirectory, SpoolDirectoryName(_source, _slot)));
        try
        {
            _logger.StreamingStarted(_slot, _publication, startLsn, protocol);
            await StreamAsync(connection, relations, spool, options, output, startLsn, cancellationToken).ConfigureAwait(false);
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

    private async Task StreamAsync(LogicalReplicationConnection connection, RelationCache relations, StreamSpool spool, IEnumerable<KeyValuePair<string, string?>> options,
        ChannelWriter<ChangeEvent> output, NpgsqlLogSequenceNumber startLsn, CancellationToken cancellationToken)
    {
        var messages = connection.StartLogicalReplication(new PgOutputReplicationSlot(_slot), cancellationToken, startLsn, options);
        var enumerator = messages.GetAsyncEnumerator(cancellationToken);
        Task<bool>? next = null;
        try
        {
            await ReadMessagesAsync(connection, relations, spool, enumerator, output, startLsn, t => next = t, cancellationToken).ConfigureAwait(false);
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

    private async Task ReadMessagesAsync(LogicalReplicationConnection connection, RelationCache relations, StreamSpool spool, IAsyncEnumerator<XLogDataMessage> enumerator,
        ChannelWriter<ChangeEvent> output, NpgsqlLogSequenceNumber startLsn, Action<Task<bool>?> pendingRead, CancellationToken cancellationToken)
    {
        var state = new StreamState { LastPosition = (ulong)startLsn };
        Task<bool>? next = null;
        Task? heartbeat = null;
        while (true)
        {
            if (next is null)
            {
                next = enumerator.MoveNextAsync().AsTask();
                pendingRead(next);
            }
            if (!state.InTransaction)
            {
                // Between transactions: wait for the next message, but speak up when the source is idle.
                heartbeat ??= Task.Delay(_heartbeatInterval, cancellationToken);
                if (await Task.WhenAny(next, heartbeat).ConfigureAwait(false) == heartbeat)
                {
                    heartbeat = null;
                    cancellationToken.ThrowIfCancellationRequested();
                    var received = (ulong)connection.LastReceivedLsn;
                    // The client records a message's position before that message is handed over:
                    // while a streamed transaction is open, the message in flight may be its Stream
                    // Commit, at the transaction's end. A heartbeat there would have the slot
                    // acknowledged past a transaction not yet applied (lost if the pipeline restarted
                    // before it was), and tell the verifier's cut it was: stay below its first change
                    // (no heartbeat at all while that position is not known).
                    if (spool.OpenTransactions > 0)
                    {
                        var open = spool.OldestOpenChange;
                        received = open == 0 ? 0 : Math.Min(received, open - 1);
                    }

                    if (received > state.LastPosition)
                    {
                        state.LastPosition = received;
                        await output.WriteAsync(new Heartbeat(new NpgsqlLogSequenceNumber(received), DateTimeOffset.UtcNow), cancellationToken).ConfigureAwait(false);
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
            var data = message.Data;
            var length = checked((int)data.Length);
            if (_message.Length < length)
                _message = new byte[Math.Max(length, _message.Length * 2)];
            await data.ReadExactlyAsync(_message.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            await HandleAsync(_message, length, (ulong)message.WalStart, state, relations, spool, output, cancellationToken).ConfigureAwait(false);
            if (length > MaxKeptMessageBuffer)
                _message = new byte[MaxKeptMessageBuffer];
        }
    }

    /// <summary>Where the stream stands between messages.</summary>
    private sealed class StreamState
    {
        /// <summary>Between Begin and Commit of a transaction sent whole: no heartbeat may come between.</summary>
        public bool InTransaction;

        public uint Xid;

        /// <summary>Inside a Stream Start … Stop block: changes belong to in-progress transaction <see cref="StreamXid"/>, each message carries its (sub)transaction id.</summary>
        public bool InStreamBlock;

        public uint StreamXid;

        public ulong LastPosition;
    }

    private async ValueTask HandleAsync(byte[] buffer, int length, ulong walStart, StreamState state, RelationCache relations, StreamSpool spool,
        ChannelWriter<ChangeEvent> output, CancellationToken cancellationToken)
    {
        var reader = new PgOutputReader(buffer, length);
        var type = reader.Byte();
        if (state.InStreamBlock && type is (byte)'R' or (byte)'Y' or (byte)'I' or (byte)'U' or (byte)'D' or (byte)'T' or (byte)'M')
        {
            // A chunk of an in-progress transaction: to the spool until its Stream Commit (or Abort).
            var messageXid = reader.UInt32();
            spool.Append(state.StreamXid, messageXid, walStart, buffer.AsSpan(0, length));
            Count("streamed");
            return;
        }

        switch (type)
        {
            case (byte)'B':
            {
                var finalLsn = reader.UInt64();
                var time = reader.Timestamp();
                state.Xid = reader.UInt32();
                state.InTransaction = true;
                Count("begin");
                await output.WriteAsync(new TransactionBegin(state.Xid, new NpgsqlLogSequenceNumber(finalLsn), time), cancellationToken).ConfigureAwait(false);
                return;
            }
            case (byte)'C':
            {
                reader.Skip(1); // flags
                var commitLsn = new NpgsqlLogSequenceNumber(reader.UInt64());
                var endLsn = new NpgsqlLogSequenceNumber(reader.UInt64());
                var time = reader.Timestamp();
                state.InTransaction = false;
                state.LastPosition = Math.Max(state.LastPosition, (ulong)endLsn);
                Count("commit");
                PublishCounts(endLsn);
                await output.WriteAsync(new TransactionCommit(state.Xid, commitLsn, endLsn, time), cancellationToken).ConfigureAwait(false);
                return;
            }
            case (byte)'S':
                state.StreamXid = reader.UInt32();
                state.InStreamBlock = true;
                Count("stream_start");
                return;
            case (byte)'E':
                state.InStreamBlock = false;
                Count("stream_stop");
                return;
            case (byte)'A':
            {
                var xid = reader.UInt32();
                var subxid = reader.UInt32();
                spool.Abort(xid, subxid);
                Count("stream_abort");
                return;
            }
            case (byte)'c':
            {
                var xid = reader.UInt32();
                reader.Skip(1); // flags
                var commitLsn = new NpgsqlLogSequenceNumber(reader.UInt64());
                var endLsn = new NpgsqlLogSequenceNumber(reader.UInt64());
                var time = reader.Timestamp();
                Count("stream_commit");
                await ReplayStreamedAsync(xid, commitLsn, endLsn, time, relations, spool, output, cancellationToken).ConfigureAwait(false);
                state.LastPosition = Math.Max(state.LastPosition, (ulong)endLsn);
                PublishCounts(endLsn);
                return;
            }
            default:
                await HandleChangeAsync(type, ref reader, walStart, relations, output, cancellationToken).ConfigureAwait(false);
                return;
        }
    }

    /// <summary>
    /// A streamed transaction committed: it goes downstream whole, framed like any other, its
    /// messages read back from the spool in the order they arrived.
    /// </summary>
    private async Task ReplayStreamedAsync(uint xid, NpgsqlLogSequenceNumber commitLsn, NpgsqlLogSequenceNumber endLsn, DateTimeOffset time,
        RelationCache relations, StreamSpool spool, ChannelWriter<ChangeEvent> output, CancellationToken cancellationToken)
    {
        using var replay = spool.Commit(xid);
        await output.WriteAsync(new TransactionBegin(xid, commitLsn, time), cancellationToken).ConfigureAwait(false);
        while (replay.TryRead(ref _replayBuffer, out var length, out var walStart))
        {
            var reader = new PgOutputReader(_replayBuffer, length);
            var type = reader.Byte();
            reader.Skip(4); // the (sub)transaction id, known
            await HandleChangeAsync(type, ref reader, walStart, relations, output, cancellationToken).ConfigureAwait(false);
        }

        await output.WriteAsync(new TransactionCommit(xid, commitLsn, endLsn, time), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Relation, type, row change, truncate, origin or logical message; the reader stands after the type byte (and the xid of a streamed one).</summary>
    private ValueTask HandleChangeAsync(byte type, ref PgOutputReader reader, ulong walStart, RelationCache relations,
        ChannelWriter<ChangeEvent> output, CancellationToken cancellationToken)
    {
        var lsn = new NpgsqlLogSequenceNumber(walStart);
        ChangeEvent? change;
        switch (type)
        {
            case (byte)'R':
                Count("relation");
                return AddRelationAsync(RelationDescription.Read(ref reader), relations, cancellationToken);
            case (byte)'I':
            {
                Count("insert");
                var relation = relations.Get(reader.UInt32());
                Expect(ref reader, (byte)'N', "insert");
                change = new RowChange(relation, ChangeKind.Insert, lsn, null, false, reader.Tuple());
                break;
            }
            case (byte)'U':
            {
                Count("update");
                var relation = relations.Get(reader.UInt32());
                var part = reader.Byte();
                ColumnValue[]? old = null;
                var keyOnly = false;
                if (part is (byte)'K' or (byte)'O')
                {
                    keyOnly = part == (byte)'K';
                    old = reader.Tuple();
                    part = reader.Byte();
                }

                if (part != (byte)'N')
                    throw PgOutputReader.Malformed($"update of {relation.DisplayName} at {lsn}: expected the new tuple ('N'), found '{(char)part}'");
                change = new RowChange(relation, ChangeKind.Update, lsn, old, keyOnly, reader.Tuple());
                break;
            }
            case (byte)'D':
            {
                Count("delete");
                var relation = relations.Get(reader.UInt32());
                var part = reader.Byte();
                if (part is not ((byte)'K' or (byte)'O'))
                    throw PgOutputReader.Malformed($"delete of {relation.DisplayName} at {lsn}: expected the old key ('K') or row ('O'), found '{(char)part}'");
                change = new RowChange(relation, ChangeKind.Delete, lsn, reader.Tuple(), part == (byte)'K', null);
                break;
            }
            case (byte)'T':
            {
                Count("truncate");
                var count = reader.Int32();
                var flags = reader.Byte();
                var truncated = new StreamRelation[count];
                for (var i = 0; i < count; i++)
                    truncated[i] = relations.Get(reader.UInt32());
                change = new TruncateChange(truncated, (flags & 1) != 0, (flags & 2) != 0, lsn);
                break;
            }
            case (byte)'Y' or (byte)'O' or (byte)'M':
                // Type names are resolved with format_type; origins and decoding messages carry no row data.
                Count(type == (byte)'Y' ? "type" : type == (byte)'O' ? "origin" : "message");
                _logger.Ignored(type == (byte)'Y' ? "Type" : type == (byte)'O' ? "Origin" : "LogicalDecodingMessage", lsn);
                return ValueTask.CompletedTask;
            default:
                throw new ReplicationException(ReplicationErrorKind.Permanent,
                    $"unexpected logical replication message '{(char)type}' at {lsn} from slot \"{_slot}\" (two-phase is not requested)");
        }

        // Replicator's own state never travels: a database that was a target (reverse replication
        // after a cutover) has a replicator schema, and a FOR ALL TABLES publication includes it.
        if (change is RowChange { Relation.Schema: TableCatalog.StateSchema })
            return ValueTask.CompletedTask;
        if (change is TruncateChange truncate && truncate.Relations.Any(r => r.Schema == TableCatalog.StateSchema))
        {
            if (truncate.Relations.All(r => r.Schema == TableCatalog.StateSchema))
                return ValueTask.CompletedTask;
            change = truncate with { Relations = truncate.Relations.Where(r => r.Schema != TableCatalog.StateSchema).ToArray() };
        }

        return output.WriteAsync(change, cancellationToken);
    }

    private async ValueTask AddRelationAsync(RelationDescription description, RelationCache relations, CancellationToken cancellationToken)
    {
        var described = await relations.AddAsync(description, cancellationToken).ConfigureAwait(false);
        _logger.RelationReceived(described.DisplayName, described.RelationId, described.Columns.Count);
    }

    private static void Expect(ref PgOutputReader reader, byte part, string what)
    {
        var found = reader.Byte();
        if (found != part)
            throw PgOutputReader.Malformed($"{what}: expected '{(char)part}', found '{(char)found}'");
    }

    private async Task CheckSlotAndPublicationAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var cmd = dataSource.CreateCommand("""
            SELECT (SELECT plugin FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()),
                   (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1),
                   EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2),
            """ + DatabaseFence.IsSetSql);
        cmd.Parameters.AddWithValue(_slot);
        cmd.Parameters.AddWithValue(_publication);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        if (reader.IsDBNull(0))
        {
            // A cutover drops the slot of the side it leaves, and leaves that side read-only.
            throw new ReplicationException(ReplicationErrorKind.Permanent, reader.GetBoolean(3)
                ? $"replication slot \"{_slot}\" was dropped, and database {_source.Database} on {_source.Endpoint} is read-only for new sessions: a cutover switched the application away from this source, and replication from it is over. Stop this process (scale the capture deployment to 0)"
                : $"replication slot \"{_slot}\" does not exist in database {_source.Database} on {_source.Endpoint}: run 'replicator run' (or 'replicator snapshot'), which creates it with the initial copy. (If a cutover switched the application away from this source, its slot went with it: stop this process.)");
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

    private const int MaxKeptMessageBuffer = 1 << 20;
    private byte[] _message = new byte[1 << 16];
    private byte[] _replayBuffer = new byte[1 << 16];
}
