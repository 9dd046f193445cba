using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;
using Replicator.Cutover;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Cutover;

/// <summary>Setting up replication back to the old source (cutover --reverse) while the source is fenced.</summary>
public class ReverseSetupTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task Reverse_set_up_refuses_a_publication_of_every_table_and_gives_up_on_a_slot_that_waits_for_a_target_transaction()
    {
        await using var db = await fixture.CreateDatabasesAsync("reverse_setup");
        using var loggers = LoggerFactory.Create(_ => { });
        await using var replication = await ReadyForCutover.StartAsync(db, loggers);
        var source = ConnectionInfo.Parse(db.SourceUri, "source");
        var target = ConnectionInfo.Parse(db.TargetUri, "target");
        var options = new CutoverOptions { Slot = replication.Slot, SwitchCommand = "exit 0", Reverse = true, DrainTimeout = TimeSpan.FromSeconds(3) };

        // A publication of that name publishing everything would send replicator's own tables back.
        await Sql.ExecAsync(db.TargetConnectionString, "CREATE PUBLICATION replicator_reverse FOR ALL TABLES");
        var e = await Assert.ThrowsAsync<CutoverException>(() => new CutoverRunner(options, source, target, "cutover", loggers).RunAsync(CancellationToken.None));
        Assert.True(e.SourceWritable, e.Message);
        Assert.Contains("DROP PUBLICATION \"replicator_reverse\"", e.Message, StringComparison.Ordinal);
        await Sql.ExecAsync(db.TargetConnectionString, "DROP PUBLICATION replicator_reverse");

        // A transaction holding an xid on the target: the reverse slot would wait for it, fenced.
        await using var open = new Npgsql.NpgsqlConnection(new Npgsql.NpgsqlConnectionStringBuilder(db.TargetConnectionString) { Pooling = false }.ConnectionString);
        await open.OpenAsync();
        await using (var begin = new Npgsql.NpgsqlCommand("BEGIN; SELECT txid_current()", open))
            await begin.ExecuteNonQueryAsync();
        e = await Assert.ThrowsAsync<CutoverException>(() => new CutoverRunner(options, source, target, "cutover", loggers).RunAsync(CancellationToken.None)
            .WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.True(e.SourceWritable, e.Message);
        Assert.Contains($"pid {open.ProcessID} (idle in transaction", e.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'replicator_reverse'"));

        // Replication goes on.
        await Sql.ExecAsync(db.SourceConnectionString, "UPDATE product SET name = 'after the aborts' WHERE id = 1");
        await replication.CatchUpAsync();
        Assert.Equal("after the aborts", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT name FROM product WHERE id = 1"));
    }
}
