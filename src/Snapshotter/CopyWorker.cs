using System.Buffers.Binary;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Core.Metrics;

namespace Replicator.Snapshotter;

/// <summary>
/// Copies chunks: <c>COPY (SELECT … WHERE range) TO STDOUT</c> on the source, in the exported
/// snapshot, streamed as raw bytes into <c>COPY … FROM STDIN</c> on the target, with no per-row
/// decoding (a small state machine only counts tuples as the bytes pass).
/// <para>Binary format is used unless a column's binary form carries type OIDs that differ between
/// clusters — composite types and arrays of user-defined types (array_recv and record_recv check
/// the OIDs) — then that table moves in text format, which is equally exact.</para>
/// <para>Safety argument for resume: each chunk is copied in ONE target transaction that also
/// marks the chunk done (<see cref="SnapshotState.MarkChunkDoneCommand"/>); a kill rolls back both.</para>
/// </summary>
public sealed class CopyWorker : IAsyncDisposable
{
    private const int BufferSize = 1 << 20;

    /// <summary>A buffer is handed on once less than this is left in it (a row rarely needs more).</summary>
    private const int MinReadSpace = 64 << 10;

    private readonly NpgsqlConnection _source;
    private readonly NpgsqlConnection _target;
    private readonly string? _slotName;
    private readonly NpgsqlLogSequenceNumber _snapshotLsn;
    private readonly ISnapshotProgress _progress;
    private readonly byte[][] _buffers = [new byte[BufferSize], new byte[BufferSize], new byte[BufferSize]];
    private readonly bool _trackCounts;
    private bool _seqScanEnabled = true;
    private bool _freezeAllowed = true;

    private CopyWorker(NpgsqlConnection source, NpgsqlConnection target, string? slotName, NpgsqlLogSequenceNumber snapshotLsn, ISnapshotProgress progress, bool trackCounts)
    {
        _trackCounts = trackCounts;
        _source = source;
        _target = target;
        _slotName = slotName;
        _snapshotLsn = snapshotLsn;
        _progress = progress;
    }

