using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.State;
using Replicator.Kafka;
using Replicator.Kafka.Debezium;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Kafka;

/// <summary>
/// Real PostgreSQL on both sides with Kafka (the mock cluster) in the middle: row changes taken
/// from the source as PostgreSQL text (what Capture hands over) go through the sink, Kafka, the
/// source and the orderer, and are applied to the target with the Kafka offsets stored in
/// replicator.position in the same transaction. A restart from the stored offsets applies nothing
/// twice. (The Applier proper is another component; <see cref="ApplyAsync"/> is the minimal apply
/// the contract asks for.)
/// </summary>
public class KafkaEndToEndTests(PostgresFixture postgres, KafkaFixture kafka) : IClassFixture<PostgresFixture>, IClassFixture<KafkaFixture>
{
    private const string Ddl = """"
        CREATE TABLE public."Items ""x""" (id int PRIMARY KEY, big text, price numeric(10,2), at timestamptz, tags int[]);
        """";

    /// <summary>With schemas in every record, and without (JsonConverter's schemas.enable=false: read by the target's column types).</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Source_through_Kafka_to_target_equals_source_and_a_restart_applies_nothing_twice(bool schemas)
    {
        await using var db = await postgres.CreateDatabasesAsync("kafkae2e");
        await Sql.ExecAsync(db.SourceConnectionString, Ddl);
        await Sql.ExecAsync(db.TargetConnectionString, Ddl);
        await using var source = new NpgsqlConnection(db.SourceConnectionString);
        await source.OpenAsync();
        await Sql.ExecAsync(db.SourceConnectionString, "SELECT 1");
        var relation = new StreamRelation(1, "public", "Items \"x\"", 'd',
        [
            new StreamColumn("id", 23, -1, true, "integer"),
            new StreamColumn("big", 25, -1, false, "text"),
            new StreamColumn("price", 1700, ((10 << 16) | 2) + 4, false, "numeric(10,2)"),
            new StreamColumn("at", 1184, -1, false, "timestamp with time zone"),
            new StreamColumn("tags", 1007, -1, false, "integer[]"),
        ]);

        // Three source transactions, each run on the source and described as Capture would describe it.
        var events = new List<ChangeEvent>();
        var lsn = 1000UL;
        async Task<ColumnValue[]> RowAsync(int id)
        {
            await using var cmd = new NpgsqlCommand("SET TimeZone = 'Asia/Kolkata'; SELECT id::text, big, price::text, at::text, tags::text FROM public.\"Items \"\"x\"\"\" WHERE id = " + id, source);
            await using var reader = await cmd.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync());
            return Enumerable.Range(0, 5).Select(i => reader.IsDBNull(i) ? ColumnValue.Null : ColumnValue.Of(reader.GetString(i))).ToArray();
        }

        void Transaction(uint xid, params ChangeEvent[] changes)
        {
            var commit = new NpgsqlLogSequenceNumber(lsn += 100);
            events.Add(new TransactionBegin(xid, commit, DateTimeOffset.UtcNow));
            events.AddRange(changes);
            events.Add(new TransactionCommit(xid, commit, new NpgsqlLogSequenceNumber(lsn + 8), DateTimeOffset.UtcNow));
        }

        await Sql.ExecAsync(db.SourceConnectionString, """"
            INSERT INTO public."Items ""x""" VALUES
              (1, repeat('big value ', 5000), 12.50, '2024-01-02 03:04:05.123456+00', '{1,2}'),
              (2, 'small', -0.01, NULL, '{}'),
              (3, NULL, NULL, '1999-12-31 23:59:59+05', NULL);
            """");
        Transaction(501,
            new RowChange(relation, ChangeKind.Insert, new NpgsqlLogSequenceNumber(lsn + 1), null, false, await RowAsync(1)),
            new RowChange(relation, ChangeKind.Insert, new NpgsqlLogSequenceNumber(lsn + 2), null, false, await RowAsync(2)),
            new RowChange(relation, ChangeKind.Insert, new NpgsqlLogSequenceNumber(lsn + 3), null, false, await RowAsync(3)));

        await Sql.ExecAsync(db.SourceConnectionString, """"UPDATE public."Items ""x""" SET price = 99.99, tags = '{3}' WHERE id = 1"""");
        var updated = await RowAsync(1);
        updated[1] = ColumnValue.UnchangedToast; // pgoutput does not resend the unchanged TOASTed text
        Transaction(502, new RowChange(relation, ChangeKind.Update, new NpgsqlLogSequenceNumber(lsn + 1), null, false, updated));

