using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;
using Replicator.Cutover;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Cutover;

/// <summary>Writers that the write fence (the database's read-only default) would not stop.</summary>
public class FenceBypassTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private static ConnectionInfo Info(string uri, string key) => ConnectionInfo.Parse(uri, key);

    [Fact]
    public async Task Roles_that_set_themselves_read_write_and_enabled_subscriptions_fail_the_fence_precondition()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_bypass");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE product (id int PRIMARY KEY, name text);");
        using var loggers = LoggerFactory.Create(_ => { });
        var role = "writer_" + Guid.NewGuid().ToString("N")[..8];
        var everywhere = "anywhere_" + Guid.NewGuid().ToString("N")[..8];
        await Sql.ExecAsync(db.SourceConnectionString, $"""
            CREATE ROLE {role}; ALTER ROLE {role} IN DATABASE "{db.Name}" SET default_transaction_read_only = off;
            CREATE ROLE {everywhere}; ALTER ROLE {everywhere} SET default_transaction_read_only = 'false';
            CREATE SUBSCRIPTION inbound CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere' PUBLICATION elsewhere WITH (connect = false);
            ALTER SUBSCRIPTION inbound ENABLE;
            """);
        try
        {
            var report = await new CutoverRunner(new CutoverOptions { Slot = replication.Slot, DryRun = true }, Info(db.SourceUri, "source"), Info(db.TargetUri, "target"), "cutover", loggers)
                .RunAsync(CancellationToken.None);
            var fence = report.Preconditions.Single(p => p.Name == "write fence");
            Assert.False(fence.Ok, report.ToText());
            Assert.Contains($"ALTER ROLE \"{role}\" IN DATABASE \"{db.Name}\" RESET default_transaction_read_only", fence.Detail, StringComparison.Ordinal);
            Assert.Contains($"ALTER ROLE \"{everywhere}\" RESET default_transaction_read_only", fence.Detail, StringComparison.Ordinal);
            Assert.Contains("ALTER SUBSCRIPTION \"inbound\" DISABLE", fence.Detail, StringComparison.Ordinal);

            // Fixed as the message says, the check passes.
            await Sql.ExecAsync(db.SourceConnectionString, $"""
                ALTER ROLE {role} IN DATABASE "{db.Name}" RESET default_transaction_read_only; ALTER ROLE {everywhere} RESET default_transaction_read_only;
                ALTER SUBSCRIPTION inbound DISABLE;
                """);
            report = await new CutoverRunner(new CutoverOptions { Slot = replication.Slot, DryRun = true }, Info(db.SourceUri, "source"), Info(db.TargetUri, "target"), "cutover", loggers)
                .RunAsync(CancellationToken.None);
            Assert.True(report.Preconditions.Single(p => p.Name == "write fence").Ok, report.ToText());
        }
        finally
        {
            await Sql.ExecAsync(db.SourceConnectionString, $"""
                ALTER SUBSCRIPTION inbound DISABLE; ALTER SUBSCRIPTION inbound SET (slot_name = NONE); DROP SUBSCRIPTION inbound;
                DROP ROLE {role}; DROP ROLE {everywhere};
                """);
        }
    }

    [Fact]
    public async Task A_transaction_prepared_after_the_preconditions_aborts_the_cutover_and_replicates_once_committed()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_prepared");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE product (id int PRIMARY KEY, name text);");
        using var loggers = LoggerFactory.Create(_ => { });
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO product SELECT g, 'product ' || g FROM generate_series(1, 100) g");
        await replication.CatchUpAsync();
        Assert.True((await Verification.RunPassAsync(new VerifyRequest { SlotName = replication.Slot }, Info(db.SourceUri, "source"), Info(db.TargetUri, "target"), loggers, CancellationToken.None)).Identical);

        // A transaction manager prepares a transaction while the cutover runs (here: when the fence
        // goes up); it may commit it whenever it likes, even from a read-only session.
        var psql = Path.Combine(db.SourceCluster.BinDirectory, "psql");
        var options = new CutoverOptions
        {
            Slot = replication.Slot,
            FenceCommand = $"'{psql}' -X -q -v ON_ERROR_STOP=1 '{db.SourceUri}' -c \"BEGIN; INSERT INTO product VALUES (1000, 'prepared'); PREPARE TRANSACTION 'xa-1'\"",
            UnfenceCommand = "true",
            SwitchCommand = "exit 0",
        };
        try
        {
            var e = await Assert.ThrowsAsync<CutoverException>(() => new CutoverRunner(options, Info(db.SourceUri, "source"), Info(db.TargetUri, "target"), "cutover", loggers).RunAsync(CancellationToken.None));
            Assert.True(e.SourceWritable, e.Message);
            Assert.Contains("prepared transaction(s) 'xa-1'", e.Message, StringComparison.Ordinal);
            Assert.Contains("COMMIT PREPARED", e.Message, StringComparison.Ordinal);
            Assert.False(replication.Running.IsCompleted);
        }
        catch
        {
            // A prepared transaction would keep the test database from being dropped.
            if (await Sql.ScalarAsync<long>(db.SourceConnectionString, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'xa-1'") > 0)
                await Sql.ExecAsync(db.SourceConnectionString, "ROLLBACK PREPARED 'xa-1'");
            throw;
        }

        // Replication goes on: once committed, the prepared row reaches the target.
        await Sql.ExecAsync(db.SourceConnectionString, "COMMIT PREPARED 'xa-1'");
        await replication.CatchUpAsync();
        Assert.Equal("prepared", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT name FROM product WHERE id = 1000"));
    }
}
