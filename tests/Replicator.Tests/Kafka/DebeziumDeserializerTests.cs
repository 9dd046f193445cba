using System.Text;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Configuration;
using Replicator.Kafka.Debezium;
using static Replicator.Tests.Kafka.DebeziumTestData;

namespace Replicator.Tests.Kafka;

/// <summary>Records shaped as a real Debezium PostgreSQL connector writes them (2.x/3.x, schemas on and off, its settings).</summary>
public class DebeziumDeserializerTests
{
    private static readonly TableInfo Prices = Table("public", "prices",
        ("id", 23, "integer", true),
        ("price", 1700, "numeric(5,2)", false),
        ("n", 1700, "numeric", false),
        ("at", 1114, "timestamp without time zone", false),
        ("at3", 1114, "timestamp(3) without time zone", false),
        ("t", 1083, "time without time zone", false),
        ("t3", 1083, "time(3) without time zone", false),
        ("zt", 1184, "timestamp with time zone", false),
        ("blob", 17, "bytea", false),
        ("body", 25, "text", false),
        ("d", 1082, "date", false),
        ("iv", 1186, "interval", false),
        ("tags", 1009, "text[]", false));

    private static DebeziumDeserializer Reader(DebeziumSourceSettings? settings = null, TableInfo? table = null) =>
        new(settings ?? DebeziumSourceSettings.Default, (s, t) => (table ?? Prices) is var x && x.Schema == s && x.Name == t ? x : null);

    private static readonly KafkaPosition At = new("dbserver1.public.prices", 2, 17);

    private static string Source(string table = "prices") =>
        $$"""{"version":"2.7.3.Final","connector":"postgresql","name":"dbserver1","ts_ms":1559033904863,"snapshot":"false","db":"inventory","sequence":"[\"24023119\",\"24023128\"]","schema":"public","table":"{{table}}","txId":571,"lsn":24023128,"xmin":null}""";

    private static string[] Values(ChangeEvent change) =>
        ((RowChange)change).New!.Select(v => v.ToString()).ToArray();

    private static string Value(ChangeEvent change, string column) =>
        ((RowChange)change).New![((RowChange)change).Relation.Columns.Select(c => c.Name).ToList().IndexOf(column)].ToString();

