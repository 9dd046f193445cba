using System.Security.Cryptography;
using Confluent.Kafka;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Errors;
using Replicator.Kafka;
using Replicator.Kafka.Debezium;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Kafka;

/// <summary>
/// Records that retention deleted before the applier first read their partition were never applied.
/// The mock cluster keeps at most 5 MB per partition, so writing more than that onto the transaction
/// topic makes it delete the oldest BEGIN/END markers, as a real cluster's retention would.
/// </summary>
public class KafkaRetentionTests(PostgresFixture postgres, KafkaFixture kafka) : IClassFixture<PostgresFixture>, IClassFixture<KafkaFixture>
{
    private const string Ddl = "CREATE TABLE public.items (id int PRIMARY KEY, note text);";

    private static readonly StreamRelation Items = new(1, "public", "items", 'd',
    [
        new StreamColumn("id", 23, -1, true, "integer"),
        new StreamColumn("note", 25, -1, false, "text"),
    ]);

    [Fact]
    public async Task An_applier_that_starts_where_retention_deleted_unapplied_records_stops_naming_the_partition()
    {
        var (prefix, tables) = await TopicsWithDeletedMarkersAsync("retention");

        // The target has applied nothing (position 0/0 as after a snapshot at 0/100): the markers of
        // transactions 1 and 2 are gone, so they would never be released; the stream must stop.
        var error = await Assert.ThrowsAsync<ReplicationException>(() => ReadAsync(prefix, tables, new NpgsqlLogSequenceNumber(100), expect: 1));
        Assert.Equal(ReplicationErrorKind.Permanent, error.Kind);
        Assert.Contains($"{prefix}.transaction[0]", error.Message, StringComparison.Ordinal);
        Assert.Contains("retention", error.Message, StringComparison.Ordinal);
        Assert.Contains("newer than what the target has applied (0/64)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Records_deleted_by_retention_that_the_target_already_has_are_no_reason_to_stop()
    {
        var (prefix, tables) = await TopicsWithDeletedMarkersAsync("retained", last: 4);

        // The target already has everything up to the third transaction: what was deleted is applied,
        // the third is passed over as applied, and the fourth follows.
        var read = await ReadAsync(prefix, tables, new NpgsqlLogSequenceNumber(3000), expect: 1);
        Assert.Equal(new NpgsqlLogSequenceNumber(4000), Assert.Single(read).Commit.CommitLsn);
    }

    /// <summary>
    /// Transactions 1 and 2 (commits 0/3E8, 0/7D0), more than 5 MB of tombstones on the transaction
    /// topic's partition 0 (so the broker deletes the oldest records there), then transaction 3 (0/BB8)
    /// and the ones after it up to <paramref name="last"/> (commit n × 1000).
    /// </summary>
    private async Task<(string Prefix, IReadOnlyList<TableInfo> Tables)> TopicsWithDeletedMarkersAsync(string name, int last = 3)
    {
        await using var db = await postgres.CreateDatabasesAsync(name);
        await Sql.ExecAsync(db.TargetConnectionString, Ddl);
        await using var target = new Npgsql.NpgsqlConnection(db.TargetConnectionString);
        await target.OpenAsync();
        var tables = (await TableCatalog.LoadAsync(target, CancellationToken.None)).ToList();

        var prefix = name + Guid.NewGuid().ToString("N")[..8];
        var options = new KafkaSinkOptions { BootstrapServers = kafka.BootstrapServers, Format = new DebeziumOptions { TopicPrefix = prefix, DatabaseName = db.Name } };
        await WriteAsync(options, 1);
        await WriteAsync(options, 2);

        var transactionTopic = new TopicPartition(prefix + ".transaction", new Partition(0));
        using (var producer = new ProducerBuilder<byte[], byte[]?>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, LingerMs = 0 }).Build())
        {
            for (var i = 0; i < 80; i++)
                producer.Produce(transactionTopic, new Message<byte[], byte[]?> { Key = RandomNumberGenerator.GetBytes(100_000), Value = null });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        for (var n = 3; n <= last; n++)
            await WriteAsync(options, n);
        using (var consumer = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = kafka.BootstrapServers, GroupId = prefix }).Build())
            Assert.True(consumer.QueryWatermarkOffsets(transactionTopic, TimeSpan.FromSeconds(10)).Low.Value > 4, "the broker deleted the first markers");
        return (prefix, tables);
    }

    private static async Task WriteAsync(KafkaSinkOptions options, int n)
    {
        var commit = new NpgsqlLogSequenceNumber((ulong)n * 1000);
        using var sink = new KafkaChangeSink(options);
        await sink.WriteAsync(new TransactionBegin((uint)(500 + n), commit, DateTimeOffset.UtcNow), CancellationToken.None);
        await sink.WriteAsync(new RowChange(Items, ChangeKind.Insert, new NpgsqlLogSequenceNumber((ulong)commit - 10), null, false, [ColumnValue.Of(n.ToString(System.Globalization.CultureInfo.InvariantCulture)), ColumnValue.Of("row " + n)]), CancellationToken.None);
        await sink.WriteAsync(new TransactionCommit((uint)(500 + n), commit, new NpgsqlLogSequenceNumber((ulong)commit + 8), DateTimeOffset.UtcNow), CancellationToken.None);
        await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
    }

    /// <summary>Reads from every partition's beginning (a first start) until <paramref name="expect"/> transactions came or 20 s passed.</summary>
    private async Task<List<OrderedTransaction>> ReadAsync(string prefix, IReadOnlyList<TableInfo> tables, NpgsqlLogSequenceNumber appliedThrough, int expect)
    {
        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => tables.FirstOrDefault(x => x.Schema == s && x.Name == t));
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix }, deserializer)
        {
            AppliedThrough = appliedThrough,
        };
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var read = new List<OrderedTransaction>();
        await foreach (var transaction in source.ReadAsync(null, stop.Token))
        {
            read.Add(transaction);
            if (read.Count == expect)
                break;
        }

        return read;
    }
}
