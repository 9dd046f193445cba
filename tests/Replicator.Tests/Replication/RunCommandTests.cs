using Npgsql;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

public class RunCommandTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Schema = """
        CREATE TABLE ledger (n int, note text);
        ALTER TABLE ledger REPLICA IDENTITY FULL;
        CREATE TABLE account (id int PRIMARY KEY, balance bigint, pad text);
        INSERT INTO account SELECT g, 0, repeat('x', 200) FROM generate_series(1, 50) g;
        CREATE TABLE event (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account int, payload jsonb);
        """;

    private static async Task WriteAsync(string source, int transactions, CancellationToken stop)
    {
        await using var conn = new NpgsqlConnection(source);
        await conn.OpenAsync();
        var random = new Random(42);
        for (var i = 0; i < transactions && !stop.IsCancellationRequested; i++)
        {
            var a = random.Next(1, 51);
            var b = random.Next(1, 51);
            var sql = (i % 10) switch
            {
                // Now and then a big transaction, so kills land inside large batches too.
                0 => $"BEGIN; INSERT INTO event (account, payload) SELECT {a}, jsonb_build_object('i', {i}, 'g', g) FROM generate_series(1, 300) g; INSERT INTO ledger VALUES ({i}, 'bulk'); COMMIT;",
                7 => $"BEGIN; DELETE FROM event WHERE id IN (SELECT id FROM event WHERE account = {a} LIMIT 5); INSERT INTO ledger VALUES ({i}, 'delete'); COMMIT;",
                _ => $"BEGIN; UPDATE account SET balance = balance + {i} WHERE id = {a}; UPDATE account SET balance = balance - {i} WHERE id = {b}; INSERT INTO event (account, payload) VALUES ({a}, '{{\"i\": {i}}}'); INSERT INTO ledger VALUES ({i}, 'move'); COMMIT;",
            };
            await using var cmd = new NpgsqlCommand(sql, conn);
            await cmd.ExecuteNonQueryAsync();
        }
    }

    [Fact]
    public async Task Run_killed_with_sigkill_at_random_moments_under_load_leaves_the_target_equal_to_the_source()
    {
        await using var db = await fixture.CreateDatabasesAsync("crash");
        await using var setup = await Fixtures.Replication.PrepareAsync(db, Schema);
        string[] args = ["run", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", setup.Slot, "--metrics-listen", "127.0.0.1:0", "--set", "Apply:MaxBatchTransactions=50"];
        var log = Path.Combine(Path.GetTempPath(), $"replicator-crash-{db.Name}.log");
        using var stopWriter = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var writer = Task.Run(() => WriteAsync(db.SourceConnectionString, 2500, stopWriter.Token));
        var random = new Random();
        for (var kill = 0; kill < 5; kill++)
        {
            using var process = ProcessRunner.StartReplicator(args, log);
            await Task.Delay(random.Next(700, 3000));
            Assert.False(process.HasExited, $"replicator exited early:\n{File.ReadAllText(log)}");
            process.Kill(); // SIGKILL: no cleanup, an open batch dies with the process
            await process.WaitForExitAsync();
        }

        using var final = ProcessRunner.StartReplicator(args, log);
        await writer;
        var attach = Fixtures.Replication.Attach(db, setup.Slot);
        await attach.CatchUpAsync(TimeSpan.FromMinutes(3));
        // The last process must itself be streaming (not merely started) before it is asked to stop.
        var streaming = DateTime.UtcNow.AddMinutes(1);
        while (await Sql.ScalarAsync<bool>(db.SourceConnectionString, $"SELECT active FROM pg_replication_slots WHERE slot_name = '{setup.Slot}'") is false)
        {
            Assert.True(DateTime.UtcNow < streaming, File.ReadAllText(log));
            await Task.Delay(100);
        }
        Assert.Equal(0, await ProcessRunner.TerminateAsync(final, TimeSpan.FromSeconds(30)));

        await Compare.AssertSameAsync(db);
        var written = await Sql.ScalarAsync<long>(db.SourceConnectionString, "SELECT count(*) FROM ledger");
        Assert.Equal(written, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(DISTINCT n) FROM ledger"));
        Assert.Equal(written, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM ledger"));
        File.Delete(log);
    }

    [Fact]
    public async Task Run_snapshots_a_busy_source_then_streams_on_with_no_gap_and_no_duplicate()
    {
        await using var db = await fixture.CreateDatabasesAsync("handoff");
        await Sql.ExecAsync(db.SourceConnectionString, Schema + "INSERT INTO event (account, payload) SELECT g % 50 + 1, jsonb_build_object('seed', g) FROM generate_series(1, 200000) g;");
        var slot = "s_" + Guid.NewGuid().ToString("N")[..12];
        var log = Path.Combine(Path.GetTempPath(), $"replicator-handoff-{db.Name}.log");
        using var stopWriter = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var writer = Task.Run(() => WriteAsync(db.SourceConnectionString, 1500, stopWriter.Token));
        await Task.Delay(300); // the copy starts while transactions are in flight
        using var process = ProcessRunner.StartReplicator(["run", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", slot, "--metrics-listen", "127.0.0.1:0", "--set", "Snapshot:ChunkRows=20000"], log);
        await writer;
        var deadline = DateTime.UtcNow.AddMinutes(3);
        await ProcessRunner.WaitWhileRunningAsync(process, log, deadline, () => Fixtures.Replication.SnapshotDoneAsync(db));

        await Fixtures.Replication.Attach(db, slot).CatchUpAsync(TimeSpan.FromMinutes(3));
        Assert.Equal(0, await ProcessRunner.TerminateAsync(process, TimeSpan.FromSeconds(30)));
        await Compare.AssertSameAsync(db);
        var written = await Sql.ScalarAsync<long>(db.SourceConnectionString, "SELECT count(*) FROM ledger");
        Assert.Equal(written, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(DISTINCT n) FROM ledger"));
        Assert.Equal(written, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM ledger"));
        Assert.Contains("taking the initial snapshot first", File.ReadAllText(log), StringComparison.Ordinal);
        File.Delete(log);
    }

    [Fact]
    public async Task Sync_copies_then_catches_up_verifies_and_exits_and_a_later_sync_brings_new_changes()
    {
        await using var db = await fixture.CreateDatabasesAsync("sync");
        await Sql.ExecAsync(db.SourceConnectionString, Schema);
        var slot = "s_" + Guid.NewGuid().ToString("N")[..12];
        string[] args = ["sync", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", slot, "--metrics-listen", "127.0.0.1:0"];

        var first = await ProcessRunner.ReplicatorAsync(args, timeout: TimeSpan.FromMinutes(3));
        Assert.True(first.ExitCode == 0, first.Output);
        await WriteAsync(db.SourceConnectionString, 200, CancellationToken.None);
        var second = await ProcessRunner.ReplicatorAsync(args, timeout: TimeSpan.FromMinutes(3));
        Assert.True(second.ExitCode == 0, second.Output);
        Assert.Contains("identical", second.Stdout, StringComparison.OrdinalIgnoreCase);
        await Compare.AssertSameAsync(db);
    }

    [Fact]
    public async Task Sigterm_stops_run_cleanly_and_status_shows_the_applied_position()
    {
        await using var db = await fixture.CreateDatabasesAsync("sigterm");
        await using var setup = await Fixtures.Replication.PrepareAsync(db, Schema);
        var log = Path.Combine(Path.GetTempPath(), $"replicator-term-{db.Name}.log");
        using var process = ProcessRunner.StartReplicator(["run", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", setup.Slot, "--metrics-listen", "127.0.0.1:0"], log);
        await WriteAsync(db.SourceConnectionString, 50, CancellationToken.None);
        await Fixtures.Replication.Attach(db, setup.Slot).CatchUpAsync();
        Assert.Equal(0, await ProcessRunner.TerminateAsync(process, TimeSpan.FromSeconds(30)));
        await Compare.AssertSameAsync(db);

        var status = await ProcessRunner.ReplicatorAsync(["status", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", setup.Slot]);
        Assert.Equal(0, status.ExitCode);
        Assert.Matches($@"slot\s+{setup.Slot} \(not streaming\)", status.Stdout);
        Assert.Matches(@"snapshot\s+done", status.Stdout);
        // Lag in bytes counts WAL written by other databases of the shared test cluster too: only its shape is fixed here.
        Assert.Matches(@"lag\s+[0-9.]+ (B|KiB|MiB), [0-9.]+ s", status.Stdout);
        var json = await ProcessRunner.ReplicatorAsync(["status", "--json", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", setup.Slot]);
        Assert.Contains("\"SnapshotDone\": true", json.Stdout, StringComparison.Ordinal);
        File.Delete(log);
    }
}
