using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Replicator.Core.Configuration;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

/// <summary>The verifier against the real applier, while the source keeps changing.</summary>
public class LiveVerifyTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Schema = """
        CREATE TABLE account (id int PRIMARY KEY, balance bigint, note text, updated timestamptz, score float8);
        CREATE TABLE movement (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account int, amount numeric(12,2), at timestamptz, doc jsonb);
        CREATE TABLE tag (account int, label text);
        ALTER TABLE tag REPLICA IDENTITY FULL;
        INSERT INTO account SELECT g, 0, 'n' || g, now(), g / 7.0 FROM generate_series(1, 5000) g;
        INSERT INTO movement (account, amount, at, doc) SELECT g % 5000 + 1, g / 100.0, now(), jsonb_build_object('g', g) FROM generate_series(1, 20000) g;
        INSERT INTO tag SELECT g % 100, 'label ' || (g % 10) FROM generate_series(1, 2000) g;
        """;

    private static async Task WriteUntilAsync(string source, CancellationToken stop)
    {
        await using var conn = new NpgsqlConnection(source);
        await conn.OpenAsync();
        var random = new Random(7);
        while (!stop.IsCancellationRequested)
        {
            var a = random.Next(1, 5001);
            var b = random.Next(1, 5001);
            var amount = random.Next(1, 10000);
            await using var cmd = new NpgsqlCommand($$"""
                BEGIN;
                UPDATE account SET balance = balance - {{amount}}, updated = clock_timestamp(), score = score * 1.0001 WHERE id = {{a}};
                UPDATE account SET balance = balance + {{amount}}, updated = clock_timestamp() WHERE id = {{b}};
                INSERT INTO movement (account, amount, at, doc) VALUES ({{a}}, {{amount / 100.0}}, clock_timestamp(), '{"to": {{b}}}');
                DELETE FROM movement WHERE id = (SELECT min(id) FROM movement WHERE account = {{b}});
                INSERT INTO tag VALUES ({{a % 100}}, 'moved');
                DELETE FROM tag WHERE ctid = (SELECT ctid FROM tag WHERE account = {{b % 100}} LIMIT 1);
                COMMIT;
                """, conn);
            await cmd.ExecuteNonQueryAsync();
        }
    }

    [Fact]
    public async Task Passes_during_continuous_writes_report_no_difference_and_injected_ones_are_found_and_repaired()
    {
        await using var db = await fixture.CreateDatabasesAsync("live_verify");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "SELECT 1");
        await Sql.ExecAsync(db.SourceConnectionString, Schema);
        await Sql.ExecAsync(db.TargetConnectionString, Schema.Replace("INSERT INTO", "-- INSERT INTO", StringComparison.Ordinal));
        replication.Start();
        await replication.CatchUpAsync(TimeSpan.FromMinutes(2)); // the seed rows travel through the stream
        var source = ConnectionInfo.Parse(db.SourceUri, "source");
        var target = ConnectionInfo.Parse(db.TargetUri, "target");
        var request = new VerifyRequest { SlotName = replication.Slot, ChunkRows = 4000, BisectRows = 500, SchemaCheck = false };

        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 2).Select(_ => Task.Run(() => WriteUntilAsync(db.SourceConnectionString, stop.Token))).ToList();
        var passes = 0;
        var until = DateTime.UtcNow.AddSeconds(75);
        while (DateTime.UtcNow < until)
        {
            var report = await Verification.RunPassAsync(request, source, target, NullLoggerFactory.Instance, CancellationToken.None);
            Assert.True(report.Identical, $"pass {passes} at cut {report.CutLsn} ({report.CutKind}) found differences while replication ran:\n{report.ToJson()}");
            Assert.Equal("barrier", report.CutKind);
            passes++;
        }

        await stop.CancelAsync();
        await Task.WhenAll(writers.Select(w => w.ContinueWith(_ => { }, TaskScheduler.Default)));
        Assert.True(passes >= 3, $"only {passes} passes ran");
        var moved = await Sql.ScalarAsync<long>(db.SourceConnectionString, "SELECT count(*) FROM movement WHERE doc ? 'to'");
        Assert.True(moved > 100, $"the writers made only {moved} transactions");

        await replication.CatchUpAsync();
        await Sql.ExecAsync(db.TargetConnectionString, """
            UPDATE account SET note = 'tampered' WHERE id = 17;
            DELETE FROM account WHERE id = 42;
            UPDATE movement SET amount = NULL WHERE id = (SELECT min(id) FROM movement);
            INSERT INTO tag VALUES (999, 'only on target');
            """);
        var found = await Verification.RunPassAsync(request, source, target, NullLoggerFactory.Instance, CancellationToken.None);
        Assert.False(found.Identical);
        Assert.Equal(4, found.RowDifferences);
        var repaired = await Verification.RunPassAsync(request with { Repair = true }, source, target, NullLoggerFactory.Instance, CancellationToken.None);
        Assert.True(repaired.Repaired, repaired.ToJson());
        Assert.True((await Verification.RunPassAsync(request, source, target, NullLoggerFactory.Instance, CancellationToken.None)).Identical);
        await Compare.AssertSameAsync(db);
    }
}
