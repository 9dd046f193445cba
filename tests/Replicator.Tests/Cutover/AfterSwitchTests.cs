using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;
using Replicator.Core.Errors;
using Replicator.Cutover;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Cutover;

/// <summary>What may still run against a database after a cutover switched the application to it.</summary>
public class AfterSwitchTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task A_replication_started_again_after_the_switch_refuses_and_leaves_the_applications_writes_alone()
    {
        await using var db = await fixture.CreateDatabasesAsync("after_switch");
        using var loggers = LoggerFactory.Create(_ => { });
        await using var replication = await ReadyForCutover.StartAsync(db, loggers);
        var source = ConnectionInfo.Parse(db.SourceUri, "source");
        var target = ConnectionInfo.Parse(db.TargetUri, "target");

        // The slot is kept, as with --keep-slot (or when dropping it failed after the switch).
        var report = await new CutoverRunner(new CutoverOptions { Slot = replication.Slot, SwitchCommand = "exit 0", KeepSlot = true }, source, target, "cutover", loggers)
            .RunAsync(CancellationToken.None);
        Assert.True(report.Outcome == "switched", report.ToText());
        await replication.Running.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(replication.Pipeline.Switched);

        // The application writes on the target; a transaction that asks to be read-write still
        // changes the same row on the old source, and the kept slot holds that change.
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE product SET name = 'written by the application' WHERE id = 1");
        await Sql.ExecAsync(db.SourceConnectionString, "START TRANSACTION READ WRITE; UPDATE product SET name = 'late on the old source' WHERE id = 1; COMMIT");

        // The process is started again (a Deployment restarts it after its clean exit).
        await using var again = Fixtures.Replication.Attach(db, replication.Slot);
        again.Start();
        var e = await Assert.ThrowsAsync<ReplicationException>(() => again.Running.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal(ReplicationErrorKind.Permanent, e.Kind);
        Assert.Matches("cutover [0-9]+ switched the application to the target", e.Message);
        Assert.Contains("DROP SCHEMA replicator CASCADE", e.Message, StringComparison.Ordinal);
        Assert.Equal("written by the application", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT name FROM product WHERE id = 1"));

        // A position written since (as a new snapshot or a reverse set-up after a rollback writes
        // one) starts anew: replication of that slot runs again.
        await Sql.ExecAsync(db.TargetConnectionString, $"UPDATE replicator.position SET updated_at = clock_timestamp() WHERE slot_name = '{replication.Slot}'");
        await using var anew = Fixtures.Replication.Attach(db, replication.Slot);
        anew.Start();
        await anew.CatchUpAsync();
        Assert.Equal("late on the old source", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT name FROM product WHERE id = 1"));
    }

    [Fact]
    public async Task A_cutover_whose_target_session_breaks_at_the_switch_still_stops_the_applier_and_records_the_switch()
    {
        await using var db = await fixture.CreateDatabasesAsync("switch_session_lost");
        using var loggers = LoggerFactory.Create(_ => { });
        await using var replication = await ReadyForCutover.StartAsync(db, loggers);
        var source = ConnectionInfo.Parse(db.SourceUri, "source");
        var target = ConnectionInfo.Parse(db.TargetUri, "target");

        // The switch hook succeeds, and the cutover's session on the target is lost meanwhile (a
        // proxy restart, a failover of the new primary's connection).
        var psql = Path.Combine(db.TargetCluster.BinDirectory, "psql");
        var options = new CutoverOptions
        {
            Slot = replication.Slot,
            SwitchCommand = $"'{psql}' -X -q -v ON_ERROR_STOP=1 '{db.TargetUri}' -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'replicator-cutover' AND datname = current_database()\"",
        };
        var report = await new CutoverRunner(options, source, target, "cutover", loggers).RunAsync(CancellationToken.None);
        Assert.True(report.Outcome == "switched", report.ToText());

        // The held applier learnt of the switch over the cutover's new session, and stopped.
        await replication.Running.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(replication.Pipeline.Switched);
        Assert.Equal("switched", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT outcome FROM replicator.cutover ORDER BY id DESC LIMIT 1"));
    }
}
