using System.Text;
using System.Text.Json;
using NpgsqlTypes;
using Replicator.Core.Changes;
using Replicator.Kafka.Debezium;
using static Replicator.Tests.Kafka.DebeziumTestData;

namespace Replicator.Tests.Kafka;

/// <summary>
/// Golden JSON for the Debezium PostgreSQL connector 3.x format (JsonConverter, schemas enabled,
/// connector defaults). Expected values follow Debezium's documentation
/// (documentation/modules/ROOT/pages/connectors/postgresql.adoc, "Data type mappings") and, where the
/// documentation is older than the code (snapshot as an Enum, ts_us/ts_ns placement, origin
/// fields, transaction ids "xid:lsn"), debezium-connector-postgres 3.6.1.Final's source.
/// </summary>
public class DebeziumSerializerTests
{
    private const string SourceSchema =
        """{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":false,"field":"schema"},{"type":"string","optional":false,"field":"table"},{"type":"int64","optional":true,"field":"txId"},{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"},{"type":"string","optional":true,"field":"origin"},{"type":"int64","optional":true,"field":"origin_lsn"}],"optional":false,"name":"io.debezium.connector.postgresql.Source","version":1,"field":"source"}""";

    private const string BlockSchema =
        """{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"}""";

    private const string CustomersValue =
        "{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":\"id\"},{\"type\":\"string\",\"optional\":true,\"field\":\"name\"}],\"optional\":true,\"name\":\"dbserver1.public.customers.Value\",";

    private static string Text(byte[]? bytes) => Encoding.UTF8.GetString(bytes!);

    [Fact]
    public void Insert_becomes_a_create_event_with_the_exact_Debezium_envelope_key_and_topic()
    {
        var serializer = Serializer();
        Assert.Empty(serializer.Serialize(Begin()));
        var records = serializer.Serialize(Insert(Customers, 24023128, "1", "Anne"));

        Assert.Equal(2, records.Count);
        Assert.Equal(DebeziumRecordKind.TransactionBegin, records[0].Kind);
        var create = records[1];
        Assert.Equal("dbserver1.public.customers", create.Topic);
        Assert.Equal(
            """{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"dbserver1.public.customers.Key"},"payload":{"id":1}}""",
            Text(create.Key));
        var expected =
            "{\"schema\":{\"type\":\"struct\",\"fields\":[" + CustomersValue + "\"field\":\"before\"}," + CustomersValue + "\"field\":\"after\"}," +
            SourceSchema + "," + BlockSchema + "," +
            """{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"}],"optional":false,"name":"dbserver1.public.customers.Envelope","version":2},""" +
            "\"payload\":{\"before\":null,\"after\":{\"id\":1,\"name\":\"Anne\"}," +
            "\"source\":{\"version\":\"3.6.1.Final\",\"connector\":\"postgresql\",\"name\":\"dbserver1\",\"ts_ms\":1559033904863,\"snapshot\":\"false\",\"db\":\"inventory\",\"sequence\":\"[null,\\\"24023128\\\"]\",\"ts_us\":1559033904863123,\"ts_ns\":1559033904863123000,\"schema\":\"public\",\"table\":\"customers\",\"txId\":555,\"lsn\":24023128,\"xmin\":null,\"origin\":null,\"origin_lsn\":null}," +
            "\"transaction\":{\"id\":\"555:24023128\",\"total_order\":1,\"data_collection_order\":1},\"op\":\"c\",\"ts_ms\":1704164645123,\"ts_us\":1704164645123456,\"ts_ns\":1704164645123456000}}";
        Assert.Equal(expected, Text(create.Value));
    }

