using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Snapshotter;
using Replicator.Tests.Fixtures;
using static Replicator.Tests.Snapshot.SnapshotTestHelpers;

namespace Replicator.Tests.Snapshot;

public class SnapshotResumeInProcessTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    /// <summary>Cancels the run once <paramref name="table"/> has committed its first chunk (or, for "post-data", after the first post-data entry).</summary>
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
            if (table == "post-data")
                cts.Cancel();
        }
    }

    /// <summary>Runs the snapshot until <paramref name="table"/> commits its first chunk ("post-data": its first entry), then cancels it.</summary>
    private static async Task InterruptAfterFirstChunkAsync(ReplicatorOptions options, ConnectionInfo source, ConnectionInfo target, string table)
    {
        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            SnapshotRunner.RunAsync(options, source, target, NullLoggerFactory.Instance, new StopAfterFirstChunk(table, cts), cts.Token));
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

        await InterruptAfterFirstChunkAsync(options, source, target, "heap_only");

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

    [Fact]
    public async Task Partitions_of_a_table_without_a_key_all_end_at_the_resumed_snapshot_when_one_of_them_finished_before_the_interruption()
    {
        // Published via the root, the partitions' changes carry the root's name, are applied by the root's
        // (keyless) plan, and the root's sync position is the latest of its partitions': a partition left at
        // the first snapshot, with a key of its own or not, would have its changes between the two taken as
        // copied. It is copied again with its sibling.
        await using var db = await fixture.CreateDatabasesAsync("snapshot resume keyless parts");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.pbag (region text, v int) PARTITION BY LIST (region);
            CREATE TABLE public.pbag_big PARTITION OF public.pbag (PRIMARY KEY (v)) FOR VALUES IN ('big');
            CREATE TABLE public.pbag_small PARTITION OF public.pbag FOR VALUES IN ('small');
            ALTER TABLE public.pbag_small REPLICA IDENTITY FULL;
            INSERT INTO public.pbag SELECT 'big', g FROM generate_series(1, 50000) g;
            INSERT INTO public.pbag SELECT 'small', g FROM generate_series(1, 10) g;
            ANALYZE;
            """);
        var options = new ReplicatorOptions { SlotName = "resume_keyless_parts", PublicationName = "resume_keyless_parts" };
        options.Snapshot.Jobs = 1;
        var source = ConnectionInfo.Parse(db.SourceUri, "Source");
        var target = ConnectionInfo.Parse(db.TargetUri, "Target");

        await InterruptAfterFirstChunkAsync(options, source, target, "pbag_big");

        Assert.Equal(["pbag_big|1", "pbag_small|0"], await Sql.RowsAsync(db.TargetConnectionString,
            "SELECT table_name, count(done_lsn) FROM replicator.snapshot_chunk GROUP BY table_name ORDER BY table_name"));
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO public.pbag SELECT 'big', g FROM generate_series(50001, 50100) g");

        var result = await SnapshotRunner.RunAsync(options, source, target, NullLoggerFactory.Instance, null, CancellationToken.None);

        Assert.True(result.Resumed);
        Assert.All(result.Tables, t => Assert.Equal(result.SnapshotLsn, t.SyncLsn));
        Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
    }

    [Fact]
    public async Task A_table_a_foreign_key_points_at_since_before_the_data_is_emptied_without_truncate_and_copied_again_on_resume()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot resume referenced");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.parent (code int NOT NULL UNIQUE, b text);
            ALTER TABLE public.parent REPLICA IDENTITY FULL;
            INSERT INTO public.parent SELECT g, 'x' FROM generate_series(1, 300000) g;
            CREATE TABLE public.child (id int PRIMARY KEY, code int REFERENCES public.parent (code));
            INSERT INTO public.child SELECT g, g * 7 FROM generate_series(1, 1000) g;
            ANALYZE;
            """);
        var options = new ReplicatorOptions { SlotName = "resume_referenced", PublicationName = "resume_referenced" };
        options.Snapshot.Jobs = 1;
        options.Snapshot.ChunkRows = 100_000;
        var source = ConnectionInfo.Parse(db.SourceUri, "Source");
        var target = ConnectionInfo.Parse(db.TargetUri, "Target");

        await InterruptAfterFirstChunkAsync(options, source, target, "parent");

        // parent is split by pages (no integer primary key or identity index) and child's key to it exists already
        Assert.Equal("1/3", (await Sql.RowsAsync(db.TargetConnectionString,
            "SELECT count(done_lsn) || '/' || count(*) FROM replicator.snapshot_chunk WHERE table_name = 'parent' AND kind = 'ctid'"))[0]);
        Assert.Equal("True", (await Sql.RowsAsync(db.TargetConnectionString, "SELECT convalidated::text FROM pg_constraint WHERE conname = 'child_code_fkey'"))[0], ignoreCase: true);
        await Sql.ExecAsync(db.SourceConnectionString, "UPDATE public.parent SET b = 'moved' WHERE code < 10");

        var result = await SnapshotRunner.RunAsync(options, source, target, NullLoggerFactory.Instance, null, CancellationToken.None);

        Assert.True(result.Resumed);
        Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
        Assert.Equal(300_000, result.Tables.Single(t => t.Table.Name == "parent").TargetRows);
        Assert.Equal(3, result.PostDataEntries);
        Assert.Equal(3, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.snapshot_postdata"));
    }

    [Fact]
    public async Task A_snapshot_interrupted_while_building_indexes_resumes_and_builds_only_what_is_missing()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot resume postdata");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.parent (id int PRIMARY KEY, code text UNIQUE);
            CREATE TABLE public.child (id int PRIMARY KEY, parent_id int REFERENCES public.parent (id), note text);
            CREATE INDEX child_note ON public.child (note);
            CREATE INDEX child_parent ON public.child (parent_id);
            INSERT INTO public.parent SELECT g, 'c' || g FROM generate_series(1, 100) g;
            INSERT INTO public.child SELECT g, g % 100 + 1, md5(g::text) FROM generate_series(1, 5000) g;
            """);
        var options = new ReplicatorOptions { SlotName = "resume_postdata", PublicationName = "resume_postdata" };
        options.Snapshot.Jobs = 1;
        var source = ConnectionInfo.Parse(db.SourceUri, "Source");
        var target = ConnectionInfo.Parse(db.TargetUri, "Target");

        await InterruptAfterFirstChunkAsync(options, source, target, "post-data");

        var builtBefore = await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.snapshot_postdata");
        Assert.InRange(builtBefore, 1, 5);

        var result = await SnapshotRunner.RunAsync(options, source, target, NullLoggerFactory.Instance, null, CancellationToken.None);

        Assert.True(result.Resumed);
        Assert.Equal(6, result.PostDataEntries); // 2 primary keys, 1 unique, 2 indexes, 1 foreign key
        Assert.Equal(6, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.snapshot_postdata"));
        const string Objects = "SELECT string_agg(indexname, ',' ORDER BY indexname) || '/' || (SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE connamespace = 'public'::regnamespace) FROM pg_indexes WHERE schemaname = 'public'";
        Assert.Equal(await Sql.ScalarAsync<string>(db.SourceConnectionString, Objects), await Sql.ScalarAsync<string>(db.TargetConnectionString, Objects));
        Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
    }
}
