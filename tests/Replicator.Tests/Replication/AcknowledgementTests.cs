using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using Replicator.Applier;
using Replicator.Core.State;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

public class AcknowledgementTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task A_new_applier_acknowledges_nothing_before_the_target_has_flushed_what_an_earlier_session_committed()
    {
        // The earlier session commits asynchronously: its last commits may still be unflushed when a
        // new applier starts. Transactions it skips as applied (and heartbeats) must not be acknowledged
        // to the source until those commits are durable, or a target crash right then would lose them.
        await using var db = await fixture.CreateDatabasesAsync("ack_restart");
        await Sql.ExecAsync(db.TargetConnectionString, "CREATE TABLE t (id int PRIMARY KEY)");
        await Sql.ExecAsync(db.TargetConnectionString, "SET synchronous_commit = off; INSERT INTO t SELECT generate_series(1, 1000)");
        var committed = await Sql.ScalarAsync<NpgsqlLogSequenceNumber>(db.TargetConnectionString, "SELECT pg_current_wal_insert_lsn()");

        await using var target = new NpgsqlConnection(db.TargetConnectionString);
        await target.OpenAsync();
        await TargetState.EnsureAsync(target, CancellationToken.None);
        var applier = new ChangeApplier(target, null, new ApplierSettings("ack_restart"), NullLogger.Instance, _ => { }, () => 0, 0);
        await applier.InitializeAsync(0x1000, CancellationToken.None);

        Assert.True(applier.AcknowledgeAfterTargetLsn >= (ulong)committed,
            $"acknowledgements wait for the target to flush {new NpgsqlLogSequenceNumber(applier.AcknowledgeAfterTargetLsn)}, below the earlier commits at {committed}");
    }
}