    /// <summary>Opens a source session inside the exported snapshot and a target session.</summary>
    public static async Task<CopyWorker> OpenAsync(string sourceConnectionString, string targetConnectionString, string snapshotName,
        NpgsqlLogSequenceNumber snapshotLsn, string? slotName, bool replicaRole, ISnapshotProgress progress, CancellationToken cancellationToken)
    {
        var source = new NpgsqlConnection(CopyConnectionString(sourceConnectionString));
        var target = new NpgsqlConnection(CopyConnectionString(targetConnectionString));
        try
        {
            await source.OpenAsync(cancellationToken).ConfigureAwait(false);
            await SnapshotSession.ImportAsync(source, snapshotName, cancellationToken).ConfigureAwait(false);
            await target.OpenAsync(cancellationToken).ConfigureAwait(false);
            // A lost chunk commit (target crash) loses its done mark with it, so asynchronous
            // commit cannot make progress lie; the final hand-over commits synchronously.
            bool trackCounts;
            // replicaRole: rows of one consistent snapshot, not checked against foreign keys created before them (SchemaCopy.EarlyForeignKeysAsync).
            var replica = replicaRole ? "SET session_replication_role = replica; " : "";
            await using (var cmd = new NpgsqlCommand("SET synchronous_commit = off; SET statement_timeout = 0; " + replica + ConnectionInfo.CanonicalTextInputSql + "; SELECT current_setting('track_counts')::boolean", target))
                trackCounts = (bool)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            return new CopyWorker(source, target, slotName, snapshotLsn, progress, trackCounts);
        }
        catch
        {
            await source.DisposeAsync().ConfigureAwait(false);
            await target.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    internal static string CopyConnectionString(string connectionString) =>
        new NpgsqlConnectionStringBuilder(connectionString) { ReadBufferSize = BufferSize, WriteBufferSize = BufferSize, Pooling = false, CommandTimeout = 0 }.ConnectionString;

    /// <summary>
    /// Copies one chunk and, when the target took exactly the rows the source sent, marks it done
    /// in the same target transaction. A chunk whose counts differ is rolled back (left undone, so
    /// a rerun copies it again) and its counts are returned for the summary.
    /// <para>Counting costs no scan: the source's rows are counted in the COPY stream as it passes
    /// (the rows the snapshot holds in the chunk's range), the target's are the net rows the chunk's
    /// transaction added to the table (<c>pg_stat_get_xact_tuples_inserted − _deleted</c>, read
    /// before and after the COPY inside that transaction, so a trigger's extra or missing rows show).
    /// With <c>track_counts</c> off on the target, <see cref="ChunkCopy.TargetRows"/> is null and the
    /// caller counts the table once it is complete.</para>
    /// <para>A whole-table chunk is loaded with <c>COPY … (FREEZE)</c> after <c>TRUNCATE ONLY</c> in
    /// the same transaction (the table is empty: this chunk is its only one): the rows arrive frozen
    /// and all-visible, so neither the index builds nor the first reads on the target rewrite every
    /// page to set hint bits, and no anti-wraparound vacuum rewrites them later.</para>
    /// </summary>
    public async Task<ChunkCopy> CopyAsync(Chunk chunk, bool textFormat, CancellationToken cancellationToken)
    {
        var table = chunk.Table;
        var columns = string.Join(", ", table.WritableColumns.Select(c => c.QuotedName));
        // A whole table is copied by name (COPY of a table never includes inheritance children);
        // a range needs the query form.
        var copyOut = chunk.Kind == ChunkKind.Whole
            ? $"COPY {table.QuotedName} ({columns}) TO STDOUT{(textFormat ? "" : " (FORMAT binary)")}"
            : $"COPY (SELECT {columns} FROM ONLY {table.QuotedName}{chunk.WhereClause()}) TO STDOUT{(textFormat ? "" : " (FORMAT binary)")}";
        var label = new KeyValuePair<string, object?>("table", table.DisplayName);
        var counter = new CopyRowCounter(textFormat);
        long bytes = 0, reportedRows = 0, reportedBytes = 0;

        // A key range is a slice of the table: read it through the key index, never by a full
        // scan per chunk (with N chunks a sequential scan would read the table N times).
        var wantSeqScan = chunk.Kind != ChunkKind.KeyRange;
        if (wantSeqScan != _seqScanEnabled)
        {
            await using var set = new NpgsqlCommand(wantSeqScan ? "SET enable_seqscan = on" : "SET enable_seqscan = off", _source);
            await set.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            _seqScanEnabled = wantSeqScan;
        }

        var tx = await _target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var freeze = chunk.Kind == ChunkKind.Whole && _freezeAllowed;
            if (freeze)
            {
                try
                {
                    await using var truncate = new NpgsqlCommand($"TRUNCATE ONLY {table.QuotedName}", _target, tx);
                    await truncate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.InsufficientPrivilege or PostgresErrorCodes.FeatureNotSupported)
                {
                    // Not ours to truncate (owners copied with --copy-ownership) or referenced by a
                    // foreign key: load it the ordinary way, in a fresh transaction.
                    _freezeAllowed = e.SqlState != PostgresErrorCodes.InsufficientPrivilege;
                    await tx.RollbackAsync(cancellationToken).ConfigureAwait(false);
                    await tx.DisposeAsync().ConfigureAwait(false);
                    tx = await _target.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
                    freeze = false;
                }
            }

            var options = (textFormat, freeze) switch
            {
                (false, false) => " (FORMAT binary)",
                (false, true) => " (FORMAT binary, FREEZE)",
                (true, true) => " (FREEZE)",
                _ => "",
            };
            var copyIn = $"COPY {table.QuotedName} ({columns}) FROM STDIN{options}";
            var before = _trackCounts ? await NetRowsAddedAsync(table, tx, cancellationToken).ConfigureAwait(false) : 0;

            if (!textFormat)
            {
                await using var input = await _target.BeginRawBinaryCopyAsync(copyIn, cancellationToken).ConfigureAwait(false);
                await using var output = await _source.BeginRawBinaryCopyAsync(copyOut, cancellationToken).ConfigureAwait(false);
                // Reading the source and writing the target overlap: the next buffer is read while the
                // previous one is written, each side on its own connection and task.
                var filled = System.Threading.Channels.Channel.CreateBounded<(byte[] Buffer, int Length)>(_buffers.Length);
                var free = System.Threading.Channels.Channel.CreateUnbounded<byte[]>();
                foreach (var spare in _buffers)
                    free.Writer.TryWrite(spare);
                using var stopReading = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var reading = Task.Run(async () =>
                {
                    try
                    {
                        while (true)
                        {
                            var buffer = await free.Reader.ReadAsync(stopReading.Token).ConfigureAwait(false);
                            // A read returns at most one CopyData message, which the server sends per row:
                            // gather many rows per buffer, so the target gets one write per megabyte.
                            var count = 0;
                            int read;
                            while (count < buffer.Length - MinReadSpace
                                   && (read = await output.ReadAsync(buffer.AsMemory(count), stopReading.Token).ConfigureAwait(false)) > 0)
                                count += read;
                            if (count == 0)
                                break;
                            counter.Feed(buffer.AsSpan(0, count));
                            await filled.Writer.WriteAsync((buffer, count), stopReading.Token).ConfigureAwait(false);
                        }

                        filled.Writer.Complete();
                    }
                    catch (Exception e)
                    {
                        filled.Writer.Complete(e);
                    }
                }, CancellationToken.None);
                try
                {
                    await foreach (var (buffer, count) in filled.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                    {
                        await input.WriteAsync(buffer.AsMemory(0, count), cancellationToken).ConfigureAwait(false);
                        free.Writer.TryWrite(buffer);
                        bytes += count;
                        if (bytes - reportedBytes >= 4 * BufferSize)
                        {
                            var rows = counter.Rows; // the reader's count so far (progress only)
                            Report(table.TableName, label, rows - reportedRows, bytes - reportedBytes);
                            reportedRows = rows;
                            reportedBytes = bytes;
                        }
                    }
                }
                catch
                {
                    await stopReading.CancelAsync().ConfigureAwait(false);
                    throw;
                }
                finally
                {
                    await reading.ConfigureAwait(false); // never throws: its failure ends the loop above
                }
            }
            else
            {
                // Npgsql's raw stream refuses text COPY; its text reader/writer pass the same lines.
                var chars = new char[BufferSize / 2];
                using var input = await _target.BeginTextImportAsync(copyIn, cancellationToken).ConfigureAwait(false);
                using var output = await _source.BeginTextExportAsync(copyOut, cancellationToken).ConfigureAwait(false);
                int read;
                while ((read = await output.ReadAsync(chars, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    counter.Feed(chars.AsSpan(0, read));
                    await input.WriteAsync(chars.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                    bytes += System.Text.Encoding.UTF8.GetByteCount(chars.AsSpan(0, read));
                }

                await input.FlushAsync(cancellationToken).ConfigureAwait(false);
            }

            long? written = _trackCounts ? await NetRowsAddedAsync(table, tx, cancellationToken).ConfigureAwait(false) - before : null;
            if (written is { } w && w != counter.Rows)
            {
                await tx.RollbackAsync(cancellationToken).ConfigureAwait(false);
                return new ChunkCopy(counter.Rows, bytes, w, Committed: false);
            }

            if (_slotName is not null)
            {
                await using var mark = SnapshotState.MarkChunkDoneCommand(_target, _slotName, chunk, _snapshotLsn, counter.Rows, bytes);
                mark.Transaction = tx;
                await mark.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
            Report(table.TableName, label, counter.Rows - reportedRows, bytes - reportedBytes);
            return new ChunkCopy(counter.Rows, bytes, written, Committed: true);
        }
        finally
        {
            await tx.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Rows this transaction has added to <paramref name="table"/> so far, net of deletions (backend-local statistics: no scan).</summary>
    private async Task<long> NetRowsAddedAsync(TableInfo table, NpgsqlTransaction tx, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT pg_stat_get_xact_tuples_inserted(r) - pg_stat_get_xact_tuples_deleted(r) FROM (SELECT $1::regclass::oid AS r) x", _target, tx);
        cmd.Parameters.AddWithValue(table.QuotedName);
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>
    /// The target's row count of a finished table, for a target with <c>track_counts</c> off only
    /// (taken by the worker that finished it while others still copy).
    /// </summary>
    public async Task<long> CountTargetAsync(TableInfo table, CancellationToken cancellationToken)
    {
        await using var t = new NpgsqlCommand($"SELECT count(*) FROM ONLY {table.QuotedName}", _target);
        return (long)(await t.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>False when the target does not keep per-table statistics: counts need a scan then.</summary>
    public bool TargetTracksCounts => _trackCounts;

    private void Report(TableName table, KeyValuePair<string, object?> label, long rows, long bytes)
    {
        ReplicatorMetrics.SnapshotRows.Add(rows, label);
        ReplicatorMetrics.SnapshotBytes.Add(bytes, label);
        ReplicatorMetrics.SnapshotLastProgress.Record(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0);
        _progress.Copied(table, rows, bytes);
    }

    public async ValueTask DisposeAsync()
    {
        await _source.DisposeAsync().ConfigureAwait(false);
        await _target.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Tables (by oid) whose columns cannot travel in binary COPY between two clusters: composite
    /// types and arrays of user-defined or composite types embed type OIDs that differ on the target.
    /// </summary>
    public static async Task<HashSet<uint>> TablesNeedingTextFormatAsync(NpgsqlConnection source, IEnumerable<TableInfo> tables, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT DISTINCT a.attrelid
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
            LEFT JOIN pg_type e ON b.typcategory = 'A' AND e.oid = b.typelem
            WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
              AND (b.typtype = 'c' OR (e.oid IS NOT NULL AND (e.oid >= 16384 OR e.typtype IN ('c', 'd'))))
            """, source);
        cmd.Parameters.Add(new NpgsqlParameter { Value = tables.Select(t => t.Oid).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Oid });
        var result = new HashSet<uint>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            result.Add(reader.GetFieldValue<uint>(0));
        return result;
    }
}

/// <summary>What one chunk's copy did.</summary>
/// <param name="Rows">Rows read from the source (counted in the COPY stream).</param>
/// <param name="TargetRows">Net rows the chunk's transaction added to the target table; null when the target keeps no statistics (<c>track_counts</c> off).</param>
/// <param name="Committed">False when the counts differed: the chunk was rolled back and stays undone.</param>
public sealed record ChunkCopy(long Rows, long Bytes, long? TargetRows, bool Committed);

/// <summary>
/// Counts tuples in a COPY stream as it passes, without copying or decoding values. Binary: skips
/// the header, then reads each tuple's field count and field lengths and jumps over the data
/// (the stream may split anywhere, so partial integers are carried between calls). Text: counts
/// newlines, which only end rows (a newline in a value is escaped as <c>\n</c>).
/// </summary>
public sealed class CopyRowCounter(bool text)
{
    private const int SignatureLength = 11 + 4 + 4;

    private readonly byte[] _pending = new byte[SignatureLength];
    private int _pendingCount;
    private State _state = State.Header;
    private long _skip;
    private int _fieldsLeft;

    private enum State
    {
        Header,
        HeaderExtension,
        TupleStart,
        FieldLength,
        FieldData,
        Done,
    }

    public long Rows { get; private set; }

    /// <summary>Text COPY as characters: rows end in newlines.</summary>
    public void Feed(ReadOnlySpan<char> data) => Rows += data.Count('\n');

    public void Feed(ReadOnlySpan<byte> data)
    {
        if (text)
        {
            Rows += data.Count((byte)'\n');
            return;
        }

        while (data.Length > 0 && _state != State.Done)
        {
            switch (_state)
            {
                case State.Header:
                    if (!Need(ref data, SignatureLength))
                        return;
                    _skip = BinaryPrimitives.ReadInt32BigEndian(_pending.AsSpan(15, 4));
                    _state = State.HeaderExtension;
                    break;
                case State.HeaderExtension:
                case State.FieldData:
                    var n = (int)Math.Min(_skip, data.Length);
                    data = data[n..];
                    _skip -= n;
                    if (_skip == 0)
                        _state = _state == State.HeaderExtension ? State.TupleStart : NextField();
                    break;
                case State.TupleStart:
                    if (!Need(ref data, 2))
                        return;
                    var fields = BinaryPrimitives.ReadInt16BigEndian(_pending);
                    if (fields < 0)
                    {
                        _state = State.Done;
                        break;
                    }

                    Rows++;
                    _fieldsLeft = fields;
                    _state = fields == 0 ? State.TupleStart : State.FieldLength;
                    break;
                case State.FieldLength:
                    if (!Need(ref data, 4))
                        return;
                    var length = BinaryPrimitives.ReadInt32BigEndian(_pending);
                    _skip = Math.Max(length, 0);
                    _state = _skip == 0 ? NextField() : State.FieldData;
                    break;
                case State.Done:
                default:
                    return;
            }
        }
    }

    private State NextField() => --_fieldsLeft > 0 ? State.FieldLength : State.TupleStart;

    /// <summary>Gathers <paramref name="count"/> bytes into the pending buffer; true (and reset) once complete.</summary>
    private bool Need(ref ReadOnlySpan<byte> data, int count)
    {
        var take = Math.Min(count - _pendingCount, data.Length);
        data[..take].CopyTo(_pending.AsSpan(_pendingCount));
        _pendingCount += take;
        data = data[take..];
        if (_pendingCount < count)
            return false;
        _pendingCount = 0;
        return true;
    }
}
