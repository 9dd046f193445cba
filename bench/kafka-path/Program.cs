// Stage costs of the Kafka buffer path on a pgbench-shaped change stream, in CPU time per row
// event (process CPU, so GC and librdkafka threads count; on a shared machine CPU time moves far
// less than wall time). Stages:
//   serialize     DebeziumSerializer: change events -> Kafka records
//   decode+order  DebeziumDeserializer + TransactionOrderer + the offsets JSON the applier stores
//   produce       KafkaChangeSink until every record is acknowledged (mock cluster)
//   consume       KafkaChangeSource.ReadAsync until the last transaction (mock cluster)
//   client        the floor: the same records (serialized once, beforehand) through a bare
//                 Confluent.Kafka producer and consumer with the sink's and source's settings,
//                 the sink's messages and nothing else of Replicator's per-record code (no
//                 envelopes built or parsed, no ordering)
// Usage: KafkaPath [transactions=20000] [codec|kafka|client|all] ; KAFKA_BOOTSTRAP=host:port uses that
// broker instead of an in-process mock cluster (then the broker's CPU is not counted).
// KAFKA_PRODUCER=k=v,k=v sets producer properties (librdkafka names) to compare.
using System.Diagnostics;
using System.Globalization;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Kafka;
using Replicator.Kafka.Debezium;

var transactions = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 20_000;
var mode = args.Length > 1 ? args[1] : "all";
var rounds = int.Parse(Environment.GetEnvironmentVariable("ROUNDS") ?? "3", CultureInfo.InvariantCulture);

var accounts = new StreamRelation(16390, "public", "pgbench_accounts", 'd',
[
    new StreamColumn("aid", 23, -1, true, "integer"), new StreamColumn("bid", 23, -1, false, "integer"),
    new StreamColumn("abalance", 23, -1, false, "integer"), new StreamColumn("filler", 1042, 88, false, "character(84)"),
]);
var tellers = new StreamRelation(16391, "public", "pgbench_tellers", 'd',
[
    new StreamColumn("tid", 23, -1, true, "integer"), new StreamColumn("bid", 23, -1, false, "integer"),
    new StreamColumn("tbalance", 23, -1, false, "integer"), new StreamColumn("filler", 1042, 88, false, "character(84)"),
]);
var branches = new StreamRelation(16392, "public", "pgbench_branches", 'd',
[
    new StreamColumn("bid", 23, -1, true, "integer"), new StreamColumn("bbalance", 23, -1, false, "integer"),
    new StreamColumn("filler", 1042, 92, false, "character(88)"),
]);
var history = new StreamRelation(16393, "public", "pgbench_history", 'f',
[
    new StreamColumn("tid", 23, -1, true, "integer"), new StreamColumn("bid", 23, -1, true, "integer"),
    new StreamColumn("aid", 23, -1, true, "integer"), new StreamColumn("delta", 23, -1, true, "integer"),
    new StreamColumn("mtime", 1114, -1, true, "timestamp without time zone"), new StreamColumn("filler", 1042, 26, true, "character(22)"),
    new StreamColumn("hid", 20, -1, true, "bigint"),
]);
var relations = new[] { accounts, tellers, branches, history };
var tables = relations.ToDictionary(r => r.Name, r => new TableInfo(r.RelationId, r.Schema, r.Name, 'r',
    r.Columns.Select((c, i) => new ColumnInfo(c.Name, i + 1, c.TypeName, c.TypeOid, c.IsKey && r.ReplicaIdentity != 'f', false, '\0')).ToArray(),
    r.ReplicaIdentity == 'f' ? [] : r.Columns.Where(c => c.IsKey).Select(c => c.Name).ToArray(), r.ReplicaIdentity, [], null, 0, 0));

static ColumnValue V(string? s) => s is null ? ColumnValue.Null : ColumnValue.Of(s);
var filler84 = new string(' ', 84);
var inv = CultureInfo.InvariantCulture;