    [Fact]
    public void Transaction_topic_gets_BEGIN_with_the_first_LSN_and_END_with_per_collection_counts()
    {
        var orders = Customers with { RelationId = 16390, Name = "orders" };
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var first = serializer.Serialize(Insert(Customers, 100, "1", "a"));
        var second = serializer.Serialize(Insert(orders, 200, "7", "x"));
        var third = serializer.Serialize(Insert(Customers, 300, "2", "b"));
        var end = serializer.Serialize(Commit());

        var begin = first[0];
        Assert.Equal("dbserver1.transaction", begin.Topic);
        Assert.Equal(
            """{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1},"payload":{"id":"555:100"}}""",
            Text(begin.Key));
        const string valueSchema =
            """{"type":"struct","fields":[{"type":"string","optional":false,"field":"status"},{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":true,"field":"event_count"},{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"data_collection"},{"type":"int64","optional":false,"field":"event_count"}],"optional":true,"name":"event.collection","version":1},"optional":true,"field":"data_collections"},{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataValue","version":1}""";
        Assert.Equal("""{"schema":""" + valueSchema + ""","payload":{"status":"BEGIN","id":"555:100","event_count":null,"data_collections":null,"ts_ms":1559033904863}}""", Text(begin.Value));

        var endRecord = Assert.Single(end);
        Assert.Equal(DebeziumRecordKind.TransactionEnd, endRecord.Kind);
        Assert.Equal(
            """{"schema":""" + valueSchema + ""","payload":{"status":"END","id":"555:24023250","event_count":3,"data_collections":[{"data_collection":"public.customers","event_count":2},{"data_collection":"public.orders","event_count":1}],"ts_ms":1559033904863}}""",
            Text(endRecord.Value));
        Assert.Contains(endRecord.Headers!, h => h.Key == ReplicatorHeaders.EndLsn && Encoding.ASCII.GetString(h.Value) == new NpgsqlLogSequenceNumber(24023250).ToString());

        using var doc = JsonDocument.Parse(third[0].Value);
        var tx = doc.RootElement.GetProperty("payload").GetProperty("transaction");
        Assert.Equal("555:300", tx.GetProperty("id").GetString());
        Assert.Equal(3, tx.GetProperty("total_order").GetInt64());
        Assert.Equal(2, tx.GetProperty("data_collection_order").GetInt64());
        using var secondDoc = JsonDocument.Parse(second[0].Value);
        Assert.Equal(1, secondDoc.RootElement.GetProperty("payload").GetProperty("transaction").GetProperty("data_collection_order").GetInt64());
    }

    [Fact]
    public void Delete_is_followed_by_a_tombstone_with_the_same_key()
    {
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var records = serializer.Serialize(new RowChange(Customers, ChangeKind.Delete, new NpgsqlLogSequenceNumber(500), [V("1"), ColumnValue.Null], true, null));

        Assert.Equal([DebeziumRecordKind.TransactionBegin, DebeziumRecordKind.Change, DebeziumRecordKind.Tombstone], records.Select(r => r.Kind));
        Assert.Null(records[2].Value);
        Assert.Equal(records[1].Key, records[2].Key);
        using var doc = JsonDocument.Parse(records[1].Value);
        var payload = doc.RootElement.GetProperty("payload");
        Assert.Equal("d", payload.GetProperty("op").GetString());
        Assert.Equal("""{"id":1,"name":null}""", payload.GetProperty("before").GetRawText());
        Assert.Equal(JsonValueKind.Null, payload.GetProperty("after").ValueKind);
    }

    [Fact]
    public void Update_that_changes_the_key_becomes_delete_tombstone_and_create_as_Debezium_emits_it()
    {
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var records = serializer.Serialize(new RowChange(Customers, ChangeKind.Update, new NpgsqlLogSequenceNumber(600), [V("1"), ColumnValue.Null], true, [V("2"), V("Anne")]));
        var ops = records.Where(r => r.Kind == DebeziumRecordKind.Change).Select(r => JsonDocument.Parse(r.Value).RootElement.GetProperty("payload").GetProperty("op").GetString());
        Assert.Equal(["d", "c"], ops);
        Assert.Equal(DebeziumRecordKind.Tombstone, records[2].Kind);
        Assert.Contains("\"payload\":{\"id\":1}", Text(records[2].Key), StringComparison.Ordinal);
        Assert.Contains("\"payload\":{\"id\":2}", Text(records[3].Key), StringComparison.Ordinal);
    }

