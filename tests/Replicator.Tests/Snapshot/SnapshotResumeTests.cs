using Replicator.Tests.Fixtures;
using static Replicator.Tests.Snapshot.SnapshotTestHelpers;

namespace Replicator.Tests.Snapshot;

public class SnapshotResumeTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task A_snapshot_killed_in_the_middle_of_a_large_table_resumes_without_redoing_finished_chunks_and_ends_identical()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot resume");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.big (id bigint PRIMARY KEY, payload text, n numeric);
            INSERT INTO public.big SELECT g, md5(g::text) || md5((g * 7)::text), g / 3.0 FROM generate_series(1, 2000000) g;
            CREATE TABLE public.heap_only (a int, b text);
            ALTER TABLE public.heap_only REPLICA IDENTITY FULL;
            INSERT INTO public.heap_only SELECT g % 1000, md5(g::text) FROM generate_series(1, 300000) g;
            CREATE TABLE public.small (id int PRIMARY KEY, v text);
            INSERT INTO public.small SELECT g, g::text FROM generate_series(1, 100) g;
            ANALYZE;
            """);
        string[] args = [.. Args(db, "--jobs", "2", "--chunk-rows", "100000", "--slot", "resume_slot", "--log-level", "Debug")];
        const string BigProgress = "SELECT count(*) FILTER (WHERE done_lsn IS NOT NULL) FROM replicator.snapshot_chunk WHERE table_name = 'big'";

        var output = new System.Text.StringBuilder();
        using (var first = Start(args, output))
        {
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (await ScalarLongAsync(db.TargetConnectionString, BigProgress) < 2)
            {
                Assert.False(first.HasExited, "the snapshot ended before it could be killed: " + output);
                Assert.True(DateTime.UtcNow < deadline, "no chunk of the large table finished in time");
                await Task.Delay(50);
            }

            first.Kill(entireProcessTree: true); // SIGKILL: no cleanup runs
            await first.WaitForExitAsync();
        }

        var total = await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.snapshot_chunk WHERE table_name = 'big'");
        var doneBefore = await Sql.RowsAsync(db.TargetConnectionString,
            "SELECT chunk_no, done_lsn, done_at FROM replicator.snapshot_chunk WHERE table_name = 'big' AND done_lsn IS NOT NULL ORDER BY chunk_no");
        Assert.InRange(doneBefore.Count, 2, (int)total - 1);
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.position"));
        var c1 = await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT consistent_lsn::text FROM replicator.snapshot_run");

        var second = await ProcessRunner.ReplicatorAsync(args, timeout: TimeSpan.FromMinutes(5));

        Assert.True(second.ExitCode == 0, second.Output);
        Assert.Contains("(resumed)", second.Stdout, StringComparison.Ordinal);
        Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
        Assert.Equal("2000000", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT count(DISTINCT id)::text FROM public.big"));
        // finished chunks were kept as they were, not copied again
        var doneAfter = await Sql.RowsAsync(db.TargetConnectionString,
            $"SELECT chunk_no, done_lsn, done_at FROM replicator.snapshot_chunk WHERE table_name = 'big' AND chunk_no IN ({string.Join(',', doneBefore.Select(r => r.Split('|')[0]))}) ORDER BY chunk_no");
        Assert.Equal(doneBefore, doneAfter);
        Assert.All(doneBefore, r => Assert.Equal(c1, r.Split('|')[1]));
        // hand-over: streaming starts at C1 (the position one below it: a commit at C1 itself is not in the copy); the resumed table syncs at the newer snapshot C2
        Assert.Equal(Replicator.Core.State.TargetState.PositionBefore(NpgsqlTypes.NpgsqlLogSequenceNumber.Parse(c1!)).ToString(), await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT commit_lsn::text FROM replicator.position WHERE slot_name = 'resume_slot'"));
        Assert.True(await Sql.ScalarAsync<bool>(db.TargetConnectionString,
            "SELECT s.sync_lsn > r.consistent_lsn FROM replicator.table_sync s JOIN replicator.snapshot_run r USING (slot_name) WHERE s.table_name = 'big'"));
        Assert.True(await Sql.ScalarAsync<bool>(db.TargetConnectionString,
            "SELECT bool_and(done_lsn = (SELECT sync_lsn FROM replicator.table_sync WHERE table_name = 'heap_only')) FROM replicator.snapshot_chunk WHERE table_name = 'heap_only'"));
        Assert.Equal(0, await ScalarLongAsync(db.SourceConnectionString, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'resume_slot_resume%'"));
        Assert.Equal(await ScalarLongAsync(db.SourceConnectionString, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"),
            await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"));
    }
}