IEnumerable<ChangeEvent> Stream()
{
    var random = new Random(42);
    var lsn = 0x1_0000_0000UL;
    var time = DateTimeOffset.UtcNow;
    for (var t = 1; t <= transactions; t++)
    {
        var commit = lsn + 1000;
        var begin = new TransactionBegin((uint)(1000 + t), new NpgsqlLogSequenceNumber(commit), time);
        yield return begin;
        int aid = random.Next(1, 5_000_001), tid = random.Next(1, 501), bid = random.Next(1, 51), delta = random.Next(-5000, 5001);
        yield return new RowChange(accounts, ChangeKind.Update, new NpgsqlLogSequenceNumber(lsn += 100), null, false,
            [V(aid.ToString(inv)), V(bid.ToString(inv)), V(random.Next(-100000, 100000).ToString(inv)), V(filler84)]);
        yield return new RowChange(tellers, ChangeKind.Update, new NpgsqlLogSequenceNumber(lsn += 100), null, false,
            [V(tid.ToString(inv)), V(bid.ToString(inv)), V(random.Next(-100000, 100000).ToString(inv)), V(null)]);
        yield return new RowChange(branches, ChangeKind.Update, new NpgsqlLogSequenceNumber(lsn += 100), null, false,
            [V(bid.ToString(inv)), V(random.Next(-100000, 100000).ToString(inv)), V(null)]);
        yield return new RowChange(history, ChangeKind.Insert, new NpgsqlLogSequenceNumber(lsn += 100), null, false,
            [V(tid.ToString(inv)), V(bid.ToString(inv)), V(aid.ToString(inv)), V(delta.ToString(inv)), V("2026-11-22 05:01:02.123456"), V(null), V(t.ToString(inv))]);
        yield return new TransactionCommit(begin.Xid, begin.CommitLsn, new NpgsqlLogSequenceNumber(commit + 40), time);
        lsn = commit + 100;
    }
}

var rows = transactions * 4;
var options = new DebeziumOptions { TopicPrefix = "bench", DatabaseName = "bench" };


// One stage's cost: process CPU and wall time from Measurement.Start, per item (row events or records).
void Report(string stage, Measurement since, int count, string unit = "event") =>
    Console.WriteLine(string.Create(inv, $"{stage,-14} {(Measurement.ProcessMicros() - since.Cpu) / count,8:F2} µs CPU/{unit,-7}{count / since.Wall.Elapsed.TotalSeconds,9:F0} {unit}s/s wall  (gc0 {GC.CollectionCount(0) - since.Gen0}, gc2 {GC.CollectionCount(2) - since.Gen2}, {(GC.GetTotalAllocatedBytes() - since.Allocated) / count} B allocated/{unit})"));

// KAFKA_BOOTSTRAP's broker, or an in-process mock cluster (then its CPU counts as the process's).
static (DevKafkaCluster? Cluster, string Bootstrap) Broker()
{
    if (Environment.GetEnvironmentVariable("KAFKA_BOOTSTRAP") is { } external)
        return (null, external);
    var cluster = DevKafkaCluster.Start(3);
    return (cluster, cluster.BootstrapServers);
}

List<DebeziumRecord> records = [];
// KAFKA_PRODUCER="compression.type=zstd,linger.ms=20": producer settings to compare.
var producerProperties = Environment.GetEnvironmentVariable("KAFKA_PRODUCER") is { Length: > 0 } producerSpec
    ? producerSpec.Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1])
    : null;
