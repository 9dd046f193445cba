using System.Globalization;
using System.Text;
using System.Text.Json;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;

namespace Replicator.Kafka.Debezium;

/// <summary>What one Kafka record means to the applier.</summary>
public abstract record DecodedRecord(KafkaPosition Position);

/// <summary>A row change or truncate, with the transaction metadata Debezium attached (if any).</summary>
/// <param name="Xid">The source transaction id (<c>source.txId</c>).</param>
/// <param name="TransactionKey">The transaction block's id without its <c>:lsn</c> suffix; null without transaction metadata.</param>
/// <param name="TotalOrder">The event's position in its transaction (1-based); 0 without metadata.</param>
/// <param name="SnapshotRead">An <c>op: r</c> record: a row as a snapshot read it, at the snapshot's position (<see cref="Lsn"/>), which every record of that snapshot shares.</param>
public sealed record DecodedChange(
    KafkaPosition Position,
    ChangeEvent Change,
    uint Xid,
    string? TransactionKey,
    long TotalOrder,
    NpgsqlLogSequenceNumber Lsn,
    DateTimeOffset SourceTime,
    bool SnapshotRead = false) : DecodedRecord(Position);

/// <summary>BEGIN or END on the transaction topic.</summary>
/// <param name="IdLsn">The LSN after the colon in Debezium's <c>xid:lsn</c> id (END: the commit's LSN); null for bare ids.</param>
/// <param name="CommitLsn">Our producer's commit LSN header; null for records from a real Debezium connector.</param>
/// <param name="EndLsn">Our producer's end LSN header.</param>
public sealed record DecodedTransactionMarker(
    KafkaPosition Position,
    bool IsEnd,
    string TransactionKey,
    long? EventCount,
    IReadOnlyDictionary<string, long>? DataCollections,
    DateTimeOffset Time,
    NpgsqlLogSequenceNumber? IdLsn,
    NpgsqlLogSequenceNumber? CommitLsn,
    NpgsqlLogSequenceNumber? EndLsn) : DecodedRecord(Position);

/// <summary>
/// A record on the heartbeat topic written by our producer: the source's WAL had reached
/// <paramref name="WalEnd"/> with no transaction open, and every transaction before it was
/// acknowledged by Kafka before this record was produced.
/// </summary>
public sealed record DecodedHeartbeat(KafkaPosition Position, NpgsqlLogSequenceNumber WalEnd, DateTimeOffset Time) : DecodedRecord(Position);

/// <summary>A record the applier passes over (tombstone, a heartbeat without a WAL position); its offset still counts as consumed.</summary>
public sealed record DecodedSkip(KafkaPosition Position, string Why) : DecodedRecord(Position);