        await Sql.ExecAsync(db.SourceConnectionString, """"DELETE FROM public."Items ""x""" WHERE id = 2"""");
        Transaction(503, new RowChange(relation, ChangeKind.Delete, new NpgsqlLogSequenceNumber(lsn + 1), [ColumnValue.Of("2"), ColumnValue.Null, ColumnValue.Null, ColumnValue.Null, ColumnValue.Null], true, null));

        var prefix = "e2e" + Guid.NewGuid().ToString("N")[..8];
        using (var sink = new KafkaChangeSink(new KafkaSinkOptions { BootstrapServers = kafka.BootstrapServers, Format = new DebeziumOptions { TopicPrefix = prefix, DatabaseName = db.Name, SchemasEnable = schemas } }))
        {
            foreach (var e in events)
                await sink.WriteAsync(e, CancellationToken.None);
            await sink.FlushAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
            Assert.Equal(events.OfType<TransactionCommit>().Last().EndLsn, sink.DurableLsn);
        }

        await using var target = new NpgsqlConnection(db.TargetConnectionString);
        await target.OpenAsync();
        await TargetState.EnsureAsync(target, CancellationToken.None);
        var tables = await TableCatalog.LoadAsync(target, CancellationToken.None);
        DebeziumDeserializer Reader() => new(DebeziumSourceSettings.Default, (s, t) => tables.FirstOrDefault(x => x.Schema == s && x.Name == t));

        // The applier "crashes" after two transactions; the restart resumes from the offsets stored with the second.
        Assert.Equal(2, await ConsumeAndApplyAsync(target, prefix, Reader(), expectTransactions: 2, idle: TimeSpan.FromSeconds(60)));
        Assert.Equal(3, (await Sql.RowsAsync(db.TargetConnectionString, "SELECT 1 FROM public.\"Items \"\"x\"\"\"")).Count);
        Assert.Equal(1, await ConsumeAndApplyAsync(target, prefix, Reader(), expectTransactions: 1, idle: TimeSpan.FromSeconds(60)));
        const string compare = "SELECT t::text FROM public.\"Items \"\"x\"\"\" t ORDER BY id";
        Assert.Equal(await Sql.RowsAsync(db.SourceConnectionString, compare), await Sql.RowsAsync(db.TargetConnectionString, compare));
        Assert.Equal(2, (await Sql.RowsAsync(db.TargetConnectionString, compare)).Count);

        // Restart (new consumer, new group: Kafka's committed offsets are not used) from the stored offsets.
        var again = await ConsumeAndApplyAsync(target, prefix, Reader(), expectTransactions: 0, idle: TimeSpan.FromSeconds(3));
        Assert.Equal(0, again);
        Assert.Equal(await Sql.RowsAsync(db.SourceConnectionString, compare), await Sql.RowsAsync(db.TargetConnectionString, compare));
    }

    /// <summary>Consumes from the stored position and applies each transaction with its offsets in one target transaction; returns how many were applied.</summary>
    private async Task<int> ConsumeAndApplyAsync(NpgsqlConnection target, string prefix, DebeziumDeserializer reader, int expectTransactions, TimeSpan idle)
    {
        var (storedLsn, storedOffsets) = await PositionAsync(target);
        using var kafkaSource = new KafkaChangeSource(new KafkaSourceOptions { BootstrapServers = kafka.BootstrapServers, TopicPrefix = prefix, GroupId = prefix + Guid.NewGuid().ToString("N")[..4] }, reader);
        using var stop = new CancellationTokenSource(idle);
        var applied = 0;
        try
        {
            await foreach (var t in kafkaSource.ReadAsync(storedOffsets, stop.Token))
            {
                if (storedLsn is not null && t.Commit.CommitLsn <= storedLsn.Value)
                    continue; // already applied (DESIGN invariant 2)
                await ApplyAsync(target, t);
                applied++;
                if (expectTransactions > 0 && applied == expectTransactions)
                    break;
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }

        return applied;
    }

    private static async Task<(NpgsqlLogSequenceNumber?, IReadOnlyDictionary<(string, int), long>?)> PositionAsync(NpgsqlConnection target)
    {
        await using var cmd = new NpgsqlCommand("SELECT commit_lsn, kafka_offsets::text FROM replicator.position WHERE slot_name = 'kafka-test'", target);
        await using var reader = await cmd.ExecuteReaderAsync();
        if (!await reader.ReadAsync())
            return (null, null);
        return (reader.GetFieldValue<NpgsqlLogSequenceNumber>(0), KafkaChangeSource.OffsetsFromJson(reader.GetString(1)));
    }

    private static async Task ApplyAsync(NpgsqlConnection target, OrderedTransaction transaction)
    {
        await using var tx = await target.BeginTransactionAsync();
        foreach (var change in transaction.Changes)
        {
            var row = Assert.IsType<RowChange>(change);
            var columns = row.Relation.Columns;
            var keys = row.Relation.KeyIndexes;
            await using var cmd = new NpgsqlCommand { Connection = target, Transaction = tx };
            string Param(int i, ColumnValue v)
            {
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = v.IsNull ? DBNull.Value : v.Text });
                return $"${cmd.Parameters.Count}::text::{columns[i].TypeName}";
            }

            string Where(IReadOnlyList<ColumnValue> values) => string.Join(" AND ", keys.Select(k => $"{columns[k].QuotedName} = {Param(k, values[k])}"));
            switch (row.Kind)
            {
                case ChangeKind.Insert:
                    cmd.CommandText = $"INSERT INTO {row.Relation.QuotedName} ({string.Join(", ", columns.Select(c => c.QuotedName))}) VALUES ({string.Join(", ", columns.Select((c, i) => Param(i, row.New![i])))})";
                    break;
                case ChangeKind.Update:
                    var set = string.Join(", ", columns.Select((c, i) => (c, i)).Where(p => row.New![p.i].Kind != ValueKind.UnchangedToast && !keys.Contains(p.i))
                        .Select(p => $"{p.c.QuotedName} = {Param(p.i, row.New![p.i])}").ToList());
                    cmd.CommandText = $"UPDATE {row.Relation.QuotedName} SET {set} WHERE {Where(row.Old ?? row.New!)}";
                    break;
                case ChangeKind.Delete:
                    cmd.CommandText = $"DELETE FROM {row.Relation.QuotedName} WHERE {Where(row.Old!)}";
                    break;
            }

            Assert.Equal(1, await cmd.ExecuteNonQueryAsync());
        }

        await using (var position = new NpgsqlCommand("""
            INSERT INTO replicator.position (slot_name, commit_lsn, commit_time, kafka_offsets) VALUES ('kafka-test', $1, $2, $3::jsonb)
            ON CONFLICT (slot_name) DO UPDATE SET commit_lsn = excluded.commit_lsn, commit_time = excluded.commit_time, kafka_offsets = excluded.kafka_offsets, updated_at = clock_timestamp()
            """, target, tx))
        {
            position.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.PgLsn, Value = transaction.Commit.CommitLsn });
            position.Parameters.Add(new NpgsqlParameter { Value = transaction.Commit.CommitTime });
            position.Parameters.Add(new NpgsqlParameter { Value = KafkaChangeSource.OffsetsToJson(transaction.ResumeOffsets) });
            await position.ExecuteNonQueryAsync();
        }

        await tx.CommitAsync();
    }
}
