using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Errors;
using Replicator.Kafka;
using Replicator.Kafka.Debezium;
using Replicator.Tests.Fixtures;
using static Replicator.Tests.Kafka.DebeziumTestData;

namespace Replicator.Tests.Kafka;

/// <summary>The producer and consumer over the Kafka protocol (librdkafka's mock cluster).</summary>
public class KafkaBufferTests(KafkaFixture kafka) : IClassFixture<KafkaFixture>
{
    private static readonly StreamRelation Orders = Customers with { RelationId = 16390, Name = "orders" };

    private static readonly TableInfo CustomersTable = Table("public", "customers", ("id", 23, "integer", true), ("name", 25, "text", false));
    private static readonly TableInfo OrdersTable = Table("public", "orders", ("id", 23, "integer", true), ("name", 25, "text", false));

    private static string NewPrefix() => "t" + Guid.NewGuid().ToString("N")[..10];

    private KafkaChangeSink Sink(string prefix, IReadOnlyDictionary<string, string>? extra = null, string? bootstrap = null) =>
        new(new KafkaSinkOptions { BootstrapServers = bootstrap ?? kafka.BootstrapServers, Format = new DebeziumOptions { TopicPrefix = prefix, DatabaseName = "inventory" }, Extra = extra });

    private static RowChange Delete(StreamRelation relation, ulong lsn, string id) =>
        new(relation, ChangeKind.Delete, new NpgsqlLogSequenceNumber(lsn), [V(id), ColumnValue.Null], true, null);

    private static async Task WriteAllAsync(KafkaChangeSink sink, IEnumerable<ChangeEvent> events)
    {
        foreach (var e in events)
            await sink.WriteAsync(e, CancellationToken.None);
    }

    private static IEnumerable<ChangeEvent> Workload() =>
    [
        Begin(1, 1000), Insert(Customers, 900, "1", "Anne"), Insert(Orders, 910, "7", "order"), Delete(Customers, 920, "1"), Commit(1, 1000, 1010),
        Begin(2, 2000), Insert(Customers, 1900, "2", "Bo"), Insert(Customers, 1910, "3", "Cy"), Commit(2, 2000, 2010),
        new Heartbeat(new NpgsqlLogSequenceNumber(2500), CommitTime),
        Begin(3, 3000), new TruncateChange([Orders], false, false, new NpgsqlLogSequenceNumber(2900)), Commit(3, 3000, 3010),
    ];

