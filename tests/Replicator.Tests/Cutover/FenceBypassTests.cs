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
        var group = "group_" + Guid.NewGuid().ToString("N")[..8];
        var overridden = "overridden_" + Guid.NewGuid().ToString("N")[..8];
        // Not flagged: a role that cannot log in (settings are not inherited), and one whose setting
        // for this database puts read-only back on.
        await Sql.ExecAsync(db.SourceConnectionString, $"""
            CREATE ROLE {role} LOGIN; ALTER ROLE {role} IN DATABASE "{db.Name}" SET default_transaction_read_only = off;
            CREATE ROLE {everywhere} LOGIN; ALTER ROLE {everywhere} SET default_transaction_read_only = 'false';
            CREATE ROLE {group} NOLOGIN; ALTER ROLE {group} SET default_transaction_read_only = off;
            CREATE ROLE {overridden} LOGIN; ALTER ROLE {overridden} SET default_transaction_read_only = off; ALTER ROLE {overridden} IN DATABASE "{db.Name}" SET default_transaction_read_only = on;
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
            Assert.DoesNotContain(group, fence.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain(overridden, fence.Detail, StringComparison.Ordinal);

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
                DROP ROLE {role}; DROP ROLE {everywhere}; DROP ROLE {group}; DROP OWNED BY {overridden}; DROP ROLE {overridden};
                """);
        }
    }

    [Fact]
    public async Task Superuser_sessions_the_cutovers_role_may_not_end_fail_the_fence_precondition()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_superuser");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE product (id int PRIMARY KEY, name text);");
        using var loggers = LoggerFactory.Create(_ => { });
        var owner = "owner_" + Guid.NewGuid().ToString("N")[..8];
        await Sql.ExecAsync(db.SourceConnectionString, $"""
            CREATE ROLE {owner} LOGIN; ALTER DATABASE "{db.Name}" OWNER TO {owner}; GRANT pg_signal_backend TO {owner}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {owner};
            """);
        try
        {
            await using var admin = new Npgsql.NpgsqlConnection(db.SourceConnectionString);
            await admin.OpenAsync();
            var pid = admin.ProcessID;
            var asOwner = Info($"postgres://{owner}@127.0.0.1:{db.SourceCluster.Port}/{db.Name}", "source");
            // Without pg_read_all_stats other roles' sessions show no type or state: none would be ended.
            var report = await new CutoverRunner(new CutoverOptions { Slot = replication.Slot, DryRun = true }, asOwner, Info(db.TargetUri, "target"), "cutover", loggers)
                .RunAsync(CancellationToken.None);
            var fence = report.Preconditions.Single(p => p.Name == "write fence");
            Assert.False(fence.Ok, report.ToText());
            Assert.Contains("GRANT pg_read_all_stats", fence.Detail, StringComparison.Ordinal);

            await Sql.ExecAsync(db.SourceConnectionString, $"GRANT pg_read_all_stats TO {owner}");
            report = await new CutoverRunner(new CutoverOptions { Slot = replication.Slot, DryRun = true }, asOwner, Info(db.TargetUri, "target"), "cutover", loggers)
                .RunAsync(CancellationToken.None);
            fence = report.Preconditions.Single(p => p.Name == "write fence");
            Assert.False(fence.Ok, report.ToText());
            Assert.Contains($"pid {pid} (role postgres)", fence.Detail, StringComparison.Ordinal);
            Assert.Contains("may not end them", fence.Detail, StringComparison.Ordinal);

            // Named in --allow-role, they are left alone.
            report = await new CutoverRunner(new CutoverOptions { Slot = replication.Slot, DryRun = true, AllowRoles = ["postgres"] }, asOwner, Info(db.TargetUri, "target"), "cutover", loggers)
                .RunAsync(CancellationToken.None);
            Assert.True(report.Preconditions.Single(p => p.Name == "write fence").Ok, report.ToText());
        }
        finally
        {
            await Sql.ExecAsync(db.SourceConnectionString, $"""ALTER DATABASE "{db.Name}" OWNER TO postgres; REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {owner}; DROP OWNED BY {owner}; DROP ROLE {owner};""");
        }
    }

    [Fact]
    public async Task Sessions_begun_after_the_fence_are_left_alone_even_those_the_role_could_not_end()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_after");
        var owner = await DatabaseOwner.CreateAsync(db);

        await using var control = await owner.OpenAsync(CancellationToken.None);
        // A session of the application inside a transaction when the fence goes up: it gets the grace period.
        await using var busy = new Npgsql.NpgsqlConnection(owner.ConnectionString);
        await busy.OpenAsync();
        await using (var begin = new Npgsql.NpgsqlCommand("BEGIN; SELECT txid_current()", busy))
            await begin.ExecuteNonQueryAsync();
        var fence = await WriteFence.CreateAsync(control, owner.OpenAsync, new CutoverOptions { Slot = "unused", FenceGrace = TimeSpan.FromSeconds(2) },
            new Dictionary<string, string>(), CancellationToken.None);
        try
        {
            var raise = fence.RaiseAsync(Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None);
            // Meanwhile a superuser connects (an administrator, a pooler reconnecting): read-only already,
            // and a session this role may not end.
            Npgsql.NpgsqlConnection? late = null;
            while (late is null)
            {
                var candidate = new Npgsql.NpgsqlConnection(new Npgsql.NpgsqlConnectionStringBuilder(db.SourceConnectionString) { Pooling = false }.ConnectionString);
                await candidate.OpenAsync();
                await using var show = new Npgsql.NpgsqlCommand("SHOW default_transaction_read_only", candidate);
                var fenced = (string)(await show.ExecuteScalarAsync())! == "on";
                await candidate.DisposeAsync();
                if (fenced)
                {
                    // Well after the fence (a session between the ALTER and the fence's own clock
                    // reading counts as one from before it).
                    await Task.Delay(500);
                    late = new Npgsql.NpgsqlConnection(new Npgsql.NpgsqlConnectionStringBuilder(db.SourceConnectionString) { Pooling = false }.ConnectionString);
                    await late.OpenAsync();
                }
            }

            await using (late)
            {
                Assert.False(raise.IsCompleted); // still in the busy session's grace period
                await raise.WaitAsync(TimeSpan.FromSeconds(30));
                Assert.Equal(1, fence.SessionsEnded);
                await using var alive = new Npgsql.NpgsqlCommand("SELECT 1", late);
                Assert.Equal(1, await alive.ExecuteScalarAsync());
            }
        }
        finally
        {
            await fence.LiftAsync(CancellationToken.None);
            await owner.DropAsync();
        }
    }

    [Fact]
    public async Task A_session_from_before_the_fence_that_cannot_be_ended_fails_the_fence_naming_it()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_stuck");
        var owner = await DatabaseOwner.CreateAsync(db);

        // A superuser connected before the fence (the precondition would have said so).
        await using var admin = new Npgsql.NpgsqlConnection(new Npgsql.NpgsqlConnectionStringBuilder(db.SourceConnectionString) { Pooling = false }.ConnectionString);
        await admin.OpenAsync();
        await using var control = await owner.OpenAsync(CancellationToken.None);
        var fence = await WriteFence.CreateAsync(control, owner.OpenAsync, new CutoverOptions { Slot = "unused", FenceGrace = TimeSpan.FromMilliseconds(100) },
            new Dictionary<string, string>(), CancellationToken.None);
        try
        {
            var e = await Assert.ThrowsAsync<CutoverException>(() => fence.RaiseAsync(Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None)
                .WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.Contains($"pid {admin.ProcessID} (role postgres, superuser, idle)", e.Message, StringComparison.Ordinal);
            Assert.Contains("--allow-role", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            await fence.LiftAsync(CancellationToken.None);
            await owner.DropAsync();
        }
    }

    [Fact]
    public async Task A_transaction_prepared_after_the_preconditions_aborts_the_cutover_and_replicates_once_committed()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_prepared");
        using var loggers = LoggerFactory.Create(_ => { });
        await using var replication = await ReadyForCutover.StartAsync(db, loggers);

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

    [Fact]
    public async Task A_write_that_gets_through_the_fence_aborts_the_cutover_before_the_switch_and_replicates()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_write_through");
        using var loggers = LoggerFactory.Create(_ => { });
        await using var replication = await ReadyForCutover.StartAsync(db, loggers);

        // Behind a pooler fence the database itself stays writable: a client that goes around the
        // pooler writes on, one row after another, before the fence and after it. No final
        // verification, so the check before the switch is what has to find it.
        using var stopWriting = new CancellationTokenSource();
        var written = 0;
        var writer = Task.Run(async () =>
        {
            await using var session = new Npgsql.NpgsqlConnection(db.SourceConnectionString);
            await session.OpenAsync();
            while (!stopWriting.IsCancellationRequested)
            {
                await using var insert = new Npgsql.NpgsqlCommand($"INSERT INTO product VALUES ({2000 + written + 1}, 'around the pooler')", session);
                await insert.ExecuteNonQueryAsync();
                written++;
            }
        });
        while (Volatile.Read(ref written) < 10)
            await Task.Delay(10);
        var options = new CutoverOptions
        {
            Slot = replication.Slot,
            FenceCommand = "true",
            UnfenceCommand = "true",
            FinalVerify = FinalVerification.None,
            SwitchCommand = "exit 0",
        };
        var e = await Assert.ThrowsAsync<CutoverException>(async () =>
        {
            var report = await new CutoverRunner(options, Info(db.SourceUri, "source"), Info(db.TargetUri, "target"), "cutover", loggers).RunAsync(CancellationToken.None);
            Assert.Fail("switched: " + report.ToText());
        });
        await stopWriting.CancelAsync();
        await writer;
        Assert.True(e.SourceWritable, e.Message);
        Assert.Contains("after the write fence went up: public.product (transaction ", e.Message, StringComparison.Ordinal);
        Assert.Contains("Switching now would lose it", e.Message, StringComparison.Ordinal);
        Assert.StartsWith("FOUND: public.product", e.Report!.WritesAfterFence, StringComparison.Ordinal);
        Assert.DoesNotContain(e.Report.Phases, p => p.Phase == "switch");
        Assert.False(replication.Running.IsCompleted);
        // The watch's slot went with the cutover.
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db.SourceConnectionString, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'replicator_fence_watch_%' AND database = current_database()"));

        // Replication goes on and carries every one of those writes over.
        await replication.CatchUpAsync();
        Assert.Equal((long)written, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM product WHERE id > 2000"));
    }

    [Fact]
    public async Task A_write_that_gets_through_while_the_switch_hook_runs_is_named_and_the_cli_exits_1()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_write_at_switch");
        using var loggers = LoggerFactory.Create(_ => { });
        await using var replication = await ReadyForCutover.StartAsync(db, loggers);
        var psql = Path.Combine(db.SourceCluster.BinDirectory, "psql");
        // Behind a pooler fence, a client going around the pooler writes while the switch hook runs.
        var result = await ProcessRunner.ReplicatorAsync(["cutover", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", replication.Slot,
            "--fence-command", "true", "--unfence-command", "true", "--final-verify", "none",
            "--switch-command", $"'{psql}' -X -q -v ON_ERROR_STOP=1 '{db.SourceUri}' -c \"INSERT INTO product VALUES (3000, 'during the switch')\""]);
        Assert.True(result.ExitCode == 1, result.Output);
        Assert.Contains("SWITCHED.", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Writes after the fence: LOST: public.product (transaction ", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("while the switch hook ran", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_the_REPLICATION_attribute_writes_after_the_fence_are_not_looked_for_and_the_report_says_why()
    {
        await using var db = await fixture.CreateDatabasesAsync("fence_watch_role");
        await Sql.ExecAsync(db.SourceConnectionString, "CREATE TABLE product (id int PRIMARY KEY, name text); CREATE PUBLICATION replicator FOR ALL TABLES");
        var owner = await DatabaseOwner.CreateAsync(db);
        try
        {
            var (watch, skipped) = await WritesAfterFence.StartAsync(owner.OpenAsync, "replicator", CancellationToken.None);
            Assert.Null(watch);
            Assert.Contains("writes after the fence not checked", skipped, StringComparison.Ordinal);
            Assert.Contains("REPLICATION attribute", skipped, StringComparison.Ordinal);

            // With it, the watch sees a write committed after a mark, and nothing before it.
            await Sql.ExecAsync(db.SourceConnectionString, $"ALTER ROLE {owner.Name} REPLICATION");
            (watch, skipped) = await WritesAfterFence.StartAsync(owner.OpenAsync, "replicator", CancellationToken.None);
            Assert.Null(skipped);
            await using (watch)
            {
                await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO product VALUES (1, 'before')");
                var mark = await Sql.ScalarAsync<NpgsqlTypes.NpgsqlLogSequenceNumber>(db.SourceConnectionString, "SELECT pg_logical_emit_message(true, 'test', 'mark')");
                watch!.StartAdvance(mark, CancellationToken.None);
                Assert.Null(await watch.FindAsync(mark, CancellationToken.None));
                await Sql.ExecAsync(db.SourceConnectionString, "BEGIN; SELECT 1; COMMIT; UPDATE product SET name = 'after' WHERE id = 1");
                Assert.StartsWith("public.product (transaction ", await watch.FindAsync(mark, CancellationToken.None), StringComparison.Ordinal);
            }

            Assert.Equal(0L, await Sql.ScalarAsync<long>(db.SourceConnectionString, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"));
        }
        finally
        {
            await owner.DropAsync();
        }
    }

    /// <summary>
    /// A role that owns the test database, may end and see other sessions, and is no superuser; the
    /// fixture's own superuser sessions in the database are ended first (they would count as sessions
    /// from before a fence).
    /// </summary>
    private sealed class DatabaseOwner(TestDatabases db, string name)
    {
        public string Name => name;

        public string ConnectionString { get; } = $"Host=127.0.0.1;Port={db.SourceCluster.Port};Database={db.Name};Username={name};Pooling=false";

        public static async Task<DatabaseOwner> CreateAsync(TestDatabases db)
        {
            var name = "owner_" + Guid.NewGuid().ToString("N")[..8];
            await Sql.ExecAsync(db.SourceConnectionString, $"""
                CREATE ROLE {name} LOGIN; ALTER DATABASE "{db.Name}" OWNER TO {name}; GRANT pg_signal_backend, pg_read_all_stats TO {name};
                """);
            await Sql.ExecAsync(db.SourceConnectionString, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
            await using (var pooled = new Npgsql.NpgsqlConnection(db.SourceConnectionString))
                Npgsql.NpgsqlConnection.ClearPool(pooled);
            return new DatabaseOwner(db, name);
        }

        /// <summary>A session of the owner that writes through a fence (as the cutover's own do).</summary>
        public async Task<Npgsql.NpgsqlConnection> OpenAsync(CancellationToken cancellationToken)
        {
            var connection = new Npgsql.NpgsqlConnection(ConnectionString);
            await connection.OpenAsync(cancellationToken);
            await using var writable = new Npgsql.NpgsqlCommand("SET default_transaction_read_only = off", connection);
            await writable.ExecuteNonQueryAsync(cancellationToken);
            return connection;
        }

        public Task DropAsync() =>
            Sql.ExecAsync(db.SourceConnectionString, $"""ALTER DATABASE "{db.Name}" OWNER TO postgres; DROP OWNED BY {name}; DROP ROLE {name};""");
    }
}