    private static DecodedChange Decode(DebeziumDeserializer reader, string value, string? key = null) =>
        Assert.IsType<DecodedChange>(reader.Decode(At, key is null ? default : Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value)));

    [Fact]
    public void A_Debezium_2x_record_with_schemas_reads_back_into_PostgreSQL_text_values()
    {
        var value = """
            {"schema":{"type":"struct","fields":[
              {"type":"struct","fields":[
                {"type":"int32","optional":false,"field":"id"},
                {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"5"},"field":"price"},
                {"type":"struct","fields":[{"type":"int32","optional":false,"field":"scale"},{"type":"bytes","optional":false,"field":"value"}],"optional":true,"name":"io.debezium.data.VariableScaleDecimal","version":1,"doc":"Variable scaled decimal","field":"n"},
                {"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"at"},
                {"type":"int64","optional":true,"name":"io.debezium.time.Timestamp","version":1,"field":"at3"},
                {"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","version":1,"field":"t"},
                {"type":"int32","optional":true,"name":"io.debezium.time.Time","version":1,"field":"t3"},
                {"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"zt"},
                {"type":"bytes","optional":true,"field":"blob"},
                {"type":"string","optional":true,"field":"body"},
                {"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"d"},
                {"type":"int64","optional":true,"name":"io.debezium.time.MicroDuration","version":1,"field":"iv"},
                {"type":"array","items":{"type":"string","optional":true},"optional":true,"field":"tags"}
              ],"optional":true,"name":"dbserver1.public.prices.Value","field":"after"}],"optional":false,"name":"dbserver1.public.prices.Envelope","version":1},
             "payload":{"before":null,"after":{"id":1,"price":"BM4=","n":{"scale":5,"value":"BMsv"},"at":1704164645123456,"at3":1704164645123,"t":11045123456,"t3":11045123,
               "zt":"2024-01-02T03:04:05.100000Z","blob":"AQL/","body":"__debezium_unavailable_value","d":-1,"iv":273906500000,"tags":["a,b",null,"c\"d"]},
             "source":SOURCE,"transaction":{"id":"571:24023128","total_order":1,"data_collection_order":1},"op":"c","ts_ms":1559033904863}}
            """.Replace("SOURCE", Source(), StringComparison.Ordinal);

        var decoded = Decode(Reader(), value);

        Assert.Equal(
            ["1", "12.30", "3.14159", "2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123", "03:04:05.123456", "03:04:05.123", "2024-01-02T03:04:05.100000Z", "\\x0102ff", "(unchanged toast)", "1969-12-31", "3 days 04:05:06.5", """{"a,b",NULL,"c\"d"}"""],
            Values(decoded.Change));
        Assert.Equal(ChangeKind.Insert, ((RowChange)decoded.Change).Kind);
        Assert.Equal("571", decoded.TransactionKey);
        Assert.Equal(571u, decoded.Xid);
        Assert.Equal(24023128UL, (ulong)decoded.Lsn);
    }

    [Fact]
    public void Without_schemas_the_target_catalog_and_the_default_settings_decide_the_conversion()
    {
        var value = """{"before":null,"after":{"id":1,"price":"BM4=","n":{"scale":5,"value":"BMsv"},"at":1704164645123456,"at3":1704164645123,"t":11045123456,"t3":11045123,"zt":"2024-01-02T03:04:05Z","blob":"AQL/","body":"x","d":19724,"iv":-93600000000,"tags":[]},"source":SOURCE,"op":"c","ts_ms":1}"""
            .Replace("SOURCE", Source(), StringComparison.Ordinal);
        var decoded = Decode(Reader(), value);
        Assert.Equal(["1", "12.30", "3.14159", "2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123", "03:04:05.123456", "03:04:05.123", "2024-01-02T03:04:05Z", "\\x0102ff", "x", "2024-01-02", "-1 days -02:00:00", "{}"], Values(decoded.Change));
        Assert.Null(decoded.TransactionKey);
    }

    [Fact]
    public void Connect_time_precision_without_schemas_reads_milliseconds_everywhere()
    {
        var value = """{"before":null,"after":{"id":1,"at":1704164645123,"t":11045123},"source":SOURCE,"op":"c"}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var decoded = Decode(Reader(new DebeziumSourceSettings { TimePrecisionMode = "connect" }), value);
        Assert.Equal("2024-01-02 03:04:05.123", Value(decoded.Change, "at"));
        Assert.Equal("03:04:05.123", Value(decoded.Change, "t"));
    }

    [Fact]
    public void Adaptive_time_microseconds_reads_every_time_column_as_microseconds()
    {
        var value = """{"before":null,"after":{"id":1,"t3":11045123000},"source":SOURCE,"op":"c"}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var decoded = Decode(Reader(new DebeziumSourceSettings { TimePrecisionMode = "adaptive_time_microseconds" }), value);
        Assert.Equal("03:04:05.123", Value(decoded.Change, "t3"));
    }

    [Fact]
    public void Isostring_time_precision_without_schemas_passes_ISO_text_and_drops_the_dates_Z()
    {
        var value = """{"before":null,"after":{"id":1,"d":"2017-09-15Z","t":"04:05:11.789Z","at":"2019-07-09T02:28:57.123456Z"},"source":SOURCE,"op":"c"}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var decoded = Decode(Reader(new DebeziumSourceSettings { TimePrecisionMode = "isostring" }), value);
        Assert.Equal("2017-09-15", Value(decoded.Change, "d"));
        Assert.Equal("04:05:11.789Z", Value(decoded.Change, "t"));
        Assert.Equal("2019-07-09T02:28:57.123456Z", Value(decoded.Change, "at"));
    }

    [Fact]
    public void Decimal_handling_string_passes_the_digits_through()
    {
        var value = """{"before":null,"after":{"id":1,"price":"12.30","n":"-0.000001"},"source":SOURCE,"op":"c"}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var decoded = Decode(Reader(new DebeziumSourceSettings { DecimalHandlingMode = "string" }), value);
        Assert.Equal("12.30", Value(decoded.Change, "price"));
        Assert.Equal("-0.000001", Value(decoded.Change, "n"));
    }

    [Theory]
    [InlineData("hex", "00ff10")]
    [InlineData("base64", "AP8Q")]
    [InlineData("base64-url-safe", "AP8Q")]
    public void Binary_handling_modes_hex_and_base64_both_read_back_to_bytea(string mode, string encoded)
    {
        var value = ("""{"before":null,"after":{"id":1,"blob":"ENC"},"source":SOURCE,"op":"c"}""").Replace("SOURCE", Source(), StringComparison.Ordinal).Replace("ENC", encoded, StringComparison.Ordinal);
        var decoded = Decode(Reader(new DebeziumSourceSettings { BinaryHandlingMode = mode }), value);
        Assert.Equal("\\x00ff10", Value(decoded.Change, "blob"));
    }

    [Fact]
    public void Decimal_handling_double_for_a_numeric_column_is_refused_naming_topic_partition_offset_and_setting()
    {
        var withSchema = """{"schema":{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"double","optional":true,"field":"price"}],"optional":true,"name":"v","field":"after"}],"optional":false},"payload":{"before":null,"after":{"id":1,"price":12.3},"source":SOURCE,"op":"c"}}"""
            .Replace("SOURCE", Source(), StringComparison.Ordinal).Replace("\"double\"", "\"float64\"", StringComparison.Ordinal);
        var e = Assert.Throws<DebeziumFormatException>(() => Decode(Reader(), withSchema));
        Assert.StartsWith("topic dbserver1.public.prices partition 2 offset 17: column price of public.prices: decimal.handling.mode=double", e.Message, StringComparison.Ordinal);
        Assert.Contains("decimal.handling.mode=precise", e.Message, StringComparison.Ordinal);

        var withoutSchema = """{"before":null,"after":{"id":1,"price":12.3},"source":SOURCE,"op":"c"}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var e2 = Assert.Throws<DebeziumFormatException>(() => Decode(Reader(new DebeziumSourceSettings { DecimalHandlingMode = "double" }), withoutSchema));
        Assert.Contains("partition 2 offset 17", e2.Message, StringComparison.Ordinal);
        Assert.Contains("decimal.handling.mode=double", e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_connector_settings_are_refused_with_the_setting_and_the_supported_values()
    {
        var e = Assert.Throws<ConfigurationException>(() => Reader(new DebeziumSourceSettings { TimePrecisionMode = "nanoseconds" }));
        Assert.Contains("time.precision.mode", e.Message, StringComparison.Ordinal);
        Assert.Contains("adaptive, adaptive_time_microseconds, connect, microseconds, isostring", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_table_missing_on_the_target_is_an_error_naming_it_and_the_fix()
    {
        var value = """{"before":null,"after":{"id":1},"source":SOURCE,"op":"c"}""".Replace("SOURCE", Source("nope"), StringComparison.Ordinal);
        var e = Assert.Throws<DebeziumFormatException>(() => Decode(Reader(), value));
        Assert.Contains("table public.nope does not exist on the target", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_column_missing_on_the_target_is_an_error_naming_it_and_the_fix()
    {
        var value = """{"before":null,"after":{"id":1,"extra":5},"source":SOURCE,"op":"c"}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var e = Assert.Throws<DebeziumFormatException>(() => Decode(Reader(), value));
        Assert.Contains("column extra of public.prices does not exist on the target", e.Message, StringComparison.Ordinal);
        Assert.Contains("ALTER TABLE \"public\".\"prices\" ADD COLUMN", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_value_that_is_not_JSON_is_a_poison_message_with_its_position()
    {
        var e = Assert.Throws<DebeziumFormatException>(() => Reader().Decode(At, default, "Avro?"u8));
        Assert.StartsWith("topic dbserver1.public.prices partition 2 offset 17: value is not JSON", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Delete_without_before_takes_the_row_identity_from_the_record_key()
    {
        var key = """{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"dbserver1.public.prices.Key"},"payload":{"id":42}}""";
        var value = """{"before":null,"after":null,"source":SOURCE,"op":"d"}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var change = Assert.IsType<RowChange>(Decode(Reader(), value, key).Change);
        Assert.Equal(ChangeKind.Delete, change.Kind);
        Assert.Equal("42", change.Old![0].Text);
        Assert.True(change.OldIsKeyOnly);
    }

    [Fact]
    public void Update_with_unavailable_values_marks_them_unchanged_so_the_target_keeps_them()
    {
        var value = """{"before":null,"after":{"id":1,"body":"__debezium_unavailable_value","blob":"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==","tags":["__debezium_unavailable_value"]},"source":SOURCE,"op":"u"}"""
            .Replace("SOURCE", Source(), StringComparison.Ordinal);
        var change = Assert.IsType<RowChange>(Decode(Reader(), value).Change);
        Assert.Equal(ChangeKind.Update, change.Kind);
        Assert.Equal(ValueKind.UnchangedToast, change.New![Prices.Columns.ToList().FindIndex(c => c.Name == "body")].Kind);
        Assert.Equal(ValueKind.UnchangedToast, change.New![Prices.Columns.ToList().FindIndex(c => c.Name == "blob")].Kind);
        Assert.Equal(ValueKind.UnchangedToast, change.New![Prices.Columns.ToList().FindIndex(c => c.Name == "tags")].Kind);
        // Columns the event does not carry are left alone in an update, too.
        Assert.Equal(ValueKind.UnchangedToast, change.New![Prices.Columns.ToList().FindIndex(c => c.Name == "zt")].Kind);
    }

    [Fact]
    public void Truncate_event_becomes_a_TruncateChange_of_its_table()
    {
        var value = """{"before":null,"after":null,"source":SOURCE,"op":"t","ts_ms":1}""".Replace("SOURCE", Source(), StringComparison.Ordinal);
        var truncate = Assert.IsType<TruncateChange>(Decode(Reader(), value).Change);
        Assert.Equal("public.prices", Assert.Single(truncate.Relations).DisplayName);
    }

    [Fact]
    public void A_record_without_op_on_a_tables_topic_is_an_error_naming_the_transform_and_elsewhere_is_skipped()
    {
        // ExtractNewRecordState (unwrap) leaves the bare row: on a table's topic skipping it would lose the row.
        var flat = Assert.Throws<DebeziumFormatException>(() => Reader().Decode(At, default, "{\"id\":1,\"price\":\"2.50\"}"u8));
        Assert.Contains("public.prices", flat.Message, StringComparison.Ordinal);
        Assert.Contains("ExtractNewRecordState", flat.Message, StringComparison.Ordinal);
        Assert.Contains("dbserver1.public.prices", flat.Message, StringComparison.Ordinal); // the position: topic, partition, offset
        // Another topic under the prefix that no target table is named after: not ours to read.
        Assert.IsType<DecodedSkip>(Reader().Decode(new KafkaPosition("dbserver1.outbox.events", 0, 1), default, "{\"id\":1}"u8));
    }

    [Fact]
    public void Tombstones_are_skipped_and_transaction_markers_carry_counts_and_commit_lsn()
    {
        Assert.IsType<DecodedSkip>(Reader().Decode(At, "{}"u8, default));
        Assert.IsType<DecodedSkip>(Reader().Decode(At, default, "{\"op\":\"m\",\"ts_ms\":1,\"message\":{\"prefix\":\"p\",\"content\":\"AA==\"}}"u8));
        var unknown = Assert.Throws<DebeziumFormatException>(() => Reader().Decode(At, default, Encoding.UTF8.GetBytes("{\"op\":\"x\",\"source\":" + Source() + "}")));
        Assert.Contains("unknown op 'x'", unknown.Message, StringComparison.Ordinal);
        var end = """{"schema":{"type":"struct","fields":[],"optional":false},"payload":{"status":"END","id":"571:53195832","event_count":2,"data_collections":[{"data_collection":"s1.a","event_count":1},{"data_collection":"s2.a","event_count":1}],"ts_ms":1486500577691}}""";
        var marker = Assert.IsType<DecodedTransactionMarker>(Reader().Decode(new KafkaPosition("dbserver1.transaction", 0, 3), default, Encoding.UTF8.GetBytes(end)));
        Assert.True(marker.IsEnd);
        Assert.Equal("571", marker.TransactionKey);
        Assert.Equal(53195832UL, (ulong)marker.IdLsn!.Value);
        Assert.Equal(2, marker.EventCount);
        Assert.Equal(1, marker.DataCollections!["s2.a"]);
    }

    [Fact]
    public void Our_own_records_read_back_to_the_change_that_produced_them()
    {
        var table = Table("public", "customers", ("id", 23, "integer", true), ("name", 25, "text", false));
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var records = serializer.Serialize(new RowChange(Customers, ChangeKind.Update, new NpgsqlTypes.NpgsqlLogSequenceNumber(9), null, false, [V("5"), ColumnValue.UnchangedToast]));
        var decoded = Assert.IsType<DecodedChange>(Reader(table: table).Decode(At, records[1].Key, records[1].Value));
        var change = Assert.IsType<RowChange>(decoded.Change);
        Assert.Equal(ChangeKind.Update, change.Kind);
        Assert.Equal([V("5"), ColumnValue.UnchangedToast], change.New);
        Assert.Equal("555", decoded.TransactionKey);
        Assert.Equal(1, decoded.TotalOrder);
    }

    [Fact]
    public void A_value_taken_from_the_clients_buffer_keeps_only_its_payload_once_its_topics_schema_is_known()
    {
        var table = Table("public", "customers", ("id", 23, "integer", true), ("name", 25, "text", false));
        var serializer = Serializer();
        serializer.Serialize(Begin());
        var first = serializer.Serialize(new RowChange(Customers, ChangeKind.Insert, new NpgsqlTypes.NpgsqlLogSequenceNumber(9), null, false, [V("5"), V("ann")]));
        var second = serializer.Serialize(new RowChange(Customers, ChangeKind.Insert, new NpgsqlTypes.NpgsqlLogSequenceNumber(10), null, false, [V("6"), V("bob")]));
        var reader = Reader(table: table);

        // The topic's first record: whole (nothing cached yet); decoding it caches its schema text.
        var taken = reader.Take(At.Topic, first[^1].Value);
        Assert.False(taken!.PayloadOnly);
        Assert.Equal(first[^1].Value, taken.Bytes);
        Assert.IsType<DecodedChange>(reader.Decode(At, first[^1].Key, taken));

        // The next: only the payload is copied, and it decodes to what the whole value decodes to.
        var next = reader.Take(At.Topic, second[^1].Value);
        Assert.True(next!.PayloadOnly);
        Assert.True(next.Bytes.Length < second[^1].Value!.Length / 2, $"{next.Bytes.Length} of {second[^1].Value!.Length} bytes kept");
        var fromPayload = Assert.IsType<RowChange>(Assert.IsType<DecodedChange>(reader.Decode(At, second[^1].Key, next)).Change);
        var fromWhole = Assert.IsType<RowChange>(Assert.IsType<DecodedChange>(Reader(table: table).Decode(At, second[^1].Key, second[^1].Value)).Change);
        Assert.Equal(fromWhole.New, fromPayload.New);
        Assert.Equal([V("6"), V("bob")], fromPayload.New);

        // Same schema text but not the two-property layout (a field after the payload): only the
        // payload is kept, it does not parse alone, and the whole value is read instead, as when
        // decoding the whole value (which takes a three-property value for a schemaless one).
        var longer = System.Text.Encoding.UTF8.GetBytes(System.Text.Encoding.UTF8.GetString(second[^1].Value!)[..^1] + ",\"extra\":1}");
        var takenLonger = reader.Take(At.Topic, longer);
        Assert.True(takenLonger!.PayloadOnly);
        var wholeLonger = Assert.IsType<DecodedSkip>(Reader(table: table).Decode(At, second[^1].Key, longer));
        Assert.Equal(wholeLonger.Why, Assert.IsType<DecodedSkip>(reader.Decode(At, second[^1].Key, takenLonger)).Why);

        // A value with another schema text is kept whole; a tombstone is nothing.
        var other = System.Text.Encoding.UTF8.GetBytes("{\"schema\":{\"type\":\"struct\"},\"payload\":{}}");
        Assert.False(reader.Take(At.Topic, other)!.PayloadOnly);
        Assert.Null(reader.Take(At.Topic, default));
    }
}