    [Fact]
    public void Warming_a_new_topic_over_a_producer_handle_creates_it_and_gives_its_partitions_at_once()
    {
        // librdkafka would otherwise ask for a topic it has just started using at its once-a-second scan (TopicWarmUp).
        var topic = NewPrefix() + ".public.customers";
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = kafka.BootstrapServers }).Build();
        Assert.DoesNotContain(admin.GetMetadata(TimeSpan.FromSeconds(10)).Topics, t => t.Topic == topic);

        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build();
        TopicWarmUp.Warm(producer.Handle, [topic], Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, "producer");

        var created = Assert.Single(admin.GetMetadata(TimeSpan.FromSeconds(10)).Topics, t => t.Topic == topic);
        Assert.NotEmpty(created.Partitions);
    }

    [Fact]
    public async Task Source_to_Kafka_to_applier_yields_the_same_transactions_in_commit_order()
    {
        var prefix = NewPrefix();
        using (var sink = Sink(prefix))
        {
            await WriteAllAsync(sink, Workload());
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
            Assert.Equal(3010UL, (ulong)sink.DurableLsn!.Value);
            Assert.Equal(0, sink.InFlight);
        }

        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => t == "customers" ? CustomersTable : t == "orders" ? OrdersTable : null);
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix }, deserializer);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var transactions = new List<OrderedTransaction>();
        await foreach (var t in source.ReadAsync(null, timeout.Token))
        {
            transactions.Add(t);
            if (transactions.Count == 3)
                break;
        }

        Assert.Equal([1u, 2u, 3u], transactions.Select(t => t.Begin.Xid));
        Assert.Equal([1000UL, 2000UL, 3000UL], transactions.Select(t => (ulong)t.Commit.CommitLsn));
        Assert.Equal([1010UL, 2010UL, 3010UL], transactions.Select(t => (ulong)t.Commit.EndLsn));
        var first = transactions[0].Changes.Cast<RowChange>().ToList();
        Assert.Equal([ChangeKind.Insert, ChangeKind.Insert, ChangeKind.Delete], first.Select(c => c.Kind));
        Assert.Equal(["customers", "orders", "customers"], first.Select(c => c.Relation.Name));
        Assert.Equal("Anne", first[0].New![1].Text);
        Assert.Equal(["2", "3"], transactions[1].Changes.Cast<RowChange>().Select(c => c.New![0].Text));
        Assert.Equal("orders", Assert.IsType<TruncateChange>(Assert.Single(transactions[2].Changes)).Relations[0].Name);

        // The resume position after the last transaction covers every topic it read; stored as JSON and read back.
        var offsets = transactions[2].ResumeOffsets;
        Assert.Equal(offsets.ToDictionary(), KafkaChangeSource.OffsetsFromJson(KafkaChangeSource.OffsetsToJson(offsets)));
        Assert.Contains(offsets, o => o.Key.Topic == prefix + ".transaction" && o.Value == 6);
    }

    [Fact]
    public async Task A_record_that_cannot_be_read_stops_the_stream_naming_its_position()
    {
        var prefix = NewPrefix();
        using (var sink = Sink(prefix))
        {
            await WriteAllAsync(sink, Workload().Take(9)); // transactions 1 and 2
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }

        DeliveryResult<byte[], byte[]> poison;
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
            poison = await producer.ProduceAsync(prefix + ".public.customers", new Message<byte[], byte[]> { Key = "{}"u8.ToArray(), Value = "not json {"u8.ToArray() });
        using (var sink = Sink(prefix))
        {
            await WriteAllAsync(sink, Workload().Skip(10)); // transaction 3
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }

        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => t == "customers" ? CustomersTable : t == "orders" ? OrdersTable : null);
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix }, deserializer);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var handedOn = new List<uint>();
        var e = await Assert.ThrowsAsync<DebeziumFormatException>(async () =>
        {
            await foreach (var t in source.ReadAsync(null, timeout.Token))
                handedOn.Add(t.Begin.Xid);
        });

        Assert.Equal(poison.Partition.Value, e.Position.Partition);
        Assert.Equal(poison.Offset.Value, e.Position.Offset);
        Assert.Contains($"topic {prefix}.public.customers partition {poison.Partition.Value} offset {poison.Offset.Value}: value is not JSON", e.Message, StringComparison.Ordinal);
        // Whatever was complete before it went on, in commit order (which records of the other
        // partitions come first is up to the client), and the stream stopped there.
        Assert.Equal(handedOn.Order(), handedOn);
    }

    [Fact]
    public async Task Transactions_written_again_by_a_restarted_capture_are_handed_on_once_and_hold_nothing_up()
    {
        // Capture writes 300 transactions, is "restarted" behind its acknowledgements and writes them
        // all again, then three new ones. The consumer reads the table topics ahead of the transaction
        // topic, so repeats' events arrive while their first copies still wait to be released.
        static IEnumerable<ChangeEvent> Transaction(uint xid)
        {
            var id = xid.ToString(System.Globalization.CultureInfo.InvariantCulture);
            yield return Begin(xid, xid * 100UL);
            yield return Insert(Customers, xid * 100UL - 50, id, "c" + id);
            yield return Insert(Orders, xid * 100UL - 40, id, "o" + id);
            yield return Commit(xid, xid * 100UL, xid * 100UL + 10);
        }

        var prefix = NewPrefix();
        foreach (var xids in new[] { Enumerable.Range(1, 300), Enumerable.Range(1, 303) })
        {
            using var sink = Sink(prefix);
            await WriteAllAsync(sink, xids.SelectMany(x => Transaction((uint)x)));
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }

        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => t == "customers" ? CustomersTable : t == "orders" ? OrdersTable : null);
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix }, deserializer);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var transactions = new List<OrderedTransaction>();
        try
        {
            await foreach (var t in source.ReadAsync(null, timeout.Token))
            {
                transactions.Add(t);
                if (t.Begin.Xid == 303)
                    break;
            }
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"stuck after {transactions.Count} transactions (last xid {transactions.LastOrDefault()?.Begin.Xid})");
        }

        Assert.Equal(Enumerable.Range(1, 303).Select(x => (uint)x), transactions.Select(t => t.Begin.Xid));
        Assert.All(transactions, t => Assert.Equal(2, t.Changes.Count));
    }

    [Fact]
    public async Task A_transaction_whose_events_never_arrive_is_named_in_a_warning_while_it_holds_up_the_rest()
    {
        // An END whose change events are nowhere (here: copied alone to another prefix's transaction
        // topic, as a deleted or re-created table topic would leave it).
        var written = NewPrefix();
        using (var sink = Sink(written))
        {
            await WriteAllAsync(sink, [Begin(7, 7000), Insert(Customers, 6900, "1", "Anne"), Insert(Orders, 6910, "2", "order"), Commit(7, 7000, 7010)]);
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }

        var end = ReadAll(written + ".transaction", 1, expected: 2).Single(r => r.Message.Headers.Any(h => h.Key == "replicator.commit_lsn"));
        var prefix = NewPrefix();
        using (var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            producer.Produce(new TopicPartition(prefix + ".transaction", 0), end.Message);
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        var log = new CapturingLoggerProvider();
        using var loggers = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddProvider(log));
        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => t == "customers" ? CustomersTable : t == "orders" ? OrdersTable : null);
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix }, deserializer,
            logger: loggers.CreateLogger("kafka"))
        {
            StallWarningAfter = TimeSpan.FromSeconds(1),
        };
        using var stop = new CancellationTokenSource();
        var reading = Task.Run(async () =>
        {
            await foreach (var t in source.ReadAsync(null, stop.Token))
                Assert.Fail($"transaction {t.Begin.Xid} was handed on without its events");
        });
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!log.Contains("has had no new change event") && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        await stop.CancelAsync();
        try
        {
            await reading;
        }
        catch (OperationCanceledException)
        {
            // Stopped while waiting for a record.
        }

        Assert.True(log.Contains($"Transaction 7 (END at {prefix}.transaction[0]@0)"), log.Text);
        Assert.True(log.Contains("0 of the 2 it counts (public.customers: 1, public.orders: 1)"), log.Text);
    }

    [Fact]
    public async Task Kafka_client_properties_reach_the_client_and_one_it_refuses_is_a_configuration_error_naming_it()
    {
        // An event of about 12 kB: sent with the defaults, refused with message.max.bytes = 8000.
        ChangeEvent[] big = [Begin(1, 1000), Insert(Customers, 900, "1", new string('x', 12_000)), Commit(1, 1000, 1010)];
        using (var plain = Sink(NewPrefix()))
        {
            await WriteAllAsync(plain, big);
            await plain.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
            Assert.Equal(1010UL, (ulong)plain.DurableLsn!.Value);
        }

        using (var limited = Sink(NewPrefix(), new Dictionary<string, string> { ["message.max.bytes"] = "8000" }))
        {
            var refused = await Assert.ThrowsAnyAsync<KafkaException>(() => WriteAllAsync(limited, big));
            Assert.Equal(ErrorCode.MsgSizeTooLarge, refused.Error.Code);
            Assert.Null(limited.DurableLsn);
        }

        var unknown = Assert.Throws<Replicator.Core.Configuration.ConfigurationException>(() => Sink(NewPrefix(), new Dictionary<string, string> { ["no.such.property"] = "1" }));
        Assert.Contains("Buffer:Kafka:Properties", unknown.Message, StringComparison.Ordinal);
        Assert.Contains("no.such.property", unknown.Message, StringComparison.Ordinal);
        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => null);
        var badValue = Assert.Throws<Replicator.Core.Configuration.ConfigurationException>(() => new KafkaChangeSource(
            new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = NewPrefix(), Extra = new Dictionary<string, string> { ["fetch.wait.max.ms"] = "soon" } }, deserializer));
        Assert.Contains("fetch.wait.max.ms", badValue.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Stored_offsets_are_json_objects_per_topic_with_topics_and_partitions_in_order()
    {
        var offsets = new Dictionary<(string, int), long> { [("p.transaction", 0)] = 6, [("p.public.b", 10)] = 1, [("p.public.b", 2)] = 9, [("p.public.a", 0)] = 3 };
        Assert.Equal("""{"p.public.a":{"0":3},"p.public.b":{"2":9,"10":1},"p.transaction":{"0":6}}""", KafkaChangeSource.OffsetsToJson(offsets));
        Assert.Equal("{}", KafkaChangeSource.OffsetsToJson(new Dictionary<(string, int), long>()));
    }

    [Fact]
    public async Task Keyed_records_land_on_the_partition_Javas_murmur2_partitioner_picks_and_BEGIN_END_on_partition_0()
    {
        var prefix = NewPrefix();
        using (var sink = Sink(prefix))
        {
            var events = new List<ChangeEvent> { Begin(1, 5000) };
            for (var i = 0; i < 40; i++)
                events.Add(Insert(Customers, (ulong)(100 + i), i.ToString(System.Globalization.CultureInfo.InvariantCulture), "n"));
            events.Add(Delete(Customers, 200, "5"));
            events.Add(Commit(1, 5000, 5010));
            await WriteAllAsync(sink, events);
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }

        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = kafka.BootstrapServers }).Build();
        var topic = prefix + ".public.customers";
        var partitions = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.Count;
        Assert.True(partitions > 1, $"the mock cluster created {topic} with {partitions} partition(s); the test needs several");

        var records = ReadAll(topic, partitions, expected: 42);
        Assert.Equal(42, records.Count);
        foreach (var r in records)
            Assert.Equal(Murmur2Partitioner.Partition(r.Message.Key, partitions), r.Partition.Value);
        Assert.True(records.Select(r => r.Partition.Value).Distinct().Count() > 1);
        var tombstone = Assert.Single(records, r => r.Message.Value is null);
        Assert.Contains("\"payload\":{\"id\":5}", Encoding.UTF8.GetString(tombstone.Message.Key!), StringComparison.Ordinal);

        var txTopic = prefix + ".transaction";
        var txPartitions = admin.GetMetadata(txTopic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.Count;
        var markers = ReadAll(txTopic, txPartitions, expected: 2);
        Assert.All(markers, m => Assert.Equal(0, m.Partition.Value));
    }

    private List<ConsumeResult<byte[]?, byte[]?>> ReadAll(string topic, int partitions, int expected)
    {
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig { BootstrapServers = kafka.BootstrapServers, GroupId = "raw-" + Guid.NewGuid(), EnableAutoCommit = false }).Build();
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        var records = new List<ConsumeResult<byte[]?, byte[]?>>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (records.Count < expected && DateTime.UtcNow < deadline)
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is not null && !r.IsPartitionEOF)
                records.Add(r);
        }

        return records;
    }

    [Fact]
    public async Task Without_a_broker_acknowledgement_the_durable_LSN_does_not_move_and_a_failed_delivery_stops_the_sink()
    {
        // Nothing listens on port 1: records stay unacknowledged, then time out (after 5 s: well
        // after the look below, even on a machine busy with the rest of the suite).
        using var sink = Sink(NewPrefix(), new Dictionary<string, string> { ["message.timeout.ms"] = "5000" }, bootstrap: "127.0.0.1:1");
        await WriteAllAsync(sink, [Begin(1, 1000), Insert(Customers, 900, "1", "Anne"), Commit(1, 1000, 1010)]);
        await Task.Delay(500);
        Assert.Null(sink.DurableLsn);
        Assert.True(sink.InFlight > 0);

        await Assert.ThrowsAsync<KafkaException>(() => sink.FlushAsync(TimeSpan.FromSeconds(20), CancellationToken.None));
        Assert.Null(sink.DurableLsn);
        await Assert.ThrowsAsync<KafkaException>(async () => await sink.WriteAsync(Begin(2, 2000), CancellationToken.None));
    }

    [Fact]
    public async Task A_stored_position_Kafka_no_longer_holds_stops_the_applier_with_the_cause_instead_of_skipping_ahead()
    {
        var prefix = NewPrefix();
        using (var sink = Sink(prefix))
        {
            await WriteAllAsync(sink, Workload());
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }

        // The development broker keeps 5 MB per partition: 6 MB more on the transaction topic pushes
        // its first records out, as a topic's retention would while an applier is stopped.
        using (var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, LingerMs = 5 }).Build())
        {
            var filler = new byte[100_000];
            for (var i = 0; i < 60; i++)
                producer.Produce(new TopicPartition(prefix + ".transaction", 0), new Message<byte[]?, byte[]?> { Value = filler });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => t == "customers" ? CustomersTable : t == "orders" ? OrdersTable : null);
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix }, deserializer);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var stored = new Dictionary<(string, int), long> { [(prefix + ".transaction", 0)] = 2 };
        var e = await Assert.ThrowsAsync<ReplicationException>(async () =>
        {
            await foreach (var t in source.ReadAsync(stored, timeout.Token))
                Assert.Fail($"transaction {t.Begin.Xid} was handed on although the ones before it are gone");
        });
        Assert.Contains("Kafka no longer holds records this applier has not applied yet", e.Message, StringComparison.Ordinal);
        Assert.Contains(prefix + ".transaction", e.Message, StringComparison.Ordinal);
        Assert.Contains("retention", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Producer_is_idempotent_acks_all_lz4_and_murmur2_and_consumer_reads_committed_and_commits_only_stored_offsets()
    {
        var producer = KafkaChangeSink.ProducerConfigFor(new KafkaSinkOptions { BootstrapServers = "b:9092", Format = Options });
        Assert.True(producer.EnableIdempotence);
        Assert.Equal(Acks.All, producer.Acks);
        Assert.Equal(CompressionType.Lz4, producer.CompressionType);
        Assert.Equal(Partitioner.Murmur2Random, producer.Partitioner);
        var consumer = KafkaChangeSource.ConsumerConfigFor(new KafkaSourceOptions { BootstrapServers = "b:9092", TopicPrefix = "p" });
        Assert.Equal(IsolationLevel.ReadCommitted, consumer.IsolationLevel);
        // Only offsets the applier stores (once the target has the changes) are committed, advisory.
        Assert.True(consumer.EnableAutoCommit);
        Assert.False(consumer.EnableAutoOffsetStore);
        Assert.Equal(AutoOffsetReset.Error, consumer.AutoOffsetReset);
        Assert.Equal(8 << 20, consumer.MaxPartitionFetchBytes);
    }
}

