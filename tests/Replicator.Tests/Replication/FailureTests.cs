using Microsoft.Extensions.Logging;
using Npgsql;
using Replicator.Core.Errors;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

public class FailureTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Ledger = """
        CREATE TABLE ledger (n int, note text);
        ALTER TABLE ledger REPLICA IDENTITY FULL;
        CREATE TABLE account (id int PRIMARY KEY, balance bigint);
        INSERT INTO account SELECT g, 0 FROM generate_series(1, 20) g;
        """;

    /// <summary>Each call: one source transaction that adds a ledger row (duplicates would show) and moves money.</summary>
    private static async Task WriteAsync(string source, int from, int count)
    {
        await using var conn = new NpgsqlConnection(source);
        await conn.OpenAsync();
        for (var i = from; i < from + count; i++)
        {
            await using var cmd = new NpgsqlCommand(
                $"BEGIN; INSERT INTO ledger VALUES ({i}, 'txn {i}'); UPDATE account SET balance = balance + {i} WHERE id = {i % 20 + 1}; UPDATE account SET balance = balance - {i} WHERE id = {(i + 7) % 20 + 1}; COMMIT;", conn);
            await cmd.ExecuteNonQueryAsync();
        }
    }

    [Fact]
    public async Task Stopping_and_restarting_resumes_from_the_target_position_with_nothing_lost_or_applied_twice()
    {
        await using var db = await fixture.CreateDatabasesAsync("restart");
        await Sql.ExecAsync(db.SourceConnectionString, Ledger);
        await Sql.ExecAsync(db.TargetConnectionString, Ledger);
        await Sql.ExecAsync(db.SourceConnectionString, "TRUNCATE ledger, account; INSERT INTO account SELECT g, 0 FROM generate_series(1, 20) g");
        await Sql.ExecAsync(db.TargetConnectionString, "TRUNCATE ledger, account; INSERT INTO account SELECT g, 0 FROM generate_series(1, 20) g");
        var slot = "s_" + Guid.NewGuid().ToString("N")[..12];
        await using (var first = await Fixtures.Replication.PrepareAsync(db, "SELECT 1", slot))
        {
            first.Start(first.Settings with { MaxBatchTransactions = 7 });
            var writer = WriteAsync(db.SourceConnectionString, 0, 300);
            await Task.Delay(300);
            await first.StopAsync(); // mid-stream: a batch may be open and is rolled back
            await writer;
        }

        await using var second = new ResumedReplication(db, slot);
        second.Replication.Start();
        await WriteAsync(db.SourceConnectionString, 300, 100);
        await second.Replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(400L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(DISTINCT n) FROM ledger"));
        Assert.Equal(400L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM ledger"));
    }

    [Fact]
    public async Task Lost_connections_to_target_and_source_are_retried_without_loss()
    {
        await using var db = await fixture.CreateDatabasesAsync("connloss");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, Ledger);
        replication.Start();
        var writer = WriteAsync(db.SourceConnectionString, 0, 400);
        for (var i = 0; i < 3; i++)
        {
            await Task.Delay(400);
            await Sql.ExecAsync(db.TargetCluster.ConnectionString(), $"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db.Name}' AND application_name = 'replicator-applier'");
            await Task.Delay(400);
            await Sql.ExecAsync(db.SourceCluster.ConnectionString(), $"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{replication.Slot}' AND active_pid IS NOT NULL");
        }

        await writer;
        await replication.CatchUpAsync(TimeSpan.FromSeconds(120));
        await Compare.AssertSameAsync(db);
        Assert.Equal(400L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM ledger"));
    }

    [Fact]
    public async Task A_second_capture_on_a_slot_in_use_says_so_waits_and_takes_over_when_the_first_stops()
    {
        await using var db = await fixture.CreateDatabasesAsync("slotinuse");
        await using var first = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE t (id int PRIMARY KEY)");
        first.Start();
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO t VALUES (1)");
        await first.CatchUpAsync();
        var log = new CapturingLoggerProvider();
        using var loggers = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddProvider(log));
        await using var second = new ResumedReplication(db, first.Slot);
        second.Replication.Start(loggers: loggers);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!log.Contains($"replication slot \"{first.Slot}\" is in use by another process") && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.True(log.Contains("only one capture may stream from a slot. Waiting for it to be released"), log.Text);
        Assert.False(second.Replication.Running.IsCompleted);

        await first.StopAsync();
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO t VALUES (2)");
        await second.Replication.CatchUpAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(["1", "2"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT id FROM t ORDER BY id"));
    }

    [Fact]
    public async Task A_published_table_without_replica_identity_is_named_with_its_fix()
    {
        await using var db = await fixture.CreateDatabasesAsync("noident");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE \"No Key\" (a int); CREATE TABLE fine (id int PRIMARY KEY)");
        replication.Start();
        var e = await Assert.ThrowsAsync<ReplicationException>(() => replication.Running);
        Assert.Contains("public.\"No Key\" are published for updates and deletes but have no replica identity", e.Message, StringComparison.Ordinal);
        Assert.Contains("ALTER TABLE public.\"No Key\" REPLICA IDENTITY FULL;", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("fine", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_slot_is_named_with_its_fix_and_on_a_fenced_source_as_the_end_of_replication()
    {
        await using var db = await fixture.CreateDatabasesAsync("noslot");
        await using (var dropped = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE t (id int PRIMARY KEY)"))
            await Sql.ExecAsync(db.SourceConnectionString, $"SELECT pg_drop_replication_slot('{dropped.Slot}')");
        await using var replication = Fixtures.Replication.Attach(db, (await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT slot_name FROM replicator.position"))!);
        replication.Start();
        var e = await Assert.ThrowsAsync<ReplicationException>(() => replication.Running);
        Assert.Contains($"replication slot \"{replication.Slot}\" does not exist in database {db.Name}", e.Message, StringComparison.Ordinal);
        Assert.Contains("run 'replicator run' (or 'replicator snapshot'), which creates it with the initial copy", e.Message, StringComparison.Ordinal);

        // What a cutover leaves behind: the slot gone and the database read-only for new sessions.
        await Sql.ExecAsync(db.SourceConnectionString, $"ALTER DATABASE \"{db.Name}\" SET default_transaction_read_only = on");
        try
        {
            await using var after = Fixtures.Replication.Attach(db, replication.Slot);
            after.Start();
            e = await Assert.ThrowsAsync<ReplicationException>(() => after.Running);
            Assert.Contains("a cutover switched the application away from this source, and replication from it is over", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            await Sql.ExecAsync(db.SourceCluster.ConnectionString(), $"ALTER DATABASE \"{db.Name}\" RESET default_transaction_read_only");
        }
    }

    /// <summary>A second pipeline on an existing slot and position (no new setup).</summary>
    private sealed class ResumedReplication(TestDatabases db, string slot) : IAsyncDisposable
    {
        public Fixtures.Replication Replication { get; } = Fixtures.Replication.Attach(db, slot);

        public ValueTask DisposeAsync() => Replication.DisposeAsync();
    }
}