    [Fact]
    public void Update_without_key_change_has_null_before_under_default_replica_identity()
    {
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var records = serializer.Serialize(new RowChange(Customers, ChangeKind.Update, new NpgsqlLogSequenceNumber(600), null, false, [V("1"), V("Bo")]));
        var payload = JsonDocument.Parse(records[1].Value).RootElement.GetProperty("payload");
        Assert.Equal("u", payload.GetProperty("op").GetString());
        Assert.Equal(JsonValueKind.Null, payload.GetProperty("before").ValueKind);
        Assert.Equal("""{"id":1,"name":"Bo"}""", payload.GetProperty("after").GetRawText());
    }

    private sealed class FullIdentityCatalog : IPostgresTypeResolver
    {
        public IReadOnlyList<string>? EnumLabels(uint typeOid) => null;

        public uint? ArrayElementType(uint typeOid) => null;

        public bool IsNotNull(uint relationId, string column) => column == "name";

        public IReadOnlyList<string>? PrimaryKey(uint relationId) => relationId == 16384 ? ["id"] : null;
    }

    [Fact]
    public void Under_replica_identity_full_the_key_is_the_primary_key_and_before_is_the_whole_old_row()
    {
        // pgoutput flags every column as key under REPLICA IDENTITY FULL; Debezium still keys by the primary key.
        var full = Customers with { ReplicaIdentity = 'f', Columns = [new StreamColumn("id", 23, -1, true, "integer"), new StreamColumn("name", 25, -1, true, "text")] };
        var serializer = Serializer(new FullIdentityCatalog());
        serializer.Serialize(Begin());
        var records = serializer.Serialize(new RowChange(full, ChangeKind.Update, new NpgsqlLogSequenceNumber(600), [V("1"), V("Old")], false, [V("1"), V("New")]));
        Assert.Equal(
            """{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"dbserver1.public.customers.Key"},"payload":{"id":1}}""",
            Text(records[1].Key));
        var root = JsonDocument.Parse(records[1].Value).RootElement;
        Assert.Equal("""{"id":1,"name":"Old"}""", root.GetProperty("payload").GetProperty("before").GetRawText());
        Assert.Equal("u", root.GetProperty("payload").GetProperty("op").GetString());
        // NOT NULL columns are non-optional fields, as Debezium derives them from the table.
        Assert.Equal("""{"type":"string","optional":false,"field":"name"}""", root.GetProperty("schema").GetProperty("fields")[0].GetProperty("fields")[1].GetRawText());
    }

    [Fact]
    public void Truncate_becomes_one_op_t_event_per_table_with_no_key()
    {
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var records = serializer.Serialize(new TruncateChange([Customers], false, false, new NpgsqlLogSequenceNumber(700)));
        var t = records.Single(r => r.Kind == DebeziumRecordKind.Change);
        Assert.Null(t.Key);
        var payload = JsonDocument.Parse(t.Value).RootElement.GetProperty("payload");
        Assert.Equal("t", payload.GetProperty("op").GetString());
        Assert.Equal(JsonValueKind.Null, payload.GetProperty("after").ValueKind);
        Assert.Equal("customers", payload.GetProperty("source").GetProperty("table").GetString());
    }

    [Fact]
    public void Snapshot_rows_are_op_r_with_the_snapshot_marker_and_no_transaction_block()
    {
        var record = Serializer().SerializeSnapshotRow(Customers, [V("1"), V("Anne")], SnapshotMarker.Last, new NpgsqlLogSequenceNumber(42), CommitTime);
        var payload = JsonDocument.Parse(record.Value).RootElement.GetProperty("payload");
        Assert.Equal("r", payload.GetProperty("op").GetString());
        Assert.Equal("last", payload.GetProperty("source").GetProperty("snapshot").GetString());
        Assert.Equal(JsonValueKind.Null, payload.GetProperty("transaction").ValueKind);
    }

