using Confluent.Kafka;
using Npgsql;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests;

public class PostgresFixtureTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task Each_test_gets_its_own_databases_on_two_logical_clusters_and_they_are_dropped_afterwards()
    {
        string name;
        await using (var db = await fixture.CreateDatabasesAsync("fixture"))
        {
            name = db.Name;
            Assert.NotEqual(db.SourceCluster.Port, db.TargetCluster.Port);
            await using var source = new NpgsqlConnection(db.SourceConnectionString);
            await source.OpenAsync();
            await using (var cmd = new NpgsqlCommand("SHOW wal_level", source))
                Assert.Equal("logical", await cmd.ExecuteScalarAsync());
            await using (var cmd = new NpgsqlCommand("SELECT slot_name FROM pg_create_logical_replication_slot('fixture_probe', 'pgoutput')", source))
                Assert.Equal("fixture_probe", await cmd.ExecuteScalarAsync());
        }

        foreach (var cluster in new[] { fixture.Servers.Source, fixture.Servers.Target })
        {
            await using var conn = new NpgsqlConnection(cluster.ConnectionString());
            await conn.OpenAsync();
            await using var cmd = new NpgsqlCommand("SELECT count(*) FROM pg_database WHERE datname = $1", conn);
            cmd.Parameters.AddWithValue(name);
            Assert.Equal(0L, await cmd.ExecuteScalarAsync());
            await using var slots = new NpgsqlCommand("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'fixture_probe'", conn);
            Assert.Equal(0L, await slots.ExecuteScalarAsync());
        }
    }

    [Fact]
    public void Missing_server_binaries_are_reported_with_what_to_install()
    {
        var saved = Environment.GetEnvironmentVariable("PG_BIN");
        try
        {
            Environment.SetEnvironmentVariable("PG_BIN", "/nonexistent/pg/bin");
            var e = Assert.Throws<InvalidOperationException>(PostgresCluster.FindBinDirectory);
            Assert.Contains("has no initdb", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable("PG_BIN", saved);
        }
    }
}

public class KafkaFixtureTests(KafkaFixture kafka) : IClassFixture<KafkaFixture>
{
    [Fact]
    public async Task The_mock_cluster_takes_idempotent_produce_and_serves_a_read_committed_consumer_group()
    {
        var topic = "smoke-" + Guid.NewGuid().ToString("N")[..8];
        using (var producer = new ProducerBuilder<string, string>(new ProducerConfig
        {
            BootstrapServers = kafka.BootstrapServers,
            EnableIdempotence = true,
            Acks = Acks.All,
            CompressionType = CompressionType.Lz4,
        }).Build())
        {
            for (var i = 0; i < 100; i++)
                await producer.ProduceAsync(topic, new Message<string, string> { Key = $"k{i % 7}", Value = $"v{i}" });
            producer.Flush(TimeSpan.FromSeconds(10));
        }

        using var consumer = new ConsumerBuilder<string, string>(new ConsumerConfig
        {
            BootstrapServers = kafka.BootstrapServers,
            GroupId = "smoke-" + Guid.NewGuid().ToString("N")[..8],
            AutoOffsetReset = AutoOffsetReset.Earliest,
            IsolationLevel = IsolationLevel.ReadCommitted,
            EnableAutoCommit = false,
        }).Build();
        consumer.Subscribe(topic);
        var seen = new HashSet<string>();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (seen.Count < 100 && DateTime.UtcNow < deadline)
        {
            var result = consumer.Consume(TimeSpan.FromSeconds(1));
            if (result is not null)
                seen.Add(result.Message.Value);
        }

        consumer.Close();
        Assert.Equal(Enumerable.Range(0, 100).Select(i => $"v{i}").ToHashSet(), seen);
    }
}
