using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Snapshotter;
using Replicator.Tests.Fixtures;
using static Replicator.Tests.Snapshot.SnapshotTestHelpers;

namespace Replicator.Tests.Snapshot;

public class SnapshotResumeKeylessTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    /// <summary>Cancels the run once <paramref name="table"/> has committed its first chunk.</summary>
    private sealed class StopAfterFirstChunk(string table, CancellationTokenSource cts) : ISnapshotProgress
    {
        public void ChunkDone(TableName t)
        {
            if (t.Name == table)
                cts.Cancel();
        }

        public void Phase(string phase)
        {
        }

        public void Planned(IReadOnlyList<TablePlan> tables)
        {
        }

        public void Copied(TableName t, long rows, long bytes)
        {
        }

        public void PostDataBuilt(string entry, int done, int total)
        {
        }
    }

    [Fact]
    public async Task A_keyless_table_split_by_pages_and_interrupted_is_emptied_and_copied_whole_from_the_new_snapshot()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot resume keyless");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.heap_only (a int, b text);
            ALTER TABLE public.heap_only REPLICA IDENTITY FULL;
            INSERT INTO public.heap_only SELECT g % 1000, md5(g::text) FROM generate_series(1, 300000) g;
            ANALYZE;
            """);
        var options = new ReplicatorOptions { SlotName = "resume_keyless", PublicationName = "resume_keyless" };
        options.Snapshot.Jobs = 1;
        options.Snapshot.ChunkRows = 100_000;
        var source = ConnectionInfo.Parse(db.SourceUri, "Source");
        var target = ConnectionInfo.Parse(db.TargetUri, "Target");

        using (var cts = new CancellationTokenSource())
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                SnapshotRunner.RunAsync(options, source, target, NullLoggerFactory.Instance, new StopAfterFirstChunk("heap_only", cts), cts.Token));
        }

        Assert.Equal("1/3", (await Sql.RowsAsync(db.TargetConnectionString,
            "SELECT count(done_lsn) || '/' || count(*) FROM replicator.snapshot_chunk WHERE table_name = 'heap_only' AND kind = 'ctid'"))[0]);
        Assert.True(await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM public.heap_only") > 0);

        // Rows updated between the two snapshots move to new pages: kept old pages plus recopied
        // new ones would hold them twice. (Streaming would replay this update; here no applier runs,
        // so the target must equal the source as of the new snapshot.)
        await Sql.ExecAsync(db.SourceConnectionString, "UPDATE public.heap_only SET b = 'moved' WHERE a < 10");

        long rowsMetric = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "replicator_snapshot_rows_total")
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag is { Key: "table", Value: "public.heap_only" })
                    Interlocked.Add(ref rowsMetric, value);
            }
        });
        listener.Start();

        var result = await SnapshotRunner.RunAsync(options, source, target, NullLoggerFactory.Instance, null, CancellationToken.None);

        Assert.True(result.Resumed);
        Assert.True(Interlocked.Read(ref rowsMetric) >= 300_000, $"rows metric {rowsMetric}");
        Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
        var heap = Assert.Single(result.Tables);
        Assert.Equal(300_000, heap.TargetRows);
        Assert.Equal(result.SnapshotLsn, heap.SyncLsn);
        Assert.True(result.SnapshotLsn > result.ConsistentPoint);
        Assert.False(heap.MixedSnapshots); // copied whole from the new snapshot, so counted in it
        Assert.Equal(3, await ScalarLongAsync(db.TargetConnectionString,
            $"SELECT count(*) FROM replicator.snapshot_chunk WHERE table_name = 'heap_only' AND done_lsn = '{result.SnapshotLsn}'"));
    }
}