/// <summary>
/// Reads Kafka records written by our producer or by a real Debezium PostgreSQL connector (2.x,
/// 3.x; JsonConverter with or without schemas) back into <see cref="RowChange"/> and
/// <see cref="TruncateChange"/> with PostgreSQL text values the applier can cast to the target's
/// column types. Rows are shaped like the target table (<see cref="TableInfo"/>): generated columns
/// are left out, a column the record does not carry becomes NULL in an insert and "unchanged" in an
/// update, <c>__debezium_unavailable_value</c> becomes <see cref="ValueKind.UnchangedToast"/>.
/// Every failure is a <see cref="DebeziumFormatException"/> naming topic, partition and offset.
/// Not thread-safe (it caches relations).
/// </summary>
public sealed class DebeziumDeserializer
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static readonly string UnavailableBase64 = System.Convert.ToBase64String(Encoding.UTF8.GetBytes(ValueConverters.Unavailable));
    private static readonly string UnavailableHex = System.Convert.ToHexStringLower(Encoding.UTF8.GetBytes(ValueConverters.Unavailable));

    private readonly DebeziumSourceSettings _settings;
    private readonly Func<string, string, TableInfo?> _tables;
    private readonly Dictionary<(string, string), Shape> _shapes = [];

    /// <param name="tables">The target table for a source (schema, table), or null when it does not exist.</param>
    public DebeziumDeserializer(DebeziumSourceSettings settings, Func<string, string, TableInfo?> tables)
    {
        _settings = settings.Validate();
        _tables = tables;
    }

    /// <summary>The target table a <c>&lt;prefix&gt;.&lt;schema&gt;.&lt;table&gt;</c> topic is named after, if any.</summary>
    private TableInfo? TableOfTopic(string topic)
    {
        var last = topic.LastIndexOf('.');
        var before = last > 0 ? topic.LastIndexOf('.', last - 1) : -1;
        return before < 0 ? null : _tables(topic[(before + 1)..last], topic[(last + 1)..]);
    }

    /// <summary>Forgets cached table shapes (after DDL on the target).</summary>
    public void Invalidate()
    {
        _shapes.Clear();
        _shapeByTopic.Clear();
    }

    /// <summary>Decodes one record (spans are copied; the consumer takes values with <see cref="Take"/> instead).</summary>
    public DecodedRecord Decode(KafkaPosition position, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, IReadOnlyList<KeyValuePair<string, byte[]>>? headers = null) =>
        Decode(position, key.IsEmpty ? null : key.ToArray(), value.IsEmpty ? null : value.ToArray(), headers);

    /// <summary>
    /// Decodes one record. JsonConverter repeats the whole schema (most of the bytes) in every
    /// record; when a record's schema is byte for byte the one its topic had before, only the
    /// payload is parsed (<see cref="TryCachedEnvelope"/>), otherwise the whole record.
    /// </summary>
    public DecodedRecord Decode(KafkaPosition position, byte[]? key, byte[]? value, IReadOnlyList<KeyValuePair<string, byte[]>>? headers = null) =>
        Decode(position, key, value is null || value.Length == 0 ? null : new ConsumedValue(value), headers);

    /// <summary>
    /// What the consumer keeps of a record's value, read straight from the client's buffer: when
    /// the record is <c>{"schema":S,"payload":P}</c> with S byte for byte the schema its topic's
    /// previous record had, only P is copied (a few hundred bytes of a 3.6 KB pgbench event), with
    /// that schema; otherwise the whole value. Null for a tombstone. Never throws: what cannot be
    /// read is reported by <see cref="Decode(KafkaPosition, byte[], ConsumedValue, IReadOnlyList{KeyValuePair{string, byte[]}})"/>.
    /// </summary>
    public ConsumedValue? Take(string topic, ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
            return null;
        if (!topic.StartsWith(HeartbeatTopicPrefix, StringComparison.Ordinal) && TryCachedEnvelope(topic, value, out var cached, out var start, out var length))
            return new ConsumedValue(value.Slice(start, length).ToArray(), cached.Schema, cached.Raw);
        return new ConsumedValue(value.ToArray());
    }

    /// <summary>Decodes one record whose value the consumer took with <see cref="Take"/>.</summary>
    public DecodedRecord Decode(KafkaPosition position, byte[]? key, ConsumedValue? consumed, IReadOnlyList<KeyValuePair<string, byte[]>>? headers = null)
    {
        if (consumed is null)
            return new DecodedSkip(position, "tombstone");
        var value = consumed.Bytes;
        if (position.Topic.StartsWith(HeartbeatTopicPrefix, StringComparison.Ordinal))
            return DecodeHeartbeat(position, value, headers);
        JsonDocument? document = null;
        ConnectSchema? schema = null;
        var whole = true;
        // The payload alone: as taken, or found in the whole value behind its topic's cached schema text.
        var layout = consumed.PayloadOnly;
        ReadOnlyMemory<byte> payloadBytes = value;
        ConnectSchema? cached = consumed.Schema;
        if (!layout && TryCachedEnvelope(position.Topic, value, out var envelope, out var start, out var length))
        {
            layout = true;
            payloadBytes = value.AsMemory(start, length);
            cached = envelope.Schema;
        }

        if (layout)
        {
            try
            {
                document = JsonDocument.Parse(payloadBytes);
                schema = cached;
                whole = false;
            }
            catch (JsonException)
            {
                // Not the layout it seemed to be: the whole record is parsed below, and reports any error.
                if (consumed.SchemaText is { } schemaText)
                    value = [.. EnvelopeStart, .. schemaText, .. PayloadStart, .. value, (byte)'}'];
            }
        }

        if (document is null)
        {
            try
            {
                document = JsonDocument.Parse(value);
            }
            catch (JsonException e)
            {
                throw new DebeziumFormatException(position, $"value is not JSON ({e.Message}): is the connector using JsonConverter?", e);
            }
        }

        using (document)
        {
            try
            {
                JsonElement payload;
                if (whole)
                {
                    (schema, payload) = Unwrap(document.RootElement);
                    RememberEnvelope(position.Topic, value, document.RootElement, schema);
                }
                else
                {
                    payload = document.RootElement;
                }

                if (payload.ValueKind != JsonValueKind.Object)
                    throw new DebeziumFormatException(position, "value payload is not an object");
                if (payload.TryGetProperty("status"u8, out var status) && payload.TryGetProperty("id"u8, out _))
                    return DecodeMarker(position, payload, status.GetString(), headers);
                if (position.Topic.StartsWith("__debezium-heartbeat", StringComparison.Ordinal))
                    return new DecodedSkip(position, "heartbeat");
                if (!payload.TryGetProperty("op"u8, out var op))
                {
                    // Another topic under the prefix may carry anything; a table's own topic carries
                    // change envelopes, and skipping what is there would lose its rows.
                    if (TableOfTopic(position.Topic) is { } table)
                        throw new DebeziumFormatException(position, $"the record on {table.DisplayName}'s topic is not a Debezium change envelope (no 'op'): topics flattened by ExtractNewRecordState (unwrap) or another transform are not supported; point the applier at the connector's own topics");
                    return new DecodedSkip(position, "not a change event");
                }

                if (op.ValueEquals("m"u8))
                    return new DecodedSkip(position, "logical decoding message (op m): nothing to apply");
                return DecodeChange(position, key, schema, payload, op);
            }
            catch (DebeziumFormatException)
            {
                throw;
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException or KeyNotFoundException or OverflowException or ArgumentException or JsonException or IndexOutOfRangeException)
            {
                throw new DebeziumFormatException(position, e.Message, e);
            }
        }
    }

    /// <summary>Debezium's heartbeat topics: <c>__debezium-heartbeat.&lt;topic.prefix&gt;</c>.</summary>
    public const string HeartbeatTopicPrefix = "__debezium-heartbeat.";

    /// <summary>
    /// Our heartbeats carry the WAL end in a header; a Debezium connector's carry only <c>ts_ms</c>
    /// (no source position the applier could use), so they are passed over.
    /// </summary>
    private static DecodedRecord DecodeHeartbeat(KafkaPosition position, byte[] value, IReadOnlyList<KeyValuePair<string, byte[]>>? headers)
    {
        NpgsqlLogSequenceNumber? walEnd;
        try
        {
            walEnd = Header(headers, ReplicatorHeaders.WalEnd);
        }
        catch (FormatException e)
        {
            throw new DebeziumFormatException(position, $"heartbeat header {ReplicatorHeaders.WalEnd} is not an LSN: {e.Message}", e);
        }

        if (walEnd is null)
            return new DecodedSkip(position, "heartbeat without a WAL position");
        var time = DateTimeOffset.UnixEpoch;
        try
        {
            using var document = JsonDocument.Parse(value);
            var root = document.RootElement;
            var payload = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("payload"u8, out var p) ? p : root;
            if (payload.ValueKind == JsonValueKind.Object && payload.TryGetProperty("ts_ms"u8, out var ts) && ts.ValueKind == JsonValueKind.Number)
                time = DateTimeOffset.FromUnixTimeMilliseconds(ts.GetInt64());
        }
        catch (JsonException e)
        {
            throw new DebeziumFormatException(position, $"heartbeat value is not JSON ({e.Message})", e);
        }

        return new DecodedHeartbeat(position, walEnd.Value, time);
    }

    private static ReadOnlySpan<byte> EnvelopeStart => "{\"schema\":"u8;

    private static ReadOnlySpan<byte> PayloadStart => ",\"payload\":"u8;

    /// <summary>Per topic: the schema text its last enveloped record carried, and that schema parsed.</summary>
    private readonly Dictionary<string, (byte[] Raw, ConnectSchema? Schema)> _topicEnvelopes = new(StringComparer.Ordinal);

    /// <summary>
    /// The record is <c>{"schema":S,"payload":P}</c> (JsonConverter's compact layout) with S byte
    /// for byte the schema this topic's previous record had: then P is at
    /// <paramref name="payloadStart"/> for <paramref name="payloadLength"/> bytes, and S needs no parsing. The caller still parses P as exactly one JSON value, so a record
    /// that only looks like this layout falls back to a full parse.
    /// </summary>
    private bool TryCachedEnvelope(string topic, ReadOnlySpan<byte> span, out (byte[] Raw, ConnectSchema? Schema) cached, out int payloadStart, out int payloadLength)
    {
        payloadStart = payloadLength = 0;
        if (!_topicEnvelopes.TryGetValue(topic, out cached))
            return false;
        var rawLength = cached.Raw.Length;
        var start = EnvelopeStart.Length + rawLength + PayloadStart.Length;
        if (span.Length <= start + 1 || span[^1] != (byte)'}' || !span.StartsWith(EnvelopeStart)
            || !span.Slice(EnvelopeStart.Length, rawLength).SequenceEqual(cached.Raw) || !span.Slice(EnvelopeStart.Length + rawLength).StartsWith(PayloadStart))
        {
            return false;
        }

        payloadStart = start;
        payloadLength = span.Length - start - 1;
        return true;
    }

    /// <summary>After a full parse: remembers the topic's schema text when the record has the compact envelope layout.</summary>
    private void RememberEnvelope(string topic, byte[] value, JsonElement root, ConnectSchema? schema)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("schema"u8, out var schemaElement) || !root.TryGetProperty("payload"u8, out _))
            return;
        var count = 0;
        foreach (var unused in root.EnumerateObject())
            count++;
        if (count != 2)
            return;
        var raw = System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(schemaElement);
        var span = value.AsSpan();
        if (span.Length <= EnvelopeStart.Length + raw.Length + PayloadStart.Length + 1 || !span.StartsWith(EnvelopeStart)
            || !span.Slice(EnvelopeStart.Length, raw.Length).SequenceEqual(raw) || !span.Slice(EnvelopeStart.Length + raw.Length).StartsWith(PayloadStart))
        {
            return;
        }

        if (_topicEnvelopes.Count > 10_000)
            _topicEnvelopes.Clear();
        _topicEnvelopes[topic] = (raw.ToArray(), schema);
    }

    private (ConnectSchema? Schema, JsonElement Payload) Unwrap(JsonElement root)
    {
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("payload", out var payload) && root.TryGetProperty("schema", out var schema))
        {
            var count = 0;
            foreach (var unused in root.EnumerateObject())
                count++;
            if (count == 2)
                return (schema.ValueKind == JsonValueKind.Object ? CachedSchema(schema) : null, payload);
        }

        return (null, root);
    }

    private readonly Dictionary<int, List<(byte[] Raw, ConnectSchema Schema)>> _schemaCache = [];

    /// <summary>
    /// Every record repeats its schema; parsing it once per distinct text (compared byte for byte)
    /// keeps the reader at Kafka speed. Bounded: cleared when it grows past 1,000 schemas.
    /// </summary>
    private ConnectSchema CachedSchema(JsonElement schema)
    {
        var raw = System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(schema);
        var hash = new HashCode();
        hash.AddBytes(raw);
        var key = hash.ToHashCode();
        if (_schemaCache.TryGetValue(key, out var bucket))
        {
            foreach (var (cachedRaw, cached) in bucket)
            {
                if (raw.SequenceEqual(cachedRaw))
                    return cached;
            }
        }
        else
        {
            if (_schemaCache.Count > 1000)
                _schemaCache.Clear();
            _schemaCache[key] = bucket = [];
        }

        var parsed = ConnectSchema.Parse(schema);
        bucket.Add((raw.ToArray(), parsed));
        return parsed;
    }

    private static DecodedTransactionMarker DecodeMarker(KafkaPosition position, JsonElement payload, string? status, IReadOnlyList<KeyValuePair<string, byte[]>>? headers)
    {
        var (key, idLsn) = SplitTransactionId(payload.GetProperty("id").GetString()!);
        var isEnd = status switch
        {
            "BEGIN" => false,
            "END" => true,
            _ => throw new DebeziumFormatException(position, $"transaction marker with status '{status}' (expected BEGIN or END)"),
        };
        long? eventCount = payload.TryGetProperty("event_count", out var ec) && ec.ValueKind == JsonValueKind.Number ? ec.GetInt64() : null;
        Dictionary<string, long>? collections = null;
        if (payload.TryGetProperty("data_collections", out var dc) && dc.ValueKind == JsonValueKind.Array)
        {
            collections = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var c in dc.EnumerateArray())
                collections[c.GetProperty("data_collection").GetString()!] = c.GetProperty("event_count").GetInt64();
        }

        if (isEnd && eventCount is null)
            throw new DebeziumFormatException(position, "END marker without event_count");
        var ts = payload.TryGetProperty("ts_ms", out var t) && t.ValueKind == JsonValueKind.Number ? DateTimeOffset.FromUnixTimeMilliseconds(t.GetInt64()) : DateTimeOffset.UnixEpoch;
        return new DecodedTransactionMarker(position, isEnd, key, eventCount, collections, ts, idLsn, Header(headers, ReplicatorHeaders.CommitLsn), Header(headers, ReplicatorHeaders.EndLsn));
    }

    private static NpgsqlLogSequenceNumber? Header(IReadOnlyList<KeyValuePair<string, byte[]>>? headers, string name)
    {
        if (headers is null)
            return null;
        foreach (var (k, v) in headers)
        {
            if (k == name)
                return NpgsqlLogSequenceNumber.Parse(Encoding.ASCII.GetString(v));
        }

        return null;
    }

    /// <summary>Debezium PostgreSQL's ids are <c>xid:lsn</c> (3.x) or a bare xid; the xid names the transaction.</summary>
    public static (string Key, NpgsqlLogSequenceNumber? Lsn) SplitTransactionId(string id)
    {
        var colon = id.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
            return (id, null);
        return (id[..colon], ulong.TryParse(id.AsSpan(colon + 1), NumberStyles.None, Inv, out var lsn) ? new NpgsqlLogSequenceNumber(lsn) : null);
    }

    private DecodedChange DecodeChange(KafkaPosition position, byte[]? key, ConnectSchema? schema, JsonElement payload, JsonElement opElement)
    {
        var source = payload.GetProperty("source"u8);
        var shape = ShapeOf(position, source.GetProperty("schema"u8), source.GetProperty("table"u8));
        var schemaName = shape.Info.Schema;
        var tableName = shape.Info.Name;
        uint xid = source.TryGetProperty("txId"u8, out var x) && x.ValueKind == JsonValueKind.Number ? (uint)x.GetInt64() : 0;
        var lsn = source.TryGetProperty("lsn"u8, out var l) && l.ValueKind == JsonValueKind.Number ? new NpgsqlLogSequenceNumber(l.GetUInt64()) : default;
        var ts = source.TryGetProperty("ts_ms"u8, out var t) && t.ValueKind == JsonValueKind.Number ? DateTimeOffset.FromUnixTimeMilliseconds(t.GetInt64()) : DateTimeOffset.UnixEpoch;
        string? txKey = null;
        long totalOrder = 0;
        if (payload.TryGetProperty("transaction"u8, out var tx) && tx.ValueKind == JsonValueKind.Object)
        {
            txKey = TransactionKey(tx.GetProperty("id"u8));
            var order = tx.GetProperty("total_order"u8);
            totalOrder = order.ValueKind == JsonValueKind.String ? long.Parse(order.GetString()!, Inv) : order.GetInt64();
        }

        var op = OpCode(opElement);
        var rowSchema = schema?.Field("after") ?? schema?.Field("before");
        ChangeEvent change;
        switch (op)
        {
            case "c":
            case "r":
                change = new RowChange(shape.Relation, ChangeKind.Insert, lsn, null, false, Row(position, shape, rowSchema, payload.GetProperty("after"u8), ValueKind.Null));
                break;
            case "u":
            {
                var before = payload.TryGetProperty("before"u8, out var b) && b.ValueKind == JsonValueKind.Object ? Row(position, shape, rowSchema, b, ValueKind.Null) : null;
                change = new RowChange(shape.Relation, ChangeKind.Update, lsn, before, false, Row(position, shape, rowSchema, payload.GetProperty("after"u8), ValueKind.UnchangedToast));
                break;
            }

            case "d":
            {
                IReadOnlyList<ColumnValue> old;
                if (payload.TryGetProperty("before"u8, out var b) && b.ValueKind == JsonValueKind.Object)
                {
                    old = Row(position, shape, rowSchema, b, ValueKind.Null);
                }
                else
                {
                    // REPLICA IDENTITY without old values: the record key still names the row.
                    if (key is null || key.Length == 0)
                        throw new DebeziumFormatException(position, $"delete on {schemaName}.{tableName} carries neither 'before' nor a key: set REPLICA IDENTITY on the source table");
                    using var keyDoc = JsonDocument.Parse(key);
                    var (keySchema, keyPayload) = Unwrap(keyDoc.RootElement);
                    old = Row(position, shape, keySchema, keyPayload, ValueKind.Null);
                }

                change = new RowChange(shape.Relation, ChangeKind.Delete, lsn, old, shape.HasKey, null);
                break;
            }

            case "t":
                change = new TruncateChange([shape.Relation], false, false, lsn);
                break;
            default:
                throw new DebeziumFormatException(position, $"unknown op '{op}' (expected c, r, u, d or t)");
        }

        return new DecodedChange(position, change, xid, txKey, totalOrder, lsn, ts, SnapshotRead: op == "r");
    }

    /// <summary>The op as one of the usual one-letter strings (no allocation for those).</summary>
    private static string OpCode(JsonElement op)
    {
        if (op.ValueKind != JsonValueKind.String)
            return op.ToString();
        if (op.ValueEquals("c"u8))
            return "c";
        if (op.ValueEquals("u"u8))
            return "u";
        if (op.ValueEquals("d"u8))
            return "d";
        if (op.ValueEquals("r"u8))
            return "r";
        if (op.ValueEquals("t"u8))
            return "t";
        return op.GetString() ?? "";
    }

    /// <summary>The transaction block's id without its <c>:lsn</c> suffix; the previous key is reused when equal (events of one transaction come together).</summary>
    private string TransactionKey(JsonElement id)
    {
        var raw = System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(id);
        if (id.ValueKind == JsonValueKind.String && raw.Length > 2 && raw.IndexOf((byte)'\\') < 0)
        {
            var text = raw[1..^1];
            var colon = text.IndexOf((byte)':');
            var xid = colon < 0 ? text : text[..colon];
            if (_lastTransactionKey is { } last && last.Length == xid.Length && System.Text.Ascii.Equals(xid, last))
                return last;
        }

        return _lastTransactionKey = SplitTransactionId(id.GetString()!).Key;
    }

    private string? _lastTransactionKey;

    private Shape ShapeOf(KafkaPosition position, JsonElement schemaElement, JsonElement tableElement)
    {
        if (_shapeByTopic.TryGetValue(position.Topic, out var known) && schemaElement.ValueEquals(known.Info.Schema) && tableElement.ValueEquals(known.Info.Name))
            return known;
        var schema = schemaElement.GetString()!;
        var table = tableElement.GetString()!;
        if (!_shapes.TryGetValue((schema, table), out var shape))
        {
            var info = _tables(schema, table)
                ?? throw new DebeziumFormatException(position, $"table {schema}.{table} does not exist on the target: create it (the snapshot copies the schema) or stop consuming this topic");
            shape = new Shape(info);
            _shapes[(schema, table)] = shape;
        }

        if (_shapeByTopic.Count > 10_000)
            _shapeByTopic.Clear();
        return _shapeByTopic[position.Topic] = shape;
    }

    /// <summary>The shape a topic's last record named (checked against each record's source.schema/table).</summary>
    private readonly Dictionary<string, Shape> _shapeByTopic = new(StringComparer.Ordinal);

    private ColumnValue[] Row(KafkaPosition position, Shape shape, ConnectSchema? rowSchema, JsonElement row, ValueKind missing)
    {
        var values = new ColumnValue[shape.Columns.Length];
        Span<bool> seen = values.Length <= 256 ? stackalloc bool[values.Length] : new bool[values.Length];
        var fields = shape.FieldsOf(rowSchema);
        var next = 0;
        foreach (var property in row.EnumerateObject())
        {
            // Fields usually come in the table's column order: check the expected one first, without allocating its name.
            int i;
            if (next < shape.Columns.Length && property.NameEquals(shape.Columns[next].Name))
            {
                i = next;
            }
            else if (!shape.Index.TryGetValue(property.Name, out i))
            {
                if (shape.Generated.Contains(property.Name))
                    continue;
                throw new DebeziumFormatException(position, $"column {property.Name} of {shape.Info.DisplayName} does not exist on the target: add it there (ALTER TABLE {shape.Info.QuotedName} ADD COLUMN …) before replaying");
            }

            next = i + 1;
            var column = shape.Columns[i];
            try
            {
                values[i] = Convert(property.Value, fields?[i], column.TypeOid, column.Typmod, column.TypeName);
            }
            catch (UnsupportedSettingException e)
            {
                throw new DebeziumFormatException(position, $"column {property.Name} of {shape.Info.DisplayName}: {e.Message}");
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException or ArgumentException)
            {
                throw new DebeziumFormatException(position, $"column {property.Name} of {shape.Info.DisplayName} ({column.TypeName}): cannot read {Shorten(property.Value)}: {e.Message}", e);
            }

            seen[i] = true;
        }

        for (var i = 0; i < values.Length; i++)
        {
            if (!seen[i])
                values[i] = new ColumnValue(missing, null);
        }

        return values;
    }

    private static string Shorten(JsonElement value)
    {
        var text = value.GetRawText();
        return text.Length > 80 ? text[..80] + "…" : text;
    }

    private sealed class UnsupportedSettingException(string message) : Exception(message);

    private ColumnValue Convert(JsonElement value, ConnectSchema? schema, uint oid, int typmod, string typeName)
    {
        if (value.ValueKind == JsonValueKind.Null)
            return ColumnValue.Null;
        if (IsUnavailable(value))
            return ColumnValue.UnchangedToast;
        var text = schema is not null ? WithSchema(value, schema, oid, typmod, typeName) : WithoutSchema(value, oid, typmod, typeName);
        return text is null ? ColumnValue.Null : ColumnValue.Of(text);
    }

    private static bool IsUnavailable(JsonElement value)
    {
        if (value.ValueKind == JsonValueKind.String)
            return value.ValueEquals(ValueConverters.Unavailable) || value.ValueEquals(UnavailableBase64) || value.ValueEquals(UnavailableHex);

        // Arrays carry the placeholder as their single element.
        return value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 1 && value[0].ValueKind == JsonValueKind.String && IsUnavailable(value[0]);
    }

    private static bool IsExactNumeric(uint oid) => oid is PgOid.Numeric or PgOid.Money;

    private string? WithSchema(JsonElement value, ConnectSchema schema, uint oid, int typmod, string typeName)
    {
        switch (schema.Name)
        {
            case "org.apache.kafka.connect.data.Decimal":
                return PgText.FormatDecimal(PgText.FromTwosComplement(value.GetBytesFromBase64()), int.Parse(schema.Parameter("scale") ?? "0", Inv));
            case "io.debezium.data.VariableScaleDecimal":
                return VariableScale(value);
            case "io.debezium.time.Date":
            case "org.apache.kafka.connect.data.Date":
                return PgText.FormatDate(value.GetInt64());
            case "io.debezium.time.Time":
            case "org.apache.kafka.connect.data.Time":
                return PgText.FormatTime(value.GetInt64() * 1000);
            case "io.debezium.time.MicroTime":
                return PgText.FormatTime(value.GetInt64());
            case "io.debezium.time.NanoTime":
                return PgText.FormatTime(value.GetInt64() / 1000);
            case "io.debezium.time.Timestamp":
            case "org.apache.kafka.connect.data.Timestamp":
                return PgText.FormatTimestamp(value.GetInt64() * 1000);
            case "io.debezium.time.MicroTimestamp":
                return PgText.FormatTimestamp(value.GetInt64());
            case "io.debezium.time.NanoTimestamp":
                return PgText.FormatTimestamp(PgText.FloorDiv(value.GetInt64(), 1000));
            case "io.debezium.time.IsoDate":
                return IsoDate(value.GetString()!);
            case "io.debezium.time.IsoTime":
            case "io.debezium.time.IsoTimestamp":
                return value.GetString();
            case "io.debezium.time.MicroDuration":
                return PgText.FormatMicroDuration(value.GetInt64());
            case "io.debezium.data.Bits":
            {
                var length = typmod > 0 ? typmod : int.Parse(schema.Parameter("length") ?? "0", Inv);
                var bytes = value.GetBytesFromBase64();
                if (length <= 0 || length == int.MaxValue)
                    length = Math.Max(1, bytes.Length * 8);
                return PgText.BytesToBits(bytes, length);
            }

            case "io.debezium.data.geometry.Point":
                return string.Create(Inv, $"({value.GetProperty("x").GetDouble():R},{value.GetProperty("y").GetDouble():R})");
        }

        switch (schema.Type)
        {
            case "array":
            {
                var elementOid = PgOid.ArrayElements.TryGetValue(oid, out var e) ? e : PgOid.Text;
                var elementName = typeName.EndsWith("[]", StringComparison.Ordinal) ? typeName[..^2] : typeName;
                return Replicator.Core.Sql.ArrayLiteral.Format(value.EnumerateArray().Select(item =>
                {
                    var v = Convert(item, schema.Items, elementOid, typmod, elementName);
                    return v.Kind == ValueKind.Text ? v.Text : null;
                }).ToList());
            }

            case "boolean":
                return BoolText(value, oid);
            case "float32":
            case "float64":
                if (IsExactNumeric(oid))
                    throw new UnsupportedSettingException($"decimal.handling.mode=double (a {schema.Type}) cannot carry a {typeName} exactly; set decimal.handling.mode=precise (or string) on the connector and re-snapshot");
                return FloatText(value);
            case "int8":
            case "int16":
            case "int32":
            case "int64":
                return value.GetRawText();
            case "bytes":
                return oid == PgOid.Bytea ? PgText.FormatBytea(value.GetBytesFromBase64()) : Encoding.UTF8.GetString(value.GetBytesFromBase64());
            case "string":
                return oid == PgOid.Bytea ? BinaryFromString(value.GetString()!) : value.GetString();
            case "struct":
                throw new FormatException($"a struct ({schema.Name ?? "unnamed"}) cannot be written to a {typeName} column");
            default:
                return value.ToString();
        }
    }

    private string? WithoutSchema(JsonElement value, uint oid, int typmod, string typeName)
    {
        if (PgOid.ArrayElements.TryGetValue(oid, out var elementOid) || (value.ValueKind == JsonValueKind.Array && typeName.EndsWith("[]", StringComparison.Ordinal)))
        {
            if (elementOid == 0)
                elementOid = PgOid.Text;
            var elementName = typeName.EndsWith("[]", StringComparison.Ordinal) ? typeName[..^2] : typeName;
            return Replicator.Core.Sql.ArrayLiteral.Format(value.EnumerateArray().Select(item =>
            {
                var v = item.ValueKind == JsonValueKind.Null ? ColumnValue.Null : ColumnValue.Of(WithoutSchema(item, elementOid, typmod, elementName)!);
                return v.Kind == ValueKind.Text ? v.Text : null;
            }).ToList());
        }

        switch (oid)
        {
            case PgOid.Bool:
                return BoolText(value, oid);
            case PgOid.Bit:
            case PgOid.Varbit:
                if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    return value.ValueKind == JsonValueKind.True ? "1" : "0";
                return PgText.BytesToBits(value.GetBytesFromBase64(), typmod > 0 ? typmod : Math.Max(1, value.GetBytesFromBase64().Length * 8));
            case PgOid.Numeric:
            case PgOid.Money:
                switch (_settings.DecimalHandlingMode)
                {
                    case "double":
                        throw new UnsupportedSettingException($"decimal.handling.mode=double cannot carry a {typeName} exactly; set decimal.handling.mode=precise (or string) on the connector and re-snapshot");
                    case "string":
                        return value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText();
                }

                if (value.ValueKind == JsonValueKind.Object)
                    return VariableScale(value);
                if (value.ValueKind == JsonValueKind.Number)
                    throw new UnsupportedSettingException($"got a JSON number for a {typeName}: the connector seems to use decimal.handling.mode=double, which loses digits; use precise or string");
                var scale = oid == PgOid.Money ? _settings.MoneyFractionDigits : PgOid.NumericPrecision(typmod)?.Scale
                    ?? throw new UnsupportedSettingException($"an unconstrained numeric arrived as Decimal bytes without its scale; with schemas disabled the connector must send it as VariableScaleDecimal (the default) or use decimal.handling.mode=string");
                return PgText.FormatDecimal(PgText.FromTwosComplement(value.GetBytesFromBase64()), scale);
            case PgOid.Float4:
            case PgOid.Float8:
                return FloatText(value);
            // isostring (ISO-8601 text in UTC; PostgreSQL reads it, a date without its 'Z').
            case PgOid.Date when value.ValueKind == JsonValueKind.String:
                return IsoDate(value.GetString()!);
            case PgOid.Time or PgOid.Timestamp when value.ValueKind == JsonValueKind.String:
                return value.GetString();
            case PgOid.Date:
                return PgText.FormatDate(value.GetInt64());
            case PgOid.Time:
            {
                var micros = _settings.TimePrecisionMode switch
                {
                    "connect" => false,
                    "adaptive_time_microseconds" or "microseconds" => true,
                    _ => PgOid.TimePrecision(typmod) is < 0 or > 3,
                };
                return PgText.FormatTime(micros ? value.GetInt64() : value.GetInt64() * 1000);
            }

            case PgOid.Timestamp:
            {
                var micros = _settings.TimePrecisionMode switch
                {
                    "connect" => false,
                    "microseconds" => true,
                    _ => PgOid.TimePrecision(typmod) is < 0 or > 3,
                };
                return PgText.FormatTimestamp(micros ? value.GetInt64() : value.GetInt64() * 1000);
            }

            case PgOid.Interval:
                return _settings.IntervalHandlingMode == "string" || value.ValueKind == JsonValueKind.String ? value.GetString() : PgText.FormatMicroDuration(value.GetInt64());
            case PgOid.Bytea:
                return BinaryFromString(value.GetString()!);
            case PgOid.Point:
                return string.Create(Inv, $"({value.GetProperty("x").GetDouble():R},{value.GetProperty("y").GetDouble():R})");
        }

        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            _ => throw new FormatException($"a JSON {value.ValueKind} cannot be written to a {typeName} column"),
        };
    }

    private static string IsoDate(string text) => text.EndsWith('Z') ? text[..^1] : text;

    private static string? BoolText(JsonElement value, uint oid)
    {
        var b = value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new FormatException($"expected true or false, got {value.ValueKind}"),
        };
        return oid is PgOid.Bit or PgOid.Varbit ? (b ? "1" : "0") : (b ? "true" : "false");
    }

    private static string FloatText(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();

    private static string VariableScale(JsonElement value)
    {
        var scale = value.GetProperty("scale").GetInt32();
        var unscaled = PgText.FromTwosComplement(value.GetProperty("value").GetBytesFromBase64());
        return PgText.FormatDecimal(unscaled, scale);
    }

    private string BinaryFromString(string text)
    {
        var bytes = _settings.BinaryHandlingMode switch
        {
            "hex" => System.Convert.FromHexString(text),
            "base64-url-safe" => System.Convert.FromBase64String(text.Replace('-', '+').Replace('_', '/').PadRight(text.Length + ((4 - (text.Length % 4)) % 4), '=')),
            _ => System.Convert.FromBase64String(text),
        };
        return PgText.FormatBytea(bytes);
    }

    private sealed record ShapeColumn(string Name, uint TypeOid, int Typmod, string TypeName);

    /// <summary>A target table as the deserializer needs it: writable columns and the relation events carry.</summary>
    private sealed class Shape
    {
        public Shape(TableInfo info)
        {
            Info = info;
            Relation = CatalogRelation.Of(info);
            Columns = Relation.Columns.Select(c => new ShapeColumn(c.Name, c.TypeOid, c.TypeModifier, c.TypeName)).ToArray();
            Index = Relation.Columns.Select((c, i) => (c.Name, i)).ToDictionary(p => p.Name, p => p.i, StringComparer.Ordinal);
            Generated = info.Columns.Where(c => c.IsGenerated).Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
            HasKey = Relation.Columns.Any(c => c.IsKey);
        }

        public TableInfo Info { get; }

        public ShapeColumn[] Columns { get; }

        public Dictionary<string, int> Index { get; }

        public HashSet<string> Generated { get; }

        public bool HasKey { get; }

        public StreamRelation Relation { get; }

        private ConnectSchema? _fieldsFor;
        private ConnectSchema?[]? _fields;

        /// <summary>The row schema's field for each column (by index), for the schema the last record carried.</summary>
        public ConnectSchema?[]? FieldsOf(ConnectSchema? rowSchema)
        {
            if (rowSchema is null)
                return null;
            if (!ReferenceEquals(rowSchema, _fieldsFor))
            {
                _fields = Columns.Select(c => rowSchema.Field(c.Name)).ToArray();
                _fieldsFor = rowSchema;
            }

            return _fields;
        }
    }
}

/// <summary>
/// A record value as <see cref="DebeziumDeserializer.Take"/> kept it: the whole value, or only its
/// payload with the schema its topic's cached text stands for (and that text, from which the whole
/// value can be written again when the payload alone does not parse).
/// </summary>
public sealed record ConsumedValue(byte[] Bytes, ConnectSchema? Schema = null, byte[]? SchemaText = null)
{
    /// <summary>Only the payload was kept (its schema text is known).</summary>
    public bool PayloadOnly => SchemaText is not null;
}
