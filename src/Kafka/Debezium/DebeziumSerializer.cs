using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using NpgsqlTypes;
using Replicator.Core.Changes;

namespace Replicator.Kafka.Debezium;

/// <summary>Which snapshot marker an <c>op: r</c> record carries in <c>source.snapshot</c>.</summary>
public enum SnapshotMarker : byte
{
    True,
    First,
    FirstInDataCollection,
    LastInDataCollection,
    Last,
}

/// <summary>
/// Turns the framed change stream into Kafka records exactly as the Debezium PostgreSQL connector
/// 3.x (3.6.1.Final checked) with JsonConverter and schemas enabled would write them:
/// <list type="bullet">
/// <item>table topic <c>&lt;prefix&gt;.&lt;schema&gt;.&lt;table&gt;</c>, key struct of the replica-identity columns
/// (<c>…Key</c>), value envelope (<c>…Envelope</c>, fields before, after, source, transaction, op,
/// ts_ms, ts_us, ts_ns);</item>
/// <item>a tombstone after every delete; an update that changes the key becomes a delete, its
/// tombstone and a create, as Debezium does;</item>
/// <item>BEGIN and END on <c>&lt;prefix&gt;.transaction</c>; END carries event_count and per-collection
/// counts, and our commit/end LSNs as headers.</item>
/// </list>
/// Not thread-safe: one instance follows one stream. Records of a transaction are returned as its
/// events arrive (nothing is held back), so memory stays bounded however large the transaction.
/// </summary>
public sealed class DebeziumSerializer
{
    private const string SnapshotAllowed = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

    private static readonly ConnectSchema SourceSchema = ConnectSchema.Struct("io.debezium.connector.postgresql.Source", false,
    [
        ("version", ConnectSchema.Primitive("string", false)),
        ("connector", ConnectSchema.Primitive("string", false)),
        ("name", ConnectSchema.Primitive("string", false)),
        ("ts_ms", ConnectSchema.Primitive("int64", false)),
        ("snapshot", new ConnectSchema("string", true, "io.debezium.data.Enum", 1) { Parameters = [new("allowed", SnapshotAllowed)], DefaultString = "false" }),
        ("db", ConnectSchema.Primitive("string", false)),
        ("sequence", ConnectSchema.Primitive("string", true)),
        ("ts_us", ConnectSchema.Primitive("int64", true)),
        ("ts_ns", ConnectSchema.Primitive("int64", true)),
        ("schema", ConnectSchema.Primitive("string", false)),
        ("table", ConnectSchema.Primitive("string", false)),
        ("txId", ConnectSchema.Primitive("int64", true)),
        ("lsn", ConnectSchema.Primitive("int64", true)),
        ("xmin", ConnectSchema.Primitive("int64", true)),
        ("origin", ConnectSchema.Primitive("string", true)),
        ("origin_lsn", ConnectSchema.Primitive("int64", true)),
    ], version: 1);

    private static readonly ConnectSchema TransactionBlockSchema = ConnectSchema.Struct("event.block", true,
    [
        ("id", ConnectSchema.Primitive("string", false)),
        ("total_order", ConnectSchema.Primitive("int64", false)),
        ("data_collection_order", ConnectSchema.Primitive("int64", false)),
    ], version: 1);

    private static readonly ConnectSchema TransactionKeySchema = ConnectSchema.Struct("io.debezium.connector.common.TransactionMetadataKey", false,
        [("id", ConnectSchema.Primitive("string", false))], version: 1);

    private static readonly ConnectSchema TransactionValueSchema = ConnectSchema.Struct("io.debezium.connector.common.TransactionMetadataValue", false,
    [
        ("status", ConnectSchema.Primitive("string", false)),
        ("id", ConnectSchema.Primitive("string", false)),
        ("event_count", ConnectSchema.Primitive("int64", true)),
        ("data_collections", ConnectSchema.Array(ConnectSchema.Struct("event.collection", true,
            [("data_collection", ConnectSchema.Primitive("string", false)), ("event_count", ConnectSchema.Primitive("int64", false))], version: 1), true)),
        ("ts_ms", ConnectSchema.Primitive("int64", false)),
    ], version: 1);

    private static readonly ConnectSchema HeartbeatKeySchema = ConnectSchema.Struct("io.debezium.connector.common.ServerNameKey", false,
        [("serverName", ConnectSchema.Primitive("string", false))], version: 1);