if (mode == "client")
{
    var (cluster, bootstrap) = Broker();
    using var owned = cluster;
    var schemas = Environment.GetEnvironmentVariable("SCHEMAS") != "false";
    // As Replicator's own clients run (glibc's malloc set up for librdkafka), unless MALLOC_* says otherwise.
    Console.WriteLine($"native heap: {NativeHeap.TuneForKafka()}");
    var serializer = new DebeziumSerializer(options with { SchemasEnable = schemas });
    foreach (var e in Stream())
        records.AddRange(serializer.Serialize(e));
    Console.WriteLine(string.Create(inv, $"{records.Count} records, {records.Sum(r => (long)(r.Value?.Length ?? 0) + (r.Key?.Length ?? 0)) / records.Count} bytes each (schemas {schemas})"));
    for (var round = 0; round < rounds; round++)
    {
        var prefix = "floor" + Guid.NewGuid().ToString("N")[..8];
        var measured = Measurement.Start();
        var acknowledged = 0L;
        using (var producer = new Confluent.Kafka.ProducerBuilder<byte[]?, byte[]?>(KafkaChangeSink.ProducerConfigFor(new KafkaSinkOptions { BootstrapServers = bootstrap, Format = options, Extra = producerProperties })).Build())
        {
            void Delivered(Confluent.Kafka.DeliveryReport<byte[]?, byte[]?> report) => Interlocked.Increment(ref acknowledged);
            foreach (var r in records)
            {
                var message = KafkaChangeSink.MessageOf(r);
                while (true)
                {
                    try
                    {
                        producer.Produce(prefix + r.Topic["bench".Length..], message, Delivered);
                        break;
                    }
                    catch (Confluent.Kafka.ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == Confluent.Kafka.ErrorCode.Local_QueueFull)
                    {
                        producer.Poll(TimeSpan.FromMilliseconds(10));
                    }
                }
            }

            while (Interlocked.Read(ref acknowledged) < records.Count)
                producer.Flush(TimeSpan.FromMilliseconds(100));
        }

        Report("client produce", measured, records.Count, "record");

        var config = KafkaChangeSource.ConsumerConfigFor(new KafkaSourceOptions { BootstrapServers = bootstrap, TopicPrefix = prefix, GroupId = prefix });
        // Values are not copied out of the client's buffer (the applier's consumer copies only payloads).
        using var consumer = new Confluent.Kafka.ConsumerBuilder<byte[]?, int>(config).SetValueDeserializer(new LengthOnly()).Build();
        using (var admin = new Confluent.Kafka.AdminClientBuilder(new Confluent.Kafka.AdminClientConfig { BootstrapServers = bootstrap }).Build())
        {
            var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
            consumer.Assign(metadata.Topics.Where(t => t.Topic.StartsWith(prefix, StringComparison.Ordinal))
                .SelectMany(t => t.Partitions.Select(p => new Confluent.Kafka.TopicPartitionOffset(t.Topic, p.PartitionId, Confluent.Kafka.Offset.Beginning))));
        }

        var first = consumer.Consume(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException("nothing consumed");
        measured = Measurement.Start(collect: false);
        long consumed = 1, bytes = 0;
        while (consumed < records.Count)
        {
            var result = consumer.Consume(TimeSpan.FromSeconds(10)) ?? throw new InvalidOperationException($"only {consumed} of {records.Count} records consumed");
            bytes += result.Message.Value;
            consumed++;
        }

        Report("client consume", measured, records.Count, "record");
        Console.WriteLine(string.Create(inv, $"               {bytes / 1048576.0:F0} MB of values read"));
    }

    return;
}

if (mode is "codec" or "all")
{
    for (var round = 0; round < rounds; round++)
    {
        records = new List<DebeziumRecord>(rows * 2);
        var serializer = new DebeziumSerializer(options);
        var measured = Measurement.Start();
        foreach (var e in Stream())
            records.AddRange(serializer.Serialize(e));
        Report("serialize", measured, rows);
    }

    Console.WriteLine(string.Create(inv, $"{records.Count} records, {records.Sum(r => (long)(r.Value?.Length ?? 0) + (r.Key?.Length ?? 0)) / rows} bytes per row event"));
    var partitionOf = new Dictionary<string, int>();
    var offsets = new Dictionary<(string, int), long>();
    var positioned = records.Select(r =>
    {
        var p = r.Key is null || r.Topic.EndsWith(".transaction", StringComparison.Ordinal) ? 0 : (int)((uint)r.Key.Aggregate(17, (h, b) => (h * 31) + b) % 3);
        offsets.TryGetValue((r.Topic, p), out var o);
        offsets[(r.Topic, p)] = o + 1;
        return (Position: new KafkaPosition(r.Topic, p, o), Record: r);
    }).ToList();
    for (var round = 0; round < rounds; round++)
    {
        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (_, t) => tables[t]);
        var orderer = new TransactionOrderer();
        var measured = Measurement.Start();
        var seen = 0;
        long jsonLength = 0;
        foreach (var (position, r) in positioned)
        {
            foreach (var t in orderer.Add(deserializer.Decode(position, r.Key, r.Value, r.Headers)))
            {
                seen += t.Changes.Count;
                jsonLength += KafkaChangeSource.OffsetsToJson(t.ResumeOffsets).Length;
            }
        }

        Report("decode+order", measured, rows);
        if (seen != rows)
            throw new InvalidOperationException($"decoded {seen} of {rows} row events");
    }
}

