using Npgsql;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

/// <summary>
/// pgoutput protocol 2 streams a transaction that outgrows the source's logical_decoding_work_mem
/// while it is still open (Stream Start/Stop chunks interleaved with other transactions, then
/// Stream Commit or Abort, and Stream Abort of a rolled-back subtransaction). The source database
/// here decodes with the smallest allowed budget (64 kB), so every transaction below of more than
/// a few hundred rows is streamed.
/// </summary>
public class StreamedTransactionTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task Transactions_streamed_in_progress_land_whole_in_commit_order_without_rolled_back_savepoints_or_aborted_transactions()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_streamed");
        await DecodeWithTheSmallestBudgetAsync(db);
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE big (id int PRIMARY KEY, v text);
            CREATE TABLE small (id int PRIMARY KEY, v bigint);
            """);
        replication.Start();

        // The big transaction stays open while small ones commit before it.
        await using var big = new NpgsqlConnection(db.SourceConnectionString);
        await big.OpenAsync();
        await Exec(big, "BEGIN; INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g");
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO small VALUES (1, 0), (2, 0)");
        await Exec(big, """
            SAVEPOINT a;
            INSERT INTO big SELECT g, 'rolled back' FROM generate_series(5001, 7000) g;
            UPDATE big SET v = 'rolled back too' WHERE id <= 100;
            ROLLBACK TO SAVEPOINT a;
            SAVEPOINT b;
            UPDATE big SET v = 'kept' WHERE id <= 10;
            RELEASE SAVEPOINT b;
            """);
        await Sql.ExecAsync(db.SourceConnectionString, "UPDATE small SET v = 2 WHERE id = 2");
        await Exec(big, """
            INSERT INTO big SELECT g, 'after' FROM generate_series(7001, 9000) g;
            SAVEPOINT c;
            DELETE FROM big WHERE id > 8000;
            ROLLBACK TO SAVEPOINT c;
            DELETE FROM big WHERE id BETWEEN 4001 AND 5000;
            COMMIT
            """);
        // Streamed, then rolled back whole: nothing of it may reach the target.
        await Sql.ExecAsync(db.SourceConnectionString, """
            BEGIN; INSERT INTO big SELECT g, 'never' FROM generate_series(10001, 15000) g; UPDATE small SET v = -1; ROLLBACK;
            UPDATE small SET v = (SELECT count(*) FROM big) WHERE id = 1;
            """);

        await replication.CatchUpAsync(TimeSpan.FromMinutes(2));
        await Compare.AssertSameAsync(db);
        Assert.Equal(6000L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM big"));
        Assert.Equal(10L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM big WHERE v = 'kept'"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM big WHERE v LIKE 'rolled back%' OR v = 'never'"));
        Assert.Equal(6000L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT v FROM small WHERE id = 1"));
        // The server did stream them (not merely send them at commit): both, the aborted one included.
        Assert.True(await Sql.ScalarAsync<long>(db.SourceConnectionString,
            $"SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '{replication.Slot}'") >= 2);
    }

    [Fact]
    public async Task A_restart_in_the_middle_of_a_streamed_transaction_gets_it_again_whole_and_clears_what_the_last_process_spooled()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_streamed_restart");
        await DecodeWithTheSmallestBudgetAsync(db);
        await using var first = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE big (id int PRIMARY KEY, v text);");
        var source = Replicator.Core.Configuration.ConnectionInfo.Parse(db.SourceUri, "source");
        var spool = Path.Combine(Path.GetTempPath(), Replicator.Capture.PgOutputCapture.SpoolDirectoryName(source, first.Slot));
        first.Start();

        await using var big = new NpgsqlConnection(db.SourceConnectionString);
        await big.OpenAsync();
        await Exec(big, "BEGIN; INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g");
        // Wait until chunks of it have been streamed to the capture, then stop mid-transaction.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await Sql.ScalarAsync<long>(db.SourceConnectionString, $"SELECT stream_count FROM pg_stat_replication_slots WHERE slot_name = '{first.Slot}'") == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the server did not stream the open transaction");
            await Task.Delay(50);
        }

        await first.StopAsync();
        // What a killed process would have left behind.
        Directory.CreateDirectory(spool);
        await File.WriteAllTextAsync(Path.Combine(spool, "4242.stream"), "left by a killed capture");

        await Exec(big, "INSERT INTO big SELECT g, 'second half' FROM generate_series(5001, 8000) g; COMMIT");
        await using var second = Fixtures.Replication.Attach(db, first.Slot);
        second.Start();
        await second.CatchUpAsync(TimeSpan.FromMinutes(2));
        await Compare.AssertSameAsync(db);
        Assert.Equal(8000L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM big"));
        Assert.False(File.Exists(Path.Combine(spool, "4242.stream")));
    }

    [Fact]
    public async Task With_streaming_off_the_source_keeps_large_transactions_until_commit_and_they_still_land_whole()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_not_streamed");
        await DecodeWithTheSmallestBudgetAsync(db);
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE big (id int PRIMARY KEY, v text);");
        replication.Start(replication.Settings with { StreamInProgress = false });
        await Sql.ExecAsync(db.SourceConnectionString, """
            BEGIN; INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g; SAVEPOINT a; DELETE FROM big WHERE id > 100; ROLLBACK TO a; COMMIT;
            """);
        await replication.CatchUpAsync(TimeSpan.FromMinutes(2));
        await Compare.AssertSameAsync(db);
        Assert.Equal(5000L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM big"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db.SourceConnectionString,
            $"SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '{replication.Slot}'"));
        Assert.True(await Sql.ScalarAsync<long>(db.SourceConnectionString,
            $"SELECT spill_txns FROM pg_stat_replication_slots WHERE slot_name = '{replication.Slot}'") >= 1);
    }

    /// <summary>The source database's walsenders decode with 64 kB, the least PostgreSQL allows: a few hundred rows are streamed.</summary>
    [Fact]
    public async Task While_a_streamed_transaction_is_open_on_an_idle_source_the_slot_is_not_acknowledged_past_its_first_change()
    {
        // The idle heartbeat takes the client's last received position, which the Stream Commit still in
        // flight may already have set to the transaction's end: acknowledged there, a restart before the
        // transaction is applied would lose it. Heartbeats stay below an open streamed transaction.
        await using var db = await fixture.CreateDatabasesAsync("stream_idle");
        await DecodeWithTheSmallestBudgetAsync(db);
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE big (id int PRIMARY KEY, v text)");
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO big VALUES (0, 'before')");
        await replication.CatchUpAsync();

        await using var big = new NpgsqlConnection(db.SourceConnectionString);
        await big.OpenAsync();
        await Exec(big, "BEGIN; INSERT INTO big VALUES (-1, 'first')");
        // The transaction's first change starts below this (other tests write WAL in between: heartbeats up to
        // just below that change are right).
        NpgsqlTypes.NpgsqlLogSequenceNumber before;
        await using (var firstWritten = new NpgsqlCommand("SELECT pg_current_wal_insert_lsn()", big))
            before = (NpgsqlTypes.NpgsqlLogSequenceNumber)(await firstWritten.ExecuteScalarAsync())!;
        await Exec(big, "INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await Sql.ScalarAsync<long>(db.SourceConnectionString, $"SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '{replication.Slot}'") == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the open transaction was not streamed");
            await Task.Delay(100);
        }

        await Task.Delay(2000); // idle: heartbeats go out
        var confirmed = await Sql.ScalarAsync<NpgsqlTypes.NpgsqlLogSequenceNumber>(db.SourceConnectionString,
            $"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{replication.Slot}'");
        Assert.True(confirmed < before, $"slot acknowledged at {confirmed}, past the open streamed transaction's first change (below {before})");

        await Exec(big, "COMMIT");
        await replication.CatchUpAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(5002L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM big"));
    }

    private static Task DecodeWithTheSmallestBudgetAsync(TestDatabases db) => Sql.ExecAsync(db.SourceConnectionString,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET logical_decoding_work_mem = %L', current_database(), '64kB'); END $$");

    private static async Task Exec(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