    private static readonly ConnectSchema HeartbeatValueSchema = ConnectSchema.Struct("io.debezium.connector.common.Heartbeat", false,
        [("ts_ms", ConnectSchema.Primitive("int64", false))], version: 1);

    // The fixed schemas as JSON, written once: every transaction record repeats one of them.
    private static readonly byte[] TransactionKeySchemaJson = SchemaJson(TransactionKeySchema);
    private static readonly byte[] TransactionValueSchemaJson = SchemaJson(TransactionValueSchema);
    private static readonly byte[] HeartbeatKeySchemaJson = SchemaJson(HeartbeatKeySchema);
    private static readonly byte[] HeartbeatValueSchemaJson = SchemaJson(HeartbeatValueSchema);

    private readonly DebeziumOptions _options;
    private readonly JsonEncodedText _encodedVersion;
    private readonly JsonEncodedText _encodedServerName;
    private readonly JsonEncodedText _encodedDatabase;
    private readonly IPostgresTypeResolver _types;
    private readonly Func<DateTimeOffset> _clock;
    private readonly ConditionalWeakTable<StreamRelation, RelationShape> _shapes = new();
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);

    private TransactionBegin? _transaction;
    private bool _beginSent;
    private long _totalOrder;
    private readonly Dictionary<string, long> _collectionCounts = new(StringComparer.Ordinal);
    private readonly List<string> _collectionOrder = [];
    private NpgsqlLogSequenceNumber? _lastCommitLsn;

    /// <param name="clock">The processing time for the envelope's ts_ms/ts_us/ts_ns (injectable for golden tests).</param>
    public DebeziumSerializer(DebeziumOptions options, IPostgresTypeResolver? types = null, Func<DateTimeOffset>? clock = null)
    {
        _options = options;
        _encodedVersion = Names.Encode(options.ConnectorVersion);
        _encodedServerName = Names.Encode(options.EffectiveServerName);
        _encodedDatabase = Names.Encode(options.DatabaseName);
        _types = types ?? BuiltInTypeResolver.Instance;
        _clock = clock ?? (() => DateTimeOffset.UtcNow);
    }

    /// <summary>The records for one event, in the order they must be produced.</summary>
    /// <exception cref="InvalidOperationException">The stream is not framed (a change outside a transaction).</exception>
    public IReadOnlyList<DebeziumRecord> Serialize(ChangeEvent change)
    {
        switch (change)
        {
            case TransactionBegin begin:
                // BEGIN goes out with the first change: Debezium's transaction id is "xid:lsn" with
                // the LSN of the message carrying it, and BEGIN's is the transaction's first LSN.
                _transaction = begin;
                _beginSent = false;
                _totalOrder = 0;
                _collectionCounts.Clear();
                _collectionOrder.Clear();
                return [];
            case RowChange row:
            {
                var tx = Require(row);
                var records = new List<DebeziumRecord>(4);
                BeginIfFirst(tx, row.Lsn, records);
                records.AddRange(SerializeRow(row, tx));
                return records;
            }

            case TruncateChange truncate:
            {
                var tx = Require(truncate);
                var records = new List<DebeziumRecord>(truncate.Relations.Count + 1);
                BeginIfFirst(tx, truncate.Lsn, records);
                foreach (var relation in truncate.Relations)
                    records.Add(ChangeRecord(relation, "t", null, null, null, tx, truncate.Lsn, null));
                return records;
            }

            case TransactionCommit commit:
            {
                var tx = _transaction ?? throw new InvalidOperationException($"commit of transaction {commit.Xid} without its begin: the change stream is not framed");
                _transaction = null;
                _lastCommitLsn = commit.CommitLsn;
                if (!_options.ProvideTransactionMetadata)
                    return [];
                var records = new List<DebeziumRecord>(2);
                BeginIfFirst(tx, commit.EndLsn, records);
                records.Add(TransactionRecord(DebeziumRecordKind.TransactionEnd, "END", tx.Xid, commit.EndLsn, commit.CommitTime, tx.CommitLsn,
                    [new(ReplicatorHeaders.CommitLsn, Encoding.ASCII.GetBytes(commit.CommitLsn.ToString())), new(ReplicatorHeaders.EndLsn, Encoding.ASCII.GetBytes(commit.EndLsn.ToString()))]));
                return records;
            }

            case Heartbeat heartbeat:
                return [HeartbeatRecord(heartbeat)];
            default:
                throw new ArgumentException($"unknown change event {change.GetType().Name}", nameof(change));
        }
    }

    /// <summary>
    /// An initial-snapshot row as an <c>op: r</c> record for downstream consumers (outside any
    /// transaction: no transaction block, as Debezium's snapshot records).
    /// </summary>
    public DebeziumRecord SerializeSnapshotRow(StreamRelation relation, IReadOnlyList<ColumnValue> row, SnapshotMarker marker, NpgsqlLogSequenceNumber consistentPoint, DateTimeOffset snapshotTime)
    {
        var snapshot = marker switch
        {
            SnapshotMarker.First => "first",
            SnapshotMarker.FirstInDataCollection => "first_in_data_collection",
            SnapshotMarker.LastInDataCollection => "last_in_data_collection",
            SnapshotMarker.Last => "last",
            _ => "true",
        };
        var pseudo = new TransactionBegin(0, consistentPoint, snapshotTime);
        return ChangeRecord(relation, "r", null, row, snapshot, pseudo, consistentPoint, null, withTransaction: false);
    }

    private void BeginIfFirst(TransactionBegin tx, NpgsqlLogSequenceNumber firstLsn, List<DebeziumRecord> records)
    {
        if (_beginSent || !_options.ProvideTransactionMetadata)
            return;
        _beginSent = true;
        records.Add(TransactionRecord(DebeziumRecordKind.TransactionBegin, "BEGIN", tx.Xid, firstLsn, tx.CommitTime, tx.CommitLsn, null));
    }

    /// <summary>Debezium PostgreSQL's transaction id: <c>xid:lsn</c>, the LSN of the message it is attached to.</summary>
    public static string TransactionId(uint xid, NpgsqlLogSequenceNumber lsn) =>
        string.Create(CultureInfo.InvariantCulture, $"{xid}:{(ulong)lsn}");

    private TransactionBegin Require(ChangeEvent change) =>
        _transaction ?? throw new InvalidOperationException($"{change.GetType().Name} outside a transaction: the change stream is not framed");

    private List<DebeziumRecord> SerializeRow(RowChange row, TransactionBegin tx)
    {
        var shape = Shape(row.Relation);
        var records = new List<DebeziumRecord>(2);
        switch (row.Kind)
        {
            case ChangeKind.Insert:
                records.Add(ChangeRecord(row.Relation, "c", null, row.New, null, tx, row.Lsn, shape));
                break;
            case ChangeKind.Update:
                if (row.Old is not null && shape.KeyIndexes.Length > 0 && KeyChanged(shape, row.Old, row.New!))
                {
                    // Debezium turns a key change into a delete of the old key (plus tombstone) and a create of the new one.
                    records.Add(ChangeRecord(row.Relation, "d", row.Old, null, null, tx, row.Lsn, shape));
                    AddTombstone(records, shape, row.Old, tx);
                    records.Add(ChangeRecord(row.Relation, "c", null, row.New, null, tx, row.Lsn, shape));
                }
                else
                {
                    records.Add(ChangeRecord(row.Relation, "u", row.OldIsKeyOnly ? null : row.Old, row.New, null, tx, row.Lsn, shape));
                }

                break;
            case ChangeKind.Delete:
                records.Add(ChangeRecord(row.Relation, "d", row.Old, null, null, tx, row.Lsn, shape));
                AddTombstone(records, shape, row.Old!, tx);
                break;
        }

        return records;
    }

    /// <summary>A tombstone lets log compaction drop the key; a table without a key has nothing to compact, so it gets none.</summary>
    private void AddTombstone(List<DebeziumRecord> records, RelationShape shape, IReadOnlyList<ColumnValue> old, TransactionBegin tx)
    {
        var key = KeyBytes(shape, old);
        if (key is not null)
            records.Add(new DebeziumRecord(DebeziumRecordKind.Tombstone, shape.Topic, key, null, tx.CommitLsn));
    }

    private static bool KeyChanged(RelationShape shape, IReadOnlyList<ColumnValue> old, IReadOnlyList<ColumnValue> @new)
    {
        foreach (var i in shape.KeyIndexes)
        {
            if (old[i].Kind != ValueKind.UnchangedToast && @new[i].Kind != ValueKind.UnchangedToast && old[i] != @new[i])
                return true;
        }

        return false;
    }

    private DebeziumRecord ChangeRecord(StreamRelation relation, string op, IReadOnlyList<ColumnValue>? before, IReadOnlyList<ColumnValue>? after,
        string? snapshot, TransactionBegin tx, NpgsqlLogSequenceNumber lsn, RelationShape? shape, bool withTransaction = true)
    {
        shape ??= Shape(relation);
        var collection = shape.Collection;
        long collectionOrder = 0;
        if (withTransaction && _options.ProvideTransactionMetadata)
        {
            _totalOrder++;
            if (!_collectionCounts.TryGetValue(collection, out collectionOrder))
                _collectionOrder.Add(collection);
            _collectionCounts[collection] = ++collectionOrder;
        }

        var now = _clock();
        var w = BeginEnvelope(_buffer, shape.EnvelopeSchemaJson);
        w.WritePropertyName(Names.Before);
        WriteRow(w, shape, before);
        w.WritePropertyName(Names.After);
        WriteRow(w, shape, after);
        w.WriteStartObject(Names.Source);
        w.WriteString(Names.Version, _encodedVersion);
        w.WriteString(Names.Connector, Names.Postgresql);
        w.WriteString(Names.Name, _encodedServerName);
        w.WriteNumber(Names.TsMs, tx.CommitTime.ToUnixTimeMilliseconds());
        if (snapshot is null)
            w.WriteString(Names.Snapshot, Names.False);
        else
            w.WriteString(Names.Snapshot, snapshot);
        w.WriteString(Names.Db, _encodedDatabase);
        w.WriteString(Names.Sequence, Sequence(_lastCommitLsn, lsn, stackalloc char[64]));
        w.WriteNumber(Names.TsUs, UnixMicros(tx.CommitTime));
        w.WriteNumber(Names.TsNs, UnixMicros(tx.CommitTime) * 1000);
        w.WriteString(Names.Schema, shape.EncodedSchema);
        w.WriteString(Names.Table, shape.EncodedTable);
        if (snapshot is null)
            w.WriteNumber(Names.TxId, tx.Xid);
        else
            w.WriteNull(Names.TxId);
        w.WriteNumber(Names.Lsn, (ulong)lsn);
        w.WriteNull(Names.Xmin);
        w.WriteNull(Names.Origin);
        w.WriteNull(Names.OriginLsn);
        w.WriteEndObject();
        if (withTransaction && _options.ProvideTransactionMetadata)
        {
            w.WriteStartObject(Names.Transaction);
            Span<char> id = stackalloc char[32];
            w.WriteString(Names.Id, id[..TransactionId(tx.Xid, lsn, id)]);
            w.WriteNumber(Names.TotalOrder, _totalOrder);
            w.WriteNumber(Names.DataCollectionOrder, collectionOrder);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull(Names.Transaction);
        }

        w.WriteString(Names.Op, op);
        w.WriteNumber(Names.TsMs, now.ToUnixTimeMilliseconds());
        w.WriteNumber(Names.TsUs, UnixMicros(now));
        w.WriteNumber(Names.TsNs, UnixMicros(now) * 1000);

        var value = EndEnvelope(w, _buffer);
        var keyRow = before ?? after;
        var key = op == "t" || keyRow is null ? null : KeyBytes(shape, keyRow);
        return new DebeziumRecord(DebeziumRecordKind.Change, shape.Topic, key, value, tx.CommitLsn);
    }

    /// <summary>One writer reused for every record (Reset onto the target buffer): a new one per record was a measurable share of the cost.</summary>
    private Utf8JsonWriter Writer(IBufferWriter<byte> buffer)
    {
        if (_writer is null)
            _writer = new Utf8JsonWriter(buffer, JsonOptions.Writer);
        else
            _writer.Reset(buffer);
        return _writer;
    }

    private Utf8JsonWriter? _writer;

    /// <summary>Debezium's <c>source.sequence</c>: <c>["&lt;last commit lsn&gt;","&lt;lsn&gt;"]</c> (null for no previous commit).</summary>
    private static ReadOnlySpan<char> Sequence(NpgsqlLogSequenceNumber? lastCommit, NpgsqlLogSequenceNumber lsn, Span<char> buffer)
    {
        var n = 0;
        buffer[n++] = '[';
        if (lastCommit is null)
        {
            "null".CopyTo(buffer[n..]);
            n += 4;
        }
        else
        {
            buffer[n++] = '"';
            ((ulong)lastCommit.Value).TryFormat(buffer[n..], out var written, default, CultureInfo.InvariantCulture);
            n += written;
            buffer[n++] = '"';
        }

        buffer[n++] = ',';
        buffer[n++] = '"';
        ((ulong)lsn).TryFormat(buffer[n..], out var w2, default, CultureInfo.InvariantCulture);
        n += w2;
        buffer[n++] = '"';
        buffer[n++] = ']';
        return buffer[..n];
    }

    private static int TransactionId(uint xid, NpgsqlLogSequenceNumber lsn, Span<char> buffer)
    {
        xid.TryFormat(buffer, out var n, default, CultureInfo.InvariantCulture);
        buffer[n++] = ':';
        ((ulong)lsn).TryFormat(buffer[n..], out var m, default, CultureInfo.InvariantCulture);
        return n + m;
    }

    private static long UnixMicros(DateTimeOffset t) => (t.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;

    private static void WriteRow(Utf8JsonWriter w, RelationShape shape, IReadOnlyList<ColumnValue>? row)
    {
        if (row is null)
        {
            w.WriteNullValue();
            return;
        }

        w.WriteStartObject();
        for (var i = 0; i < shape.Columns.Length; i++)
        {
            var column = shape.Columns[i];
            w.WritePropertyName(column.EncodedName);
            var value = row[i];
            switch (value.Kind)
            {
                case ValueKind.Null:
                    w.WriteNullValue();
                    break;
                case ValueKind.UnchangedToast:
                    column.Converter.WriteUnavailable(w);
                    break;
                default:
                    try
                    {
                        column.Converter.Write(w, value.Text!);
                    }
                    catch (Exception e) when (e is FormatException or OverflowException or IndexOutOfRangeException or ArgumentException)
                    {
                        throw new FormatException($"column {column.Name} of {shape.DisplayName}: cannot convert its PostgreSQL text to Debezium's {column.Converter.Schema.Name ?? column.Converter.Schema.Type}: {e.Message}", e);
                    }

                    break;
            }
        }

        w.WriteEndObject();
    }

    private byte[]? KeyBytes(RelationShape shape, IReadOnlyList<ColumnValue> row)
    {
        if (shape.KeySchemaJson is null)
            return null;
        var w = BeginEnvelope(_keyBuffer, shape.KeySchemaJson);
        foreach (var i in shape.KeyIndexes)
        {
            var column = shape.Columns[i];
            w.WritePropertyName(column.EncodedName);
            if (row[i].Kind == ValueKind.Text)
                column.Converter.Write(w, row[i].Text!);
            else if (row[i].Kind == ValueKind.UnchangedToast)
                column.Converter.WriteUnavailable(w);
            else
                w.WriteNullValue();
        }

        return EndEnvelope(w, _keyBuffer);
    }

    private readonly ArrayBufferWriter<byte> _keyBuffer = new(256);

    private DebeziumRecord TransactionRecord(DebeziumRecordKind kind, string status, uint xid, NpgsqlLogSequenceNumber idLsn, DateTimeOffset time,
        NpgsqlLogSequenceNumber position, IReadOnlyList<KeyValuePair<string, byte[]>>? headers)
    {
        var id = TransactionId(xid, idLsn);
        var key = Json(TransactionKeySchemaJson, w => w.WriteString("id", id));
        var value = Json(TransactionValueSchemaJson, w =>
        {
            w.WriteString("status", status);
            w.WriteString("id", id);
            if (kind == DebeziumRecordKind.TransactionEnd)
            {
                w.WriteNumber("event_count", _totalOrder);
                w.WriteStartArray("data_collections");
                foreach (var collection in _collectionOrder)
                {
                    w.WriteStartObject();
                    w.WriteString("data_collection", collection);
                    w.WriteNumber("event_count", _collectionCounts[collection]);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }
            else
            {
                w.WriteNull("event_count");
                w.WriteNull("data_collections");
            }

            w.WriteNumber("ts_ms", time.ToUnixTimeMilliseconds());
        });
        return new DebeziumRecord(kind, _options.TransactionTopic, key, value, position, headers);
    }

    private DebeziumRecord HeartbeatRecord(Heartbeat heartbeat)
    {
        var key = Json(HeartbeatKeySchemaJson, w => w.WriteString("serverName", _options.EffectiveServerName));
        var value = Json(HeartbeatValueSchemaJson, w => w.WriteNumber("ts_ms", heartbeat.ServerTime.ToUnixTimeMilliseconds()));
        return new DebeziumRecord(DebeziumRecordKind.Heartbeat, _options.HeartbeatTopic, key, value, heartbeat.WalEnd,
            [new(ReplicatorHeaders.WalEnd, Encoding.ASCII.GetBytes(heartbeat.WalEnd.ToString()))]);
    }

    /// <summary>JsonConverter's <c>{"schema":…,"payload":{…}}</c> with a schema written once and the payload's fields from <paramref name="payload"/>.</summary>
    private byte[] Json(byte[] schemaJson, Action<Utf8JsonWriter> payload)
    {
        var w = BeginEnvelope(_buffer, schemaJson);
        payload(w);
        return EndEnvelope(w, _buffer);
    }

    /// <summary>
    /// Starts JsonConverter's <c>{"schema":S,"payload":{</c> in <paramref name="buffer"/> (emptied
    /// first), S being a schema written once as JSON, or only the payload's <c>{</c> with schemas
    /// disabled; the caller writes the payload's fields, then <see cref="EndEnvelope"/>.
    /// </summary>
    private Utf8JsonWriter BeginEnvelope(ArrayBufferWriter<byte> buffer, byte[] schemaJson)
    {
        buffer.ResetWrittenCount();
        var w = Writer(buffer);
        w.WriteStartObject();
        if (!_options.SchemasEnable)
            return w;
        w.WritePropertyName(Names.Schema);
        w.WriteRawValue(schemaJson, skipInputValidation: true);
        w.WriteStartObject(Names.Payload);
        return w;
    }

    /// <summary>Closes what <see cref="BeginEnvelope"/> opened and returns the record's bytes.</summary>
    private byte[] EndEnvelope(Utf8JsonWriter w, ArrayBufferWriter<byte> buffer)
    {
        w.WriteEndObject();
        if (_options.SchemasEnable)
            w.WriteEndObject();
        w.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    private static byte[] SchemaJson(ConnectSchema schema)
    {
        var buffer = new ArrayBufferWriter<byte>(2048);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer))
            schema.WriteTo(w);
        return buffer.WrittenSpan.ToArray();
    }

    private RelationShape Shape(StreamRelation relation) => _shapes.GetValue(relation, r => new RelationShape(r, this));

    /// <summary>Topic name as Debezium sanitizes it: characters outside [A-Za-z0-9._-] become '_'.</summary>
    public static string SanitizeTopic(string topic)
    {
        var chars = topic.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            if (!(char.IsAsciiLetterOrDigit(chars[i]) || chars[i] is '.' or '_' or '-'))
                chars[i] = '_';
        }

        return new string(chars);
    }

    private sealed record ShapeColumn(string Name, ColumnConverter Converter)
    {
        /// <summary>The name as the writer wants it (UTF-8, escaped): encoded once, not per record.</summary>
        public JsonEncodedText EncodedName { get; } = Names.Encode(Name);
    }

    /// <summary>The envelope's property names and fixed values, encoded once.</summary>
    private static class Names
    {
        public static readonly JsonEncodedText Schema = Encode("schema");
        public static readonly JsonEncodedText Payload = Encode("payload");
        public static readonly JsonEncodedText Before = Encode("before");
        public static readonly JsonEncodedText After = Encode("after");
        public static readonly JsonEncodedText Source = Encode("source");
        public static readonly JsonEncodedText Version = Encode("version");
        public static readonly JsonEncodedText Connector = Encode("connector");
        public static readonly JsonEncodedText Postgresql = Encode("postgresql");
        public static readonly JsonEncodedText Name = Encode("name");
        public static readonly JsonEncodedText TsMs = Encode("ts_ms");
        public static readonly JsonEncodedText TsUs = Encode("ts_us");
        public static readonly JsonEncodedText TsNs = Encode("ts_ns");
        public static readonly JsonEncodedText Snapshot = Encode("snapshot");
        public static readonly JsonEncodedText False = Encode("false");
        public static readonly JsonEncodedText Db = Encode("db");
        public static readonly JsonEncodedText Sequence = Encode("sequence");
        public static readonly JsonEncodedText Table = Encode("table");
        public static readonly JsonEncodedText TxId = Encode("txId");
        public static readonly JsonEncodedText Lsn = Encode("lsn");
        public static readonly JsonEncodedText Xmin = Encode("xmin");
        public static readonly JsonEncodedText Origin = Encode("origin");
        public static readonly JsonEncodedText OriginLsn = Encode("origin_lsn");
        public static readonly JsonEncodedText Transaction = Encode("transaction");
        public static readonly JsonEncodedText Id = Encode("id");
        public static readonly JsonEncodedText TotalOrder = Encode("total_order");
        public static readonly JsonEncodedText DataCollectionOrder = Encode("data_collection_order");
        public static readonly JsonEncodedText Op = Encode("op");

        public static JsonEncodedText Encode(string text) => JsonEncodedText.Encode(text, JsonOptions.Writer.Encoder);
    }

    /// <summary>Everything about a relation that does not change per event, computed once.</summary>
    private sealed class RelationShape
    {
        public RelationShape(StreamRelation relation, DebeziumSerializer owner)
        {
            var options = owner._options;
            DisplayName = relation.DisplayName;
            Collection = relation.Schema + "." + relation.Name;
            EncodedSchema = Names.Encode(relation.Schema);
            EncodedTable = Names.Encode(relation.Name);
            var baseName = $"{options.TopicPrefix}.{relation.Schema}.{relation.Name}";
            Topic = SanitizeTopic(baseName);
            Columns = relation.Columns.Select(c => new ShapeColumn(c.Name, ValueConverters.For(c, owner._types, options))).ToArray();
            // Debezium keys by the primary key. pgoutput flags the replica identity instead (every
            // column under FULL), so the resolver's primary key wins; without one, the flagged
            // columns, and no key at all under FULL.
            var primaryKey = owner._types.PrimaryKey(relation.RelationId);
            KeyIndexes = primaryKey is not null && primaryKey.All(k => relation.Columns.Any(c => c.Name == k))
                ? primaryKey.Select(k => relation.Columns.ToList().FindIndex(c => c.Name == k)).ToArray()
                : relation.ReplicaIdentity == 'f' ? [] : relation.KeyIndexes.ToArray();
            var keySet = KeyIndexes.ToHashSet();

            var valueFields = relation.Columns.Select((c, i) =>
                (c.Name, Columns[i].Converter.Schema.WithOptional(!keySet.Contains(i) && !owner._types.IsNotNull(relation.RelationId, c.Name)))).ToList();
            var valueSchema = ConnectSchema.Struct(baseName + ".Value", true, valueFields);
            var envelope = ConnectSchema.Struct(baseName + ".Envelope", false,
            [
                ("before", valueSchema),
                ("after", valueSchema),
                ("source", SourceSchema),
                ("transaction", TransactionBlockSchema),
                ("op", ConnectSchema.Primitive("string", false)),
                ("ts_ms", ConnectSchema.Primitive("int64", true)),
                ("ts_us", ConnectSchema.Primitive("int64", true)),
                ("ts_ns", ConnectSchema.Primitive("int64", true)),
            ], version: 2);
            EnvelopeSchemaJson = SchemaJson(envelope);
            if (KeyIndexes.Length > 0)
            {
                var keySchema = ConnectSchema.Struct(baseName + ".Key", false,
                    KeyIndexes.Select(i => (relation.Columns[i].Name, Columns[i].Converter.Schema.WithOptional(false))).ToList());
                KeySchemaJson = SchemaJson(keySchema);
            }
        }

        public string DisplayName { get; }

        /// <summary>Debezium's data collection name, <c>schema.table</c>.</summary>
        public string Collection { get; }

        public JsonEncodedText EncodedSchema { get; }

        public JsonEncodedText EncodedTable { get; }

        public string Topic { get; }

        public ShapeColumn[] Columns { get; }

        public int[] KeyIndexes { get; }

        public byte[] EnvelopeSchemaJson { get; }

        public byte[]? KeySchemaJson { get; }

    }
}
