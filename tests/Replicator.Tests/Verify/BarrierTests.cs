using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Replicator.Core.Configuration;
using Replicator.Core.State;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

public class BarrierTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Slot = "verify_barrier_slot";

    private static async Task PrepareAsync(TestDatabases db)
    {
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, "CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO public.accounts SELECT g, 100 FROM generate_series(1, 500) g;");
        await using (var conn = new NpgsqlConnection(db.TargetConnectionString))
        {
            await conn.OpenAsync();
            await TargetState.EnsureAsync(conn, CancellationToken.None);
        }

        await Sql.ExecAsync(db.TargetConnectionString, $"INSERT INTO replicator.position (slot_name, commit_lsn) VALUES ('{Slot}', '0/1')");
    }

    private static Task<VerifyReport> PassAsync(TestDatabases db, VerifyRequest request) =>
        Verification.RunPassAsync(request,
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, CancellationToken.None);

    [Fact]
    public async Task The_target_snapshot_is_taken_exactly_while_the_applier_is_held_at_the_cut()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_barrier");
        await PrepareAsync(db);
        // A source transaction before the cut that the "applier" has not applied yet.
        await Sql.ExecAsync(db.SourceConnectionString, "UPDATE public.accounts SET balance = 250 WHERE id = 1");
        await using var applier = new BarrierParticipant(db.TargetConnectionString, Slot,
            beforeReach: async _ =>
            {
                // Catching up takes a while: a verifier that did not wait would see balance 100.
                await Task.Delay(300);
                await Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.accounts SET balance = 250 WHERE id = 1");
            },
            // Transactions after the cut, applied the moment the barrier is released: a verifier
            // whose target snapshot came after the release would see them.
            afterRelease: _ => Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.accounts SET balance = balance + 1 WHERE id BETWEEN 2 AND 400"),
            appliedOffset: _ => -8);

        var report = await PassAsync(db, new VerifyRequest { SlotName = Slot, ChunkRows = 100 });

        Assert.True(report.Identical, report.ToText());
        Assert.Equal("barrier", report.CutKind);
        var (cut, applied) = Assert.Single(applier.Barriers);
        Assert.Equal(cut.ToString(), report.CutLsn);
        Assert.Equal(applied.ToString(), report.AppliedLsn);
        Assert.True(report.ApplierPauseMilliseconds < 5_000, $"applier held {report.ApplierPauseMilliseconds} ms");
        var row = await Sql.RowsAsync(db.TargetConnectionString, "SELECT released_at >= reached_at, reached_at >= requested_at FROM replicator.barrier");
        Assert.Equal(["True|True"], row);
        // The target really did change after the release; it is just not in the cut.
        Assert.Equal(101, await Sql.ScalarAsync<int>(db.TargetConnectionString, "SELECT balance FROM public.accounts WHERE id = 2"));
    }

    [Fact]
    public async Task An_applier_already_past_the_cut_makes_the_verifier_take_a_new_cut()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_overshoot");
        await PrepareAsync(db);
        await using var applier = new BarrierParticipant(db.TargetConnectionString, Slot,
            beforeReach: _ => Task.CompletedTask, afterRelease: _ => Task.CompletedTask,
            appliedOffset: n => n == 0 ? 8 : -8);

        var report = await PassAsync(db, new VerifyRequest { SlotName = Slot });

        Assert.True(report.Identical, report.ToText());
        Assert.Equal(2, applier.Barriers.Count);
        Assert.Equal(applier.Barriers[1].Cut.ToString(), report.CutLsn);
        Assert.Equal(["2|2"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT count(*), count(released_at) FROM replicator.barrier"));
    }

    [Fact]
    public async Task A_pass_cancelled_while_the_applier_is_held_releases_the_barrier()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_cancelheld");
        await PrepareAsync(db);
        using var cancel = new CancellationTokenSource();
        // The verifier is cancelled while it waits for the applier to reach the cut.
        await using var applier = new BarrierParticipant(db.TargetConnectionString, Slot,
            beforeReach: async _ =>
            {
                await cancel.CancelAsync();
                await Task.Delay(1000);
            },
            afterRelease: _ => Task.CompletedTask, appliedOffset: _ => -8);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Verification.RunPassAsync(new VerifyRequest { SlotName = Slot },
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, cancel.Token));

        // An unreleased barrier would hold the applier until its own timeout.
        Assert.Equal(["1|1"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT count(*), count(released_at) FROM replicator.barrier"));
    }

    [Fact]
    public async Task A_cut_blocked_by_an_idle_transaction_on_the_source_fails_within_the_barrier_timeout_naming_its_pid()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_idlexact");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, "CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL)");
        // A slot with an exported snapshot waits for every transaction holding an xid (on the whole
        // cluster: kept short, other tests' slots wait for it too).
        await using var idle = new NpgsqlConnection(db.SourceConnectionString);
        await idle.OpenAsync();
        await using (var write = new NpgsqlCommand("BEGIN; INSERT INTO public.accounts VALUES (1, 1)", idle))
            await write.ExecuteNonQueryAsync();
        var pid = idle.ProcessID;

        var pass = PassAsync(db, new VerifyRequest { BarrierTimeout = TimeSpan.FromSeconds(1) });
        var error = await Record.ExceptionAsync(() => pass.WaitAsync(TimeSpan.FromSeconds(20)));
        await using (var rollback = new NpgsqlCommand("ROLLBACK", idle))
            await rollback.ExecuteNonQueryAsync();

        var refused = Assert.IsType<VerifyException>(error);
        Assert.Contains($"pid {pid} (idle in transaction", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_an_applier_reaching_the_barrier_verify_exits_2_saying_replication_is_not_running()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_nobarrier");
        await PrepareAsync(db);

        var result = await ProcessRunner.ReplicatorAsync(["verify", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", Slot, "--barrier-timeout", "1"]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"the applier for slot '{Slot}' did not reach the verifier's barrier", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("replication is not running or not keeping up", result.Stderr, StringComparison.Ordinal);
        // The abandoned barrier is released, so an applier that arrives later does not pause for it.
        Assert.Equal(["1|1"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT count(*), count(released_at) FROM replicator.barrier"));

        var plain = await ProcessRunner.ReplicatorAsync(["verify", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", Slot, "--no-barrier"]);
        Assert.True(plain.ExitCode == 0, plain.Output);
        Assert.Contains("(plain)", plain.Stdout, StringComparison.Ordinal);
    }
}
