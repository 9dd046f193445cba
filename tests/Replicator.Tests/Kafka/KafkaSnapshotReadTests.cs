using System.Threading.Channels;
using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using Replicator.Applier;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.State;
using Replicator.Kafka;
using Replicator.Kafka.Debezium;
using Replicator.Tests.Fixtures;
using static Replicator.Tests.Kafka.DebeziumTestData;

namespace Replicator.Tests.Kafka;

/// <summary>
/// Snapshot reads (<c>op: r</c>, as a Debezium connector's initial snapshot writes them: no
/// transaction block, every row at the snapshot's LSN) followed by streamed transactions that
/// committed just after the snapshot, applied by the real applier from Kafka.
/// </summary>
public class KafkaSnapshotReadTests(PostgresFixture postgres, KafkaFixture kafka) : IClassFixture<PostgresFixture>, IClassFixture<KafkaFixture>
{
    private const string Slot = "snapshot-reads";
    private const int Rows = 300;
    private static readonly NpgsqlLogSequenceNumber SnapshotLsn = new(0x1000);

    private static readonly StreamRelation Notes = new(16400, "public", "notes", 'f', [new StreamColumn("body", 25, -1, false, "text")]);

    private const string Ddl = "CREATE TABLE public.customers (id int PRIMARY KEY, name text); CREATE TABLE public.notes (body text);";

    [Fact]
    public async Task A_connectors_snapshot_read_again_after_a_restart_and_the_commits_right_after_it_all_land_once()
    {
        await using var db = await postgres.CreateDatabasesAsync("snapreads");
        await Sql.ExecAsync(db.TargetConnectionString, Ddl);
        var prefix = "snap" + Guid.NewGuid().ToString("N")[..8];

        await WriteSnapshotAsync(prefix, db.Name);
        await ApplyAsync(db.TargetConnectionString, prefix, start: default, until: $"SELECT count(*) = {Rows} FROM public.customers");
        // The connector restarted and read its snapshot again from the start, then streamed a transaction
        // committed just after the snapshot, which deletes a row both reads carry.
        await WriteSnapshotAsync(prefix, db.Name);
        await WriteStreamedAsync(prefix, db.Name, deleteId: 7);
        await ApplyAsync(db.TargetConnectionString, prefix, start: default, until: "SELECT count(*) = 1 FROM public.customers WHERE id = 5000");

        Assert.Equal(Rows, await CountAsync(db.TargetConnectionString, "public.customers")); // 300 read twice, one deleted, one inserted
        Assert.Equal(0, await CountAsync(db.TargetConnectionString, "public.customers WHERE id = 7"));
        Assert.Equal("changed", await ScalarAsync(db.TargetConnectionString, "SELECT name FROM public.customers WHERE id = 5"));
        // A table without a key cannot tell a second read of a row from another row: each read is a row (docs/kafka.md).
        Assert.Equal(2 * 10 + 1, await CountAsync(db.TargetConnectionString, "public.notes"));
        // The position is the streamed commit's; the snapshot reads never moved it.
        Assert.Equal("0/1040", await ScalarAsync(db.TargetConnectionString, $"SELECT commit_lsn::text FROM replicator.position WHERE slot_name = '{Slot}'"));
    }

    [Fact]
    public async Task Snapshot_reads_of_tables_the_target_already_copied_at_that_point_are_passed_over()
    {
        await using var db = await postgres.CreateDatabasesAsync("snapcopied");
        await Sql.ExecAsync(db.TargetConnectionString, Ddl);
        // What Replicator's own snapshot leaves: the rows copied at the consistent point, recorded per table.
        await Sql.ExecAsync(db.TargetConnectionString, $"""
            INSERT INTO public.customers SELECT i, 'copied ' || i FROM generate_series(1, {Rows}) i;
            INSERT INTO public.notes SELECT 'note ' || i FROM generate_series(1, 10) i;
            """);
        await using (var target = new NpgsqlConnection(db.TargetConnectionString))
        {
            await target.OpenAsync();
            await TargetState.EnsureAsync(target, CancellationToken.None);
        }

        await Sql.ExecAsync(db.TargetConnectionString, $"""
            INSERT INTO replicator.table_sync VALUES ('{Slot}', 'public', 'customers', '{SnapshotLsn}'), ('{Slot}', 'public', 'notes', '{SnapshotLsn}');
            """);
        var prefix = "snap" + Guid.NewGuid().ToString("N")[..8];
        await WriteSnapshotAsync(prefix, db.Name);
        await WriteStreamedAsync(prefix, db.Name);

        await ApplyAsync(db.TargetConnectionString, prefix, start: SnapshotLsn, until: "SELECT count(*) = 1 FROM public.customers WHERE id = 5000");

        Assert.Equal(Rows + 1, await CountAsync(db.TargetConnectionString, "public.customers"));
        Assert.Equal("copied 7", await ScalarAsync(db.TargetConnectionString, "SELECT name FROM public.customers WHERE id = 7")); // not rewritten
        Assert.Equal(10 + 1, await CountAsync(db.TargetConnectionString, "public.notes")); // no second copy
        Assert.Equal("changed", await ScalarAsync(db.TargetConnectionString, "SELECT name FROM public.customers WHERE id = 5"));
    }

