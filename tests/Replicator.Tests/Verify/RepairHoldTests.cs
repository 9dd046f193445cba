using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Replicator.Core.Configuration;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

/// <summary>`verify --repair` against a target that replication writes to.</summary>
public class RepairHoldTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task A_repair_keeps_the_applier_held_however_long_it_takes_and_refuses_to_run_without_the_barrier()
    {
        await using var db = await fixture.CreateDatabasesAsync("repair_hold");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE item (id int PRIMARY KEY, note text); CREATE TABLE other (id int PRIMARY KEY);");
        // An applier that gives up on a verifier's barrier after 1 s.
        replication.Start(replication.Settings with { BarrierTimeout = TimeSpan.FromSeconds(1) });
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO item SELECT g, 'item ' || g FROM generate_series(1, 100) g");
        await replication.CatchUpAsync();
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE item SET note = 'tampered' WHERE id = 5");
        var source = ConnectionInfo.Parse(db.SourceUri, "source");
        var target = ConnectionInfo.Parse(db.TargetUri, "target");
        var request = new VerifyRequest { SlotName = replication.Slot, Repair = true };

        // Without the barrier the rows written could undo what the applier applies meanwhile.
        var refused = await Assert.ThrowsAsync<VerifyException>(() => Verification.RunPassAsync(request with { UseBarrier = false }, source, target, NullLoggerFactory.Instance, CancellationToken.None));
        Assert.Contains("--no-barrier", refused.Message, StringComparison.Ordinal);
        Assert.Equal("tampered", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT note FROM item WHERE id = 5"));

        // A repair that takes longer than the applier's barrier timeout (its row is locked).
        await using var locker = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(db.TargetConnectionString) { Pooling = false }.ConnectionString);
        await locker.OpenAsync();
        await using var lockTx = await locker.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand("SELECT 1 FROM item WHERE id = 5 FOR UPDATE", locker, lockTx))
            await lockRow.ExecuteScalarAsync();
        var repair = Verification.RunPassAsync(request, source, target, NullLoggerFactory.Instance, CancellationToken.None);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (await Sql.ScalarAsync<long>(db.TargetConnectionString, $"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> {locker.ProcessID}") == 0)
        {
            Assert.False(repair.IsCompleted, "the repair ended without waiting for the locked row");
            Assert.True(DateTime.UtcNow < deadline, "the repair never waited for the locked row");
            await Task.Delay(50);
        }

        // A source change meanwhile must wait for the repair: the applier is still held.
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO other VALUES (1)");
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM other"));

        await lockTx.RollbackAsync();
        var report = await repair.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(report.Repaired, report.ToJson());
        await replication.CatchUpAsync();
        Assert.Equal(1L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM other"));
        await Compare.AssertSameAsync(db);
    }
}