public class KafkaBufferOptionsTests
{
    [Fact]
    public void Kafka_buffer_without_bootstrap_servers_is_a_configuration_error_naming_the_key_and_the_fix()
    {
        var e = Assert.Throws<Replicator.Core.Configuration.ConfigurationException>(() => KafkaBufferOptions.Sink(new Replicator.Core.Configuration.ReplicatorOptions(), "db"));
        Assert.Equal("Buffer:Kafka:Bootstrap", e.Key);
        Assert.Contains("dev-kafka", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_topic_prefix_Kafka_cannot_name_is_refused()
    {
        var options = new Replicator.Core.Configuration.ReplicatorOptions();
        options.Buffer.Kafka.Bootstrap = "127.0.0.1:9092";
        options.Buffer.Kafka.TopicPrefix = "my prefix";
        var e = Assert.Throws<Replicator.Core.Configuration.ConfigurationException>(() => KafkaBufferOptions.Source(options));
        Assert.Equal("Buffer:Kafka:TopicPrefix", e.Key);
    }

    [Fact]
    public void Sink_and_source_settings_come_from_the_Buffer_Kafka_section()
    {
        var options = new Replicator.Core.Configuration.ReplicatorOptions { SlotName = "s1" };
        options.Buffer.Kafka.Bootstrap = "k1:9092,k2:9092";
        options.Buffer.Kafka.TopicPrefix = "shop";
        var sink = KafkaBufferOptions.Sink(options, "orders_db");
        Assert.Equal("k1:9092,k2:9092", sink.BootstrapServers);
        Assert.Equal("shop.transaction", sink.Format.TransactionTopic);
        Assert.Equal("orders_db", sink.Format.DatabaseName);
        Assert.Equal("replicator-apply-s1", KafkaBufferOptions.Source(options).GroupId);
        Assert.True(sink.Format.SchemasEnable);

        // JsonConverter's schemas.enable=false, from the environment as from a file or --set.
        var withoutSchemas = Replicator.Core.Configuration.ConfigLoader.Load(null, null, new Dictionary<string, string?>
        {
            ["REPLICATOR_Buffer__Kafka__Bootstrap"] = "k1:9092",
            ["REPLICATOR_Buffer__Kafka__Schemas"] = "false",
        });
        Assert.False(KafkaBufferOptions.Sink(withoutSchemas, "orders_db").Format.SchemasEnable);
    }
}
