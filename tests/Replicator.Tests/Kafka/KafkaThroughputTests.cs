using System.Diagnostics;
using System.Globalization;
using NpgsqlTypes;
using Replicator.Core.Changes;
using Replicator.Kafka;
using Replicator.Kafka.Debezium;
using Replicator.Tests.Fixtures;
using Xunit.Abstractions;
using static Replicator.Tests.Kafka.DebeziumTestData;

namespace Replicator.Tests.Kafka;

/// <summary>
/// A modest throughput measurement of the Kafka path on the mock cluster (2 shared cores): it
/// prints events/s for serialize-only, produce (until acknowledged) and consume+order, and fails
/// only if the path is pathologically slow. bench/cdc.sh --buffer kafka is the real benchmark.
/// </summary>
public class KafkaThroughputTests(KafkaFixture kafka, ITestOutputHelper output) : IClassFixture<KafkaFixture>
{
    private const int Transactions = 500;
    private const int RowsPerTransaction = 100;

    private static IEnumerable<ChangeEvent> Stream()
    {
        var lsn = 1000UL;
        for (var t = 1; t <= Transactions; t++)
        {
            var commit = lsn + 1_000_000;
            yield return new TransactionBegin((uint)t, new NpgsqlLogSequenceNumber(commit), CommitTime);
            for (var r = 0; r < RowsPerTransaction; r++)
            {
                var id = ((t * RowsPerTransaction) + r).ToString(CultureInfo.InvariantCulture);
                yield return Insert(Customers, lsn++, id, "name of customer " + id);
            }

            yield return new TransactionCommit((uint)t, new NpgsqlLogSequenceNumber(commit), new NpgsqlLogSequenceNumber(commit + 10), CommitTime);
            lsn = commit + 20;
        }
    }

    [Fact]
    public async Task Fifty_thousand_events_travel_the_kafka_path_whole_and_in_order_with_their_rates_printed()
    {
        const int rows = Transactions * RowsPerTransaction;
        var serializeOnly = Stopwatch.StartNew();
        var serializer = Serializer();
        long bytes = 0;
        foreach (var e in Stream())
        {
            foreach (var r in serializer.Serialize(e))
                bytes += (r.Value?.Length ?? 0) + (r.Key?.Length ?? 0);
        }

        serializeOnly.Stop();

        var table = Table("public", "customers", ("id", 23, "integer", true), ("name", 25, "text", false));
        var inMemory = new List<DebeziumRecord>();
        serializer = Serializer();
        foreach (var e in Stream())
            inMemory.AddRange(serializer.Serialize(e));
        int DecodeAll()
        {
            var reader = new DebeziumDeserializer(DebeziumSourceSettings.Default, (_, _) => table);
            var orderer = new TransactionOrderer();
            var offset = 0L;
            var decodedRows = 0;
            foreach (var r in inMemory)
            {
                foreach (var t in orderer.Add(reader.Decode(new KafkaPosition(r.Topic, 0, offset++), r.Key, r.Value, r.Headers)))
                    decodedRows += t.Changes.Count;
            }

            return decodedRows;
        }

        Assert.Equal(rows, DecodeAll()); // warm-up (JIT)
        var decodeOnly = Stopwatch.StartNew();
        Assert.Equal(rows, DecodeAll());
        decodeOnly.Stop();

        var prefix = "tp" + Guid.NewGuid().ToString("N")[..8];
        var produce = Stopwatch.StartNew();
        using (var sink = new KafkaChangeSink(new KafkaSinkOptions { BootstrapServers = kafka.BootstrapServers, Format = new DebeziumOptions { TopicPrefix = prefix, DatabaseName = "bench" } }))
        {
            foreach (var e in Stream())
                await sink.WriteAsync(e, CancellationToken.None);
            await sink.FlushAsync(TimeSpan.FromMinutes(2), CancellationToken.None);
            Assert.NotNull(sink.DurableLsn);
        }

        produce.Stop();

        var consume = Stopwatch.StartNew();
        using var source = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix },
            new DebeziumDeserializer(DebeziumSourceSettings.Default, (_, _) => table));
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var seen = 0;
        var lastXid = 0u;
        await foreach (var t in source.ReadAsync(null, timeout.Token))
        {
            Assert.Equal(lastXid + 1, t.Begin.Xid);
            lastXid = t.Begin.Xid;
            seen += t.Changes.Count;
            if (lastXid == Transactions)
                break;
        }

        consume.Stop();
        Assert.Equal(rows, seen);

        var serializeRate = rows / serializeOnly.Elapsed.TotalSeconds;
        var produceRate = rows / produce.Elapsed.TotalSeconds;
        var consumeRate = rows / consume.Elapsed.TotalSeconds;
        output.WriteLine($"{rows} row events in {Transactions} transactions, {bytes / rows} bytes/event (key+value JSON)");
        output.WriteLine($"deserialize+order only (no Kafka): {rows / decodeOnly.Elapsed.TotalSeconds:F0} events/s");
        output.WriteLine($"serialize only: {serializeRate:F0} events/s; produce until acknowledged: {produceRate:F0} events/s; consume+deserialize+order: {consumeRate:F0} events/s");
        // Rates are printed, not asserted: performance is judged in bench/, never by a timed test.
    }
}