if (mode is "kafka" or "all")
{
    var (cluster, bootstrap) = Broker();
    using var owned = cluster;
    for (var round = 0; round < rounds; round++)
    {
        var prefix = "bench" + Guid.NewGuid().ToString("N")[..8];
        var measured = Measurement.Start();
        using (var sink = new KafkaChangeSink(new KafkaSinkOptions { BootstrapServers = bootstrap, Format = options with { TopicPrefix = prefix }, Extra = producerProperties }))
        {
            foreach (var e in Stream())
                await sink.WriteAsync(e, CancellationToken.None);
            await sink.FlushAsync(TimeSpan.FromMinutes(5), CancellationToken.None);
        }

        Report("produce", measured, rows);

        // The group join is not part of the steady state: wait for the first transaction, then time the rest.
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = bootstrap, TopicPrefix = prefix, GroupId = prefix,
            Extra = Environment.GetEnvironmentVariable("KAFKA_DEBUG") is { } debug ? new Dictionary<string, string> { ["debug"] = debug } : null },
            new DebeziumDeserializer(DebeziumSourceSettings.Default, (_, t) => tables[t]));
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        var seen = 0;
        Measurement? consuming = null;
        var joining = Stopwatch.StartNew();
        await foreach (var t in source.ReadAsync(null, timeout.Token))
        {
            if (consuming is null)
            {
                Console.WriteLine(string.Create(inv, $"first transaction {joining.Elapsed.TotalSeconds:F2} s after ReadAsync started"));
                consuming = Measurement.Start(collect: false);
            }

            seen += t.Changes.Count;
            _ = KafkaChangeSource.OffsetsToJson(t.ResumeOffsets);
            if (seen >= rows)
                break;
        }

        Report("consume", consuming!, rows);
    }
}

/// <summary>The floor's consumer: reads a value's length, copies nothing.</summary>
internal sealed class LengthOnly : Confluent.Kafka.IDeserializer<int>
{
    public int Deserialize(ReadOnlySpan<byte> data, bool isNull, Confluent.Kafka.SerializationContext context) => isNull ? 0 : data.Length;
}

/// <summary>Where a stage's timing starts: process CPU (µs), collection counts, a running clock.</summary>
internal sealed record Measurement(double Cpu, int Gen0, int Gen2, long Allocated, Stopwatch Wall)
{
    /// <param name="collect">Collect first, so the stage does not pay for what came before it.</param>
    public static Measurement Start(bool collect = true)
    {
        if (collect)
            GC.Collect();
        var (gen0, gen2) = (GC.CollectionCount(0), GC.CollectionCount(2));
        return new Measurement(ProcessMicros(), gen0, gen2, GC.GetTotalAllocatedBytes(), Stopwatch.StartNew());
    }

    /// <summary>CPU time of the whole process (GC and librdkafka threads included), in microseconds.</summary>
    public static double ProcessMicros()
    {
        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime.TotalMilliseconds * 1000;
    }
}
