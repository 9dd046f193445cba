using Npgsql;
using Npgsql.Replication;
using Replicator.Tests.Fixtures;
using static Replicator.Tests.Snapshot.SnapshotTestHelpers;

namespace Replicator.Tests.Snapshot;

/// <summary>
/// Preflight against sources that cannot replicate as configured: a server of its own (started
/// for the test and stopped after it) with <c>wal_level=replica</c>, or with every replication slot
/// and WAL sender taken, and a pg_dump older than the source. Each must fail both
/// <c>preflight</c> and <c>snapshot</c> with the object and the fix named, and leave nothing
/// behind: no slot, no publication, no schema on the target.
/// </summary>
public class SnapshotPreflightServerTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private static readonly string[] Commands = ["preflight", "snapshot"];

    [Fact]
    public async Task A_source_without_wal_level_logical_is_refused_with_the_fix_and_nothing_is_created()
    {
        var source = await StartSourceAsync("walreplica", "ALTER SYSTEM SET wal_level = replica");
        try
        {
            await using var db = await fixture.CreateDatabasesAsync("preflight wal level");
            Assert.Equal("replica", await Sql.ScalarAsync<string>(source.ConnectionString("app"), "SHOW wal_level"));

            foreach (var command in Commands)
            {
                var result = await ProcessRunner.ReplicatorAsync([command, "--source", source.Uri("app"), "--target", db.TargetUri, "--slot", "pf_wal", "--metrics-listen", "127.0.0.1:0"]);

                Assert.True(result.ExitCode == 1, result.Output);
                Assert.Contains($"source postgres@127.0.0.1:{source.Port}/app: wal_level is 'replica', logical decoding needs 'logical'. Fix: run ALTER SYSTEM SET wal_level = logical; and restart the server", result.Stderr, StringComparison.Ordinal);
            }

            await AssertNothingCreatedAsync(source, db, "pf_wal", slotsBefore: 0);
        }
        finally
        {
            source.Stop();
        }
    }

    [Fact]
    public async Task A_source_with_every_slot_and_wal_sender_taken_is_refused_with_the_fixes_and_nothing_is_created()
    {
        var source = await StartSourceAsync("noslots", "ALTER SYSTEM SET max_replication_slots = 1", "ALTER SYSTEM SET max_wal_senders = 1");
        try
        {
            await using var db = await fixture.CreateDatabasesAsync("preflight no slots");
            // someone else's slot takes the only slot, and someone else's replication connection the only WAL sender
            await Sql.ExecAsync(source.ConnectionString("app"), "SELECT pg_create_logical_replication_slot('someone_else', 'pgoutput')");
            await using var other = new LogicalReplicationConnection(source.ConnectionString("app"));
            await other.Open();
            Assert.Equal(1, await ScalarLongAsync(source.ConnectionString("app"), "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"));

            foreach (var command in Commands)
            {
                var result = await ProcessRunner.ReplicatorAsync([command, "--source", source.Uri("app"), "--target", db.TargetUri, "--slot", "pf_full", "--metrics-listen", "127.0.0.1:0"]);

                Assert.True(result.ExitCode == 1, result.Output);
                Assert.Contains($"source postgres@127.0.0.1:{source.Port}/app: all 1 replication slots are in use (max_replication_slots). Fix: drop an unused slot (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots and restart", result.Stderr, StringComparison.Ordinal);
                Assert.Contains($"source postgres@127.0.0.1:{source.Port}/app: all 1 WAL senders are busy (max_wal_senders). Fix: raise max_wal_senders and restart, or stop another replication client", result.Stderr, StringComparison.Ordinal);
            }

            await AssertNothingCreatedAsync(source, db, "pf_full", slotsBefore: 1);

            // the same source passes once a slot and a WAL sender are free again
            await other.DisposeAsync();
            await Sql.ExecAsync(source.ConnectionString("app"), "SELECT pg_drop_replication_slot('someone_else')");
            var ok = await ProcessRunner.ReplicatorAsync(["preflight", "--source", source.Uri("app"), "--target", db.TargetUri, "--slot", "pf_full"]);
            Assert.True(ok.ExitCode == 0, ok.Output);
        }
        finally
        {
            source.Stop();
        }
    }

    [Fact]
    public async Task A_pg_dump_older_than_the_source_is_refused_with_the_fix_and_nothing_is_created()
    {
        await using var db = await fixture.CreateDatabasesAsync("preflight old pg_dump");
        await Sql.ExecAsync(db.SourceConnectionString, "CREATE TABLE public.items (id int PRIMARY KEY); INSERT INTO public.items SELECT generate_series(1, 10)");
        var major = await Sql.ScalarAsync<int>(db.SourceConnectionString, "SELECT current_setting('server_version_num')::int / 10000");
        var tools = Directory.CreateTempSubdirectory("replicator-old-pgdump-").FullName;
        try
        {
            // client programs that say they are PostgreSQL 9.6 (and would fail if run for real)
            foreach (var program in new[] { "pg_dump", "pg_restore", "psql" })
            {
                var path = Path.Combine(tools, program);
                await File.WriteAllTextAsync(path, $"#!/bin/sh\n[ \"$1\" = --version ] && echo '{program} (PostgreSQL) 9.6.24' && exit 0\nexit 1\n");
                if (!OperatingSystem.IsWindows())
                    File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
            }

            var env = new Dictionary<string, string?> { ["PG_DUMP_BIN"] = tools };
            foreach (var command in Commands)
            {
                var result = await ProcessRunner.ReplicatorAsync([command, "--source", db.SourceUri, "--target", db.TargetUri, "--slot", "pf_oldtools", "--metrics-listen", "127.0.0.1:0"], env);

                Assert.True(result.ExitCode == 1, result.Output);
                Assert.Contains($"pg_dump: PG_DUMP_BIN={tools} holds a pg_dump older than the source server ({tools}/pg_dump is version 9, the source runs PostgreSQL {major}); pg_dump refuses to dump a newer server. " +
                    $"Fix: point PG_DUMP_BIN at the bin directory of the PostgreSQL {major} (or newer) client tools", result.Stderr, StringComparison.Ordinal);
            }

            await AssertNothingCreatedAsync(db.SourceCluster, db, "pf_oldtools", slotsBefore: 0);
            Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM pg_class WHERE relname = 'items'"));

            // PG_DUMP_BIN is honoured: the server's own client programs pass
            var good = await ProcessRunner.ReplicatorAsync(["preflight", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", "pf_oldtools"],
                new Dictionary<string, string?> { ["PG_DUMP_BIN"] = db.SourceCluster.BinDirectory });
            Assert.True(good.ExitCode == 0, good.Output);
            Assert.Contains($"pg_dump in {db.SourceCluster.BinDirectory}", good.Stdout, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(tools, recursive: true);
        }
    }

    /// <summary>A source cluster of the test's own, reconfigured with <paramref name="settings"/> (ALTER SYSTEM) and restarted, with a database "app" holding a keyed table.</summary>
    private async Task<PostgresCluster> StartSourceAsync(string name, params string[] settings)
    {
        var servers = fixture.Servers;
        var cluster = await PostgresCluster.StartAsync($"{name}_{Guid.NewGuid():N}"[..24], servers.Source.BinDirectory, servers.BaseDirectory, CancellationToken.None);
        try
        {
            foreach (var setting in settings)
                await Sql.ExecAsync(cluster.ConnectionString(), setting);
            await cluster.RestartAsync(CancellationToken.None);
            await Sql.ExecAsync(cluster.ConnectionString(), "CREATE DATABASE app");
            await Sql.ExecAsync(cluster.ConnectionString("app"), "CREATE TABLE public.items (id int PRIMARY KEY, v text); INSERT INTO public.items SELECT g, g::text FROM generate_series(1, 100) g");
            return cluster;
        }
        catch
        {
            cluster.Stop();
            throw;
        }
    }

    private static async Task AssertNothingCreatedAsync(PostgresCluster source, TestDatabases db, string slot, long slotsBefore)
    {
        var database = source == db.SourceCluster ? db.Name : "app";
        Assert.Equal(0, await ScalarLongAsync(source.ConnectionString(database), $"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"));
        Assert.Equal(slotsBefore, await ScalarLongAsync(source.ConnectionString(database), "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"));
        Assert.Equal(0, await ScalarLongAsync(source.ConnectionString(database), "SELECT count(*) FROM pg_publication"));
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM pg_namespace WHERE nspname = 'replicator'"));
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"));
    }
}
