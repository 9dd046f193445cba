using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using Replicator.Applier;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.State;
using Replicator.Snapshotter;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

/// <summary>
/// The snapshot/stream boundary at its exact LSN. The slot's consistent point is the end of the WAL
/// record that made it consistent, so the next record, which starts there, can be the commit of a
/// transaction that was still running: not in the exported snapshot, and decoded with a commit LSN
/// equal to the consistent point. It must be applied, in keyed and keyless tables alike.
/// </summary>
public class HandoffBoundaryTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private static readonly NpgsqlLogSequenceNumber ConsistentPoint = new(0x5000);

    private static readonly StreamRelation Keyed = new(17001, "public", "keyed", 'd',
        [new StreamColumn("id", 23, -1, true, "integer"), new StreamColumn("v", 25, -1, false, "text")]);

    private static readonly StreamRelation Bag = new(17002, "public", "bag", 'f', [new StreamColumn("v", 25, -1, false, "text")]);

    [Fact]
    public async Task A_transaction_committed_exactly_at_the_consistent_point_is_applied_after_the_snapshot()
    {
        await using var db = await fixture.CreateDatabasesAsync("handoff_edge");
        await Sql.ExecAsync(db.TargetConnectionString, "CREATE TABLE keyed (id int PRIMARY KEY, v text); CREATE TABLE bag (v text); INSERT INTO keyed VALUES (1, 'copied'); INSERT INTO bag VALUES ('copied')");
        await using var target = new NpgsqlConnection(db.TargetConnectionString);
        await target.OpenAsync();
        // What the snapshotter records when its copy at the consistent point is done.
        await SnapshotState.EnsureAsync(target, CancellationToken.None);
        await TargetState.EnsureAsync(target, CancellationToken.None);
        await new SnapshotState(target, "edge").CompleteAsync(ConsistentPoint,
            [(new TableName("public", "keyed"), ConsistentPoint), (new TableName("public", "bag"), ConsistentPoint)], CancellationToken.None);
        var position = (await TargetState.ReadPositionAsync(target, "edge", CancellationToken.None))!.Value;

        var applier = new ChangeApplier(target, null, new ApplierSettings("edge"), NullLogger.Instance, _ => { }, () => 0, 0);
        await applier.InitializeAsync((ulong)position, CancellationToken.None);
        var channel = Channel.CreateUnbounded<ChangeEvent>();
        var time = DateTimeOffset.UtcNow;
        foreach (var e in new ChangeEvent[]
        {
            new TransactionBegin(700, ConsistentPoint, time),
            new RowChange(Keyed, ChangeKind.Insert, new NpgsqlLogSequenceNumber(0x4f00), null, false, [ColumnValue.Of("2"), ColumnValue.Of("at the point")]),
            new RowChange(Bag, ChangeKind.Insert, new NpgsqlLogSequenceNumber(0x4f80), null, false, [ColumnValue.Of("at the point")]),
            new TransactionCommit(700, ConsistentPoint, new NpgsqlLogSequenceNumber(0x5030), time),
        })
        {
            await channel.Writer.WriteAsync(e);
        }

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var running = applier.RunAsync(channel.Reader, stop.Token);
        // The batch commits on its own (time bound) with the position; the position moved means the transaction was handed on.
        while (await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT commit_lsn::text FROM replicator.position WHERE slot_name = 'edge'") != ConsistentPoint.ToString())
        {
            Assert.False(running.IsCompleted, running.Exception?.ToString() ?? "the applier stopped");
            await Task.Delay(50);
        }

        await stop.CancelAsync();
        await running.ContinueWith(_ => { }, TaskScheduler.Default);

        Assert.Equal(["1|copied", "2|at the point"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT id, v FROM keyed ORDER BY id"));
        Assert.Equal(["at the point", "copied"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT v FROM bag ORDER BY v"));
    }
}
