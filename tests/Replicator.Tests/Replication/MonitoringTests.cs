using System.Net;
using System.Text.RegularExpressions;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

public class MonitoringTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task An_idle_source_still_advances_the_slot()
    {
        await using var db = await fixture.CreateDatabasesAsync("idle");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE t (id int PRIMARY KEY)");
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO t VALUES (1)");
        await replication.CatchUpAsync();
        var applied = await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT commit_lsn::text FROM replicator.position");

        // WAL that this slot publishes nothing of: another database of the same server.
        await Sql.ExecAsync(db.SourceCluster.ConnectionString(), "CREATE TEMP TABLE noise AS SELECT g FROM generate_series(1, 1000) g; CREATE TABLE IF NOT EXISTS idle_noise (x int); INSERT INTO idle_noise SELECT generate_series(1, 1000)");
        await replication.CatchUpAsync(TimeSpan.FromSeconds(90));

        Assert.Equal(applied, await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT commit_lsn::text FROM replicator.position"));
    }

    [Fact]
    public async Task A_running_replicator_serves_lag_throughput_and_slot_metrics_that_promtool_accepts()
    {
        await using var db = await fixture.CreateDatabasesAsync("metrics");
        await using var setup = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
        var (process, http, log) = StartRun(db, setup.Slot);
        using var _ = process;
        using var __ = http;
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 500) g");
        await Fixtures.Replication.Attach(db, setup.Slot).CatchUpAsync(); // apart, or the batch folds the updates into the inserts
        await Sql.ExecAsync(db.SourceConnectionString, "UPDATE t SET v = 'w' WHERE id <= 100");
        await Fixtures.Replication.Attach(db, setup.Slot).CatchUpAsync();
        await Task.Delay(6000); // the slot watcher samples every 5 s

        var page = await http.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Matches(@"(?m)^replicator_apply_transactions_total 2$", page);
        Assert.Matches(@"(?m)^replicator_apply_rows_total\{op=""insert"",table=""public.t""\} 500$", page);
        Assert.Matches(@"(?m)^replicator_apply_rows_total\{op=""update"",table=""public.t""\} 100$", page);
        Assert.Matches($@"(?m)^replicator_slot_retained_wal_bytes\{{slot=""{setup.Slot}""\}} \d+", page);
        Assert.Matches(@"(?m)^replicator_apply_lag_seconds [0-9.e-]+$", page);
        Assert.Matches(@"(?m)^replicator_apply_batch_seconds_count \d+$", page);
        Assert.Matches(@"(?m)^replicator_capture_messages_total\{type=""insert""\} 500$", page);
        await MetricsTests.PromtoolCheckAsync(page);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/readyz", UriKind.Relative))).StatusCode);
        Assert.Equal(0, await ProcessRunner.TerminateAsync(process, TimeSpan.FromSeconds(30)));
        File.Delete(log);
    }

    [Fact]
    public async Task The_lag_keeps_growing_while_the_applier_is_held_up_and_is_zero_once_it_has_applied_everything()
    {
        await using var db = await fixture.CreateDatabasesAsync("lag_held");
        await using var setup = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
        var (process, http, log) = StartRun(db, setup.Slot);
        using var _ = process;
        using var __ = http;
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO t VALUES (1, 'a')");
        await Fixtures.Replication.Attach(db, setup.Slot).CatchUpAsync();

        // Another session on the target holds a lock the applier needs: nothing is committed,
        // so a lag taken at each commit would stay where it was.
        await using var blocker = new Npgsql.NpgsqlConnection(db.TargetConnectionString);
        await blocker.OpenAsync();
        await using var tx = await blocker.BeginTransactionAsync();
        await using (var lockTable = new Npgsql.NpgsqlCommand("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", blocker, tx))
            await lockTable.ExecuteNonQueryAsync();
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO t VALUES (2, 'b')");
        var first = await LagAsync(http);
        await Task.Delay(3000);
        var later = await LagAsync(http);
        Assert.True(later >= 2.5, $"lag {later} s after 3 s held up (first look: {first} s)");
        Assert.True(later > first, $"lag did not grow: {first} s, then {later} s");

        await tx.RollbackAsync();
        await Fixtures.Replication.Attach(db, setup.Slot).CatchUpAsync();
        Assert.Equal(0, await LagAsync(http));
        Assert.Equal(0, await ProcessRunner.TerminateAsync(process, TimeSpan.FromSeconds(30)));
        File.Delete(log);
    }

    /// <summary><c>replicator run</c> on the test databases, serving /metrics on a free port; its log file is returned to be deleted.</summary>
    private static (System.Diagnostics.Process Process, HttpClient Http, string Log) StartRun(TestDatabases db, string slot)
    {
        var port = PostgresCluster.FreePort();
        var log = Path.Combine(Path.GetTempPath(), $"replicator-metrics-{db.Name}.log");
        var process = ProcessRunner.StartReplicator(["run", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", slot, "--metrics-listen", $"127.0.0.1:{port}"], log);
        return (process, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") }, log);
    }

    private static async Task<double> LagAsync(HttpClient http)
    {
        var page = await http.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        var line = page.Split('\n').Single(l => l.StartsWith("replicator_apply_lag_seconds ", StringComparison.Ordinal));
        return double.Parse(line["replicator_apply_lag_seconds ".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