    [Fact]
    public void A_change_outside_a_transaction_is_refused_because_the_stream_must_be_framed()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Serializer().Serialize(Insert(Customers, 1, "1", "a")));
        Assert.Contains("not framed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Heartbeat_goes_to_the_Debezium_heartbeat_topic_with_the_server_name_key()
    {
        var record = Assert.Single(Serializer().Serialize(new Heartbeat(new NpgsqlLogSequenceNumber(99), CommitTime)));
        Assert.Equal("__debezium-heartbeat.dbserver1", record.Topic);
        Assert.Contains("\"payload\":{\"serverName\":\"dbserver1\"}", Text(record.Key), StringComparison.Ordinal);
        Assert.EndsWith("\"payload\":{\"ts_ms\":1559033904863}}", Text(record.Value), StringComparison.Ordinal);
    }

    [Fact]
    public void With_schemas_disabled_every_record_is_the_payload_alone_as_JsonConverter_writes_it()
    {
        // JsonConverter with schemas.enable=false writes exactly what is under "payload" with schemas on.
        static JsonElement Payload(byte[]? bytes) => JsonDocument.Parse(bytes!).RootElement.GetProperty("payload");
        List<DebeziumRecord> Stream(DebeziumSerializer serializer) =>
        [
            .. serializer.Serialize(Begin()),
            .. serializer.Serialize(Insert(Customers, 24023128, "1", "Anne")),
            .. serializer.Serialize(Commit()),
            .. serializer.Serialize(new Heartbeat(new NpgsqlLogSequenceNumber(99), CommitTime)),
        ];

        var withSchemas = Stream(Serializer());
        var without = Stream(Serializer(options: Options with { SchemasEnable = false }));

        Assert.Equal(withSchemas.Select(r => (r.Kind, r.Topic)), without.Select(r => (r.Kind, r.Topic)));
        Assert.Equal(4, without.Count);
        foreach (var (on, off) in withSchemas.Zip(without))
        {
            Assert.Equal(Payload(on.Value).GetRawText(), Text(off.Value));
            Assert.Equal(on.Key is null ? null : Payload(on.Key).GetRawText(), off.Key is null ? null : Text(off.Key));
        }

        var create = without.Single(r => r.Kind == DebeziumRecordKind.Change);
        Assert.Equal("""{"id":1}""", Text(create.Key));
        Assert.StartsWith("""{"before":null,"after":{"id":1,"name":"Anne"},"source":{""", Text(create.Value), StringComparison.Ordinal);
        Assert.True(create.Value!.Length * 4 < withSchemas.Single(r => r.Kind == DebeziumRecordKind.Change).Value!.Length, "the schema is most of a record");
    }

    private sealed class Enums : IPostgresTypeResolver
    {
        public IReadOnlyList<string>? EnumLabels(uint typeOid) => typeOid == 90001 ? ["happy", "sad", "it's ok"] : null;

        public uint? ArrayElementType(uint typeOid) => typeOid == 90002 ? 90001 : BuiltInTypeResolver.Instance.ArrayElementType(typeOid);
    }

    /// <summary>Field schema and payload value of column v for one value of one type.</summary>
    public static TheoryData<uint, int, string, string, string, string> TypeFamilies => new()
    {
        // oid, typmod, type name, PostgreSQL text, expected field schema, expected payload value
        { 16, -1, "boolean", "t", """{"type":"boolean","optional":true,"field":"v"}""", "true" },
        { 21, -1, "smallint", "-7", """{"type":"int16","optional":true,"field":"v"}""", "-7" },
        { 23, -1, "integer", "2147483647", """{"type":"int32","optional":true,"field":"v"}""", "2147483647" },
        { 20, -1, "bigint", "9007199254740993", """{"type":"int64","optional":true,"field":"v"}""", "9007199254740993" },
        { 26, -1, "oid", "4294967295", """{"type":"int64","optional":true,"field":"v"}""", "4294967295" },
        { 700, -1, "real", "3.14", """{"type":"float32","optional":true,"field":"v"}""", "3.14" },
        { 701, -1, "double precision", "100", """{"type":"float64","optional":true,"field":"v"}""", "100.0" },
        { 701, -1, "double precision", "1e+20", """{"type":"float64","optional":true,"field":"v"}""", "1.0E20" },
        { 701, -1, "double precision", "NaN", """{"type":"float64","optional":true,"field":"v"}""", "\"NaN\"" },
        // decimal.handling.mode=precise: Decimal bytes (two's complement, big-endian) with scale and precision parameters.
        { 1700, ((5 << 16) | 2) + 4, "numeric(5,2)", "12.30", """{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"5"},"field":"v"}""", "\"BM4=\"" },
        { 1700, ((5 << 16) | 2) + 4, "numeric(5,2)", "-1.00", """{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"5"},"field":"v"}""", "\"nA==\"" },
        // numeric without precision: io.debezium.data.VariableScaleDecimal.
        { 1700, -1, "numeric", "3.14159", """{"type":"struct","fields":[{"type":"int32","optional":false,"field":"scale"},{"type":"bytes","optional":false,"field":"value"}],"optional":true,"name":"io.debezium.data.VariableScaleDecimal","version":1,"doc":"Variable scaled decimal","field":"v"}""", """{"scale":5,"value":"BMsv"}""" },
        // money: Decimal with money.fraction.digits (2) as scale.
        { 790, -1, "money", "$1,234.56", """{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2"},"field":"v"}""", "\"AeJA\"" },
        // time.precision.mode=adaptive.
        { 1082, -1, "date", "2024-01-02", """{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"v"}""", "19724" },
        { 1082, -1, "date", "1969-12-31", """{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"v"}""", "-1" },
        { 1083, -1, "time without time zone", "03:04:05.123456", """{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","version":1,"field":"v"}""", "11045123456" },
        { 1083, 3, "time(3) without time zone", "03:04:05.123", """{"type":"int32","optional":true,"name":"io.debezium.time.Time","version":1,"field":"v"}""", "11045123" },
        { 1114, -1, "timestamp without time zone", "2024-01-02 03:04:05.123456", """{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"v"}""", "1704164645123456" },
        { 1114, 3, "timestamp(3) without time zone", "2024-01-02 03:04:05.123", """{"type":"int64","optional":true,"name":"io.debezium.time.Timestamp","version":1,"field":"v"}""", "1704164645123" },
        { 1184, -1, "timestamp with time zone", "2024-01-02 04:04:05.1+01", """{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"v"}""", "\"2024-01-02T03:04:05.100000Z\"" },
        { 1184, 0, "timestamp(0) with time zone", "2024-01-02 03:04:05-05:30", """{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"v"}""", "\"2024-01-02T08:34:05Z\"" },
        { 1266, -1, "time with time zone", "04:04:05.5+01", """{"type":"string","optional":true,"name":"io.debezium.time.ZonedTime","version":1,"field":"v"}""", "\"03:04:05.5Z\"" },
        // interval.handling.mode=numeric: MicroDuration with 365.25/12-day months.
        { 1186, -1, "interval", "1 year 2 mons 3 days 04:05:06.5", """{"type":"int64","optional":true,"name":"io.debezium.time.MicroDuration","version":1,"field":"v"}""", "37091106500000" },
        { 2950, -1, "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", """{"type":"string","optional":true,"name":"io.debezium.data.Uuid","version":1,"field":"v"}""", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"" },
        { 3802, -1, "jsonb", """{"a": "é"}""", """{"type":"string","optional":true,"name":"io.debezium.data.Json","version":1,"field":"v"}""", "\"{\\\"a\\\": \\\"é\\\"}\"" },
        { 114, -1, "json", "[1]", """{"type":"string","optional":true,"name":"io.debezium.data.Json","version":1,"field":"v"}""", "\"[1]\"" },
        { 142, -1, "xml", "<a/>", """{"type":"string","optional":true,"name":"io.debezium.data.Xml","version":1,"field":"v"}""", "\"<a/>\"" },
        { 90001, -1, "public.mood", "it's ok", """{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"happy,sad,it's ok"},"field":"v"}""", "\"it's ok\"" },
        { 1007, -1, "integer[]", "{1,2,NULL}", """{"type":"array","items":{"type":"int32","optional":true},"optional":true,"field":"v"}""", "[1,2,null]" },
        { 1009, -1, "text[]", """{a,"b c","q\"x",NULL}""", """{"type":"array","items":{"type":"string","optional":true},"optional":true,"field":"v"}""", """["a","b c","q\"x",null]""" },
        { 90002, -1, "public.mood[]", "{happy,sad}", """{"type":"array","items":{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"happy,sad,it's ok"}},"optional":true,"field":"v"}""", """["happy","sad"]""" },
        // binary.handling.mode=bytes: base64 in JSON.
        { 17, -1, "bytea", "\\x0102ff", """{"type":"bytes","optional":true,"field":"v"}""", "\"AQL/\"" },
        { 1560, 1, "bit(1)", "1", """{"type":"boolean","optional":true,"field":"v"}""", "true" },
        { 1560, 4, "bit(4)", "1010", """{"type":"bytes","optional":true,"name":"io.debezium.data.Bits","version":1,"parameters":{"length":"4"},"field":"v"}""", "\"Cg==\"" },
        { 600, -1, "point", "(1.5,2)", """{"type":"struct","fields":[{"type":"float64","optional":false,"field":"x"},{"type":"float64","optional":false,"field":"y"},{"type":"bytes","optional":true,"field":"wkb"},{"type":"int32","optional":true,"field":"srid"}],"optional":true,"name":"io.debezium.data.geometry.Point","version":1,"doc":"Geometry (POINT)","field":"v"}""", """{"x":1.5,"y":2.0,"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAABA","srid":null}""" },
        // Network, range and character types are plain strings.
        { 869, -1, "inet", "192.168.0.1/24", """{"type":"string","optional":true,"field":"v"}""", "\"192.168.0.1/24\"" },
        { 3904, -1, "int4range", "[1,5)", """{"type":"string","optional":true,"field":"v"}""", "\"[1,5)\"" },
        { 1043, 14, "character varying(10)", "héllo", """{"type":"string","optional":true,"field":"v"}""", "\"héllo\"" },
    };

    [Theory]
    [MemberData(nameof(TypeFamilies))]
    public void Every_type_family_maps_to_Debeziums_semantic_type_with_its_defaults(uint oid, int typmod, string typeName, string text, string fieldSchema, string payload)
    {
        var relation = OneColumn(oid, typmod, typeName);
        var serializer = Serializer(new Enums());
        serializer.Serialize(Begin());
        var record = serializer.Serialize(Insert(relation, 1, "1", text))[1];
        using var doc = JsonDocument.Parse(record.Value);
        var after = doc.RootElement.GetProperty("schema").GetProperty("fields")[1];
        Assert.Equal(fieldSchema, after.GetProperty("fields")[1].GetRawText());
        Assert.Equal(payload, doc.RootElement.GetProperty("payload").GetProperty("after").GetProperty("v").GetRawText());
    }

    [Theory]
    [InlineData(25u, "text", "\"__debezium_unavailable_value\"")]
    [InlineData(17u, "bytea", "\"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==\"")]
    [InlineData(3802u, "jsonb", "\"__debezium_unavailable_value\"")]
    [InlineData(1009u, "text[]", "[\"__debezium_unavailable_value\"]")]
    public void Unchanged_toast_becomes_Debeziums_placeholder_in_the_columns_type(uint oid, string typeName, string expected)
    {
        var relation = OneColumn(oid, -1, typeName);
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var record = serializer.Serialize(new RowChange(relation, ChangeKind.Update, new NpgsqlLogSequenceNumber(5), null, false, [V("1"), ColumnValue.UnchangedToast]))[1];
        using var doc = JsonDocument.Parse(record.Value);
        Assert.Equal(expected, doc.RootElement.GetProperty("payload").GetProperty("after").GetProperty("v").GetRawText());
    }

    [Fact]
    public void A_value_that_cannot_be_converted_names_the_column_and_table()
    {
        var relation = OneColumn(17, -1, "bytea");
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var e = Assert.Throws<FormatException>(() => serializer.Serialize(Insert(relation, 1, "1", "abc")));
        Assert.Contains("column v of public.t", e.Message, StringComparison.Ordinal);
        Assert.Contains("bytea_output", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Topic_names_replace_characters_Kafka_does_not_allow_as_Debezium_does()
    {
        Assert.Equal("dbserver1.My_Schema.t_bl_", DebeziumSerializer.SanitizeTopic("dbserver1.My Schema.t\"bl\""));
    }
}