    [Fact]
    public async Task An_incremental_snapshot_read_behind_the_insert_of_a_transaction_still_waiting_for_its_END_is_applied_after_it()
    {
        // A Debezium incremental snapshot reads a chunk while streaming: transaction 900 inserted customer 42
        // and a note; the chunk read that follows in customers' partition carries 42 as well. The
        // transaction's note and END come later. Applied first, the read would write 42 and the
        // transaction's insert would then fail on its key.
        await using var db = await postgres.CreateDatabasesAsync("snapincr");
        await Sql.ExecAsync(db.TargetConnectionString, Ddl);
        var prefix = "snap" + Guid.NewGuid().ToString("N")[..8];
        var serializer = new DebeziumSerializer(new DebeziumOptions { TopicPrefix = prefix, DatabaseName = db.Name });
        var transaction = new ChangeEvent[] { Begin(900, 0x2040), Insert(Customers, 0x2010, "42", "streamed"), Insert(Notes, 0x2020, "note"), Commit(900, 0x2040, 0x2048) }
            .SelectMany(serializer.Serialize).ToList();
        var customerRecord = transaction.Single(r => r.Topic.EndsWith(".customers", StringComparison.Ordinal));
        var read = serializer.SerializeSnapshotRow(Customers, [V("42"), V("streamed")], SnapshotMarker.True, new NpgsqlLogSequenceNumber(0x2100), CommitTime);
        using var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, Partitioner = Partitioner.Murmur2Random }).Build();
        foreach (var record in transaction.TakeWhile(r => r != customerRecord).Append(customerRecord).Append(read))
            Produce(producer, record);
        Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));

        await ApplyAsync(db.TargetConnectionString, prefix, start: new NpgsqlLogSequenceNumber(0x1000), until: "SELECT count(*) = 1 FROM public.notes", whileRunning: async () =>
        {
            await Task.Delay(2000); // the applier reads the insert and the read; the transaction cannot complete yet
            Assert.Equal(0, await CountAsync(db.TargetConnectionString, "public.customers"));
            foreach (var record in transaction.SkipWhile(r => r != customerRecord).Skip(1))
                Produce(producer, record);
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        });

        Assert.Equal("streamed", await ScalarAsync(db.TargetConnectionString, "SELECT name FROM public.customers WHERE id = 42"));
        // Produced without our headers, as a connector writes it: the position is the LSN in END's id; the read did not move it.
        Assert.Equal("0/2048", await ScalarAsync(db.TargetConnectionString, $"SELECT commit_lsn::text FROM replicator.position WHERE slot_name = '{Slot}'"));
    }

    private async Task WriteSnapshotAsync(string prefix, string database)
    {
        var serializer = new DebeziumSerializer(new DebeziumOptions { TopicPrefix = prefix, DatabaseName = database });
        using var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, Partitioner = Partitioner.Murmur2Random, LingerMs = 5 }).Build();
        for (var i = 1; i <= Rows; i++)
        {
            var marker = i == 1 ? SnapshotMarker.First : SnapshotMarker.True;
            Produce(producer, serializer.SerializeSnapshotRow(Customers, [V(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), V("read " + i)], marker, SnapshotLsn, CommitTime));
        }

        for (var i = 1; i <= 10; i++)
            Produce(producer, serializer.SerializeSnapshotRow(Notes, [V("note " + i)], i == 10 ? SnapshotMarker.Last : SnapshotMarker.True, SnapshotLsn, CommitTime));
        Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
    }

    private static void Produce(IProducer<byte[]?, byte[]?> producer, DebeziumRecord record) =>
        producer.Produce(record.Topic, new Message<byte[]?, byte[]?> { Key = record.Key, Value = record.Value });

    /// <summary>One transaction committed 0x40 bytes of WAL after the snapshot: an update of a snapshot row, two inserts (and a delete).</summary>
    private async Task WriteStreamedAsync(string prefix, string database, int? deleteId = null)
    {
        using var sink = new KafkaChangeSink(new KafkaSinkOptions { BootstrapServers = kafka.BootstrapServers, Format = new DebeziumOptions { TopicPrefix = prefix, DatabaseName = database } });
        ChangeEvent[] events =
        [
            Begin(900, 0x1040),
            new RowChange(Customers, ChangeKind.Update, new NpgsqlLogSequenceNumber(0x1010), null, false, [V("5"), V("changed")]),
            Insert(Customers, 0x1020, "5000", "streamed"),
            Insert(Notes, 0x1030, "streamed note"),
            .. deleteId is { } id ? [new RowChange(Customers, ChangeKind.Delete, new NpgsqlLogSequenceNumber(0x1038), [V(id.ToString(System.Globalization.CultureInfo.InvariantCulture)), ColumnValue.Null], true, null)] : Array.Empty<ChangeEvent>(),
            Commit(900, 0x1040, 0x1048),
        ];
        foreach (var e in events)
            await sink.WriteAsync(e, CancellationToken.None);
        await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
    }

    /// <summary>
    /// The applier as <c>replicator apply --buffer kafka</c> runs it, until <paramref name="until"/> holds on
    /// the target; from the stored position and offsets when there are some, else from <paramref name="start"/>.
    /// <paramref name="whileRunning"/> runs once the applier has started, before the wait.
    /// </summary>
    private async Task ApplyAsync(string targetConnectionString, string prefix, NpgsqlLogSequenceNumber start, string until, Func<Task>? whileRunning = null)
    {
        await using var target = new NpgsqlConnection(targetConnectionString);
        await target.OpenAsync();
        await TargetState.EnsureAsync(target, CancellationToken.None);
        IReadOnlyDictionary<(string, int), long> offsets = new Dictionary<(string, int), long>();
        if (await TargetState.ReadPositionRowAsync(target, Slot, CancellationToken.None) is { } stored)
        {
            start = stored.CommitLsn;
            offsets = KafkaChangeSource.OffsetsFromJson(stored.KafkaOffsets);
        }

        var tables = await TableCatalog.LoadAsync(target, CancellationToken.None);
        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => tables.FirstOrDefault(x => x.Schema == s && x.Name == t));
        var consumer = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix }, deserializer) { AppliedThrough = start };
        var applier = new ChangeApplier(target, null, new ApplierSettings(Slot), NullLogger.Instance, _ => { }, () => 0, 0);
        await applier.InitializeAsync((ulong)start, CancellationToken.None);
        var channel = Channel.CreateBounded<ChangeEvent>(1000);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var consuming = ReplicationPipeline.ConsumeAsync(consumer, offsets, channel.Writer, stop.Token);
        var applying = applier.RunAsync(channel.Reader, stop.Token);
        if (whileRunning is not null)
            await whileRunning();
        while (!await Sql.ScalarAsync<bool>(targetConnectionString, $"SELECT ({until}) AND EXISTS (SELECT FROM replicator.position WHERE slot_name = '{Slot}')"))
        {
            Assert.False(applying.IsFaulted, applying.Exception?.ToString());
            Assert.False(consuming.IsFaulted, consuming.Exception?.ToString());
            Assert.False(stop.IsCancellationRequested, "the target did not get the streamed transaction within 90 s");
            await Task.Delay(100);
        }

        await stop.CancelAsync();
        await Task.WhenAll(consuming, applying).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    private static async Task<long> CountAsync(string connectionString, string table) =>
        long.Parse(await ScalarAsync(connectionString, $"SELECT count(*) FROM {table}"), System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<string> ScalarAsync(string connectionString, string sql) =>
        (await Sql.RowsAsync(connectionString, sql)).Single();
}
