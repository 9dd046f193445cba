using Replicator.Tests.Fixtures;
using static Replicator.Tests.Snapshot.SnapshotTestHelpers;

namespace Replicator.Tests.Snapshot;

public class SnapshotPreflightTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task A_published_table_without_replica_identity_is_refused_with_the_exact_fix_and_nothing_is_created()
    {
        await using var db = await fixture.CreateDatabasesAsync("preflight identity");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public."No Key" (a int, b text);
            CREATE TABLE public.nothing (id int PRIMARY KEY);
            ALTER TABLE public.nothing REPLICA IDENTITY NOTHING;
            CREATE TABLE public.fine (id int PRIMARY KEY);
            """);

        foreach (var command in new[] { "preflight", "snapshot" })
        {
            var result = await ProcessRunner.ReplicatorAsync([command, "--source", db.SourceUri, "--target", db.TargetUri, "--slot", "pf_identity", "--metrics-listen", "127.0.0.1:0"]);

            Assert.True(result.ExitCode == 1, result.Output);
            Assert.Contains("ALTER TABLE \"public\".\"No Key\" REPLICA IDENTITY FULL;", result.Stderr, StringComparison.Ordinal);
            Assert.Contains("ALTER TABLE \"public\".\"nothing\" REPLICA IDENTITY FULL;", result.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("\"fine\"", result.Stderr, StringComparison.Ordinal);
            Assert.Contains("UPDATE and DELETE", result.Stderr, StringComparison.Ordinal);
        }

        Assert.Equal(0, await ScalarLongAsync(db.SourceConnectionString, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pf_identity'"));
        Assert.Equal(0, await ScalarLongAsync(db.SourceConnectionString, "SELECT count(*) FROM pg_publication"));
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM pg_namespace WHERE nspname = 'replicator'"));
    }

    [Fact]
    public async Task Bad_input_gets_one_clear_problem_per_object_with_its_fix()
    {
        await using var db = await fixture.CreateDatabasesAsync("preflight bad");
        await Sql.ExecAsync(db.SourceConnectionString, "CREATE TABLE public.orders (id int PRIMARY KEY)");
        await Sql.ExecAsync(db.SourceConnectionString, "SELECT pg_create_logical_replication_slot('pf_taken', 'pgoutput')");
        await Sql.ExecAsync(db.TargetConnectionString, "CREATE TABLE public.orders (id int)");

        var taken = await ProcessRunner.ReplicatorAsync(["preflight", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", "pf_taken"]);
        Assert.True(taken.ExitCode == 1, taken.Output);
        Assert.Contains("replication slot pf_taken on the source: already exists", taken.Stderr, StringComparison.Ordinal);
        Assert.Contains("already has 1 of the source's tables (public.orders)", taken.Stderr, StringComparison.Ordinal);

        var missingDb = db.TargetCluster.Uri("no_such_db_here");
        var noTarget = await ProcessRunner.ReplicatorAsync(["preflight", "--source", db.SourceUri, "--target", missingDb, "--slot", "pf_other"]);
        Assert.True(noTarget.ExitCode == 1, noTarget.Output);
        Assert.Contains("database no_such_db_here does not exist. Fix: create it first: CREATE DATABASE \"no_such_db_here\";", noTarget.Stderr, StringComparison.Ordinal);

        var noServer = await ProcessRunner.ReplicatorAsync(["preflight", "--source", "postgres://app:Secret9@127.0.0.1:1/x", "--target", db.TargetUri]);
        Assert.True(noServer.ExitCode == 1, noServer.Output);
        Assert.Contains("source app@127.0.0.1:1/x: cannot connect", noServer.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Secret9", noServer.Output, StringComparison.Ordinal);

        var unknownUser = await ProcessRunner.ReplicatorAsync(["preflight", "--source", db.SourceCluster.Uri(db.Name).Replace("postgres@", "nosuchuser@", StringComparison.Ordinal), "--target", db.TargetUri]);
        Assert.True(unknownUser.ExitCode == 1, unknownUser.Output);
        Assert.Contains("authentication failed (28000: role \"nosuchuser\" does not exist)", unknownUser.Stderr, StringComparison.Ordinal);

        var role = "app_" + db.Name[^8..];
        await Sql.ExecAsync(db.SourceConnectionString, $"CREATE ROLE {role} LOGIN");
        try
        {
            var noReplication = await ProcessRunner.ReplicatorAsync(["preflight", "--source", db.SourceCluster.Uri(db.Name).Replace("postgres@", role + "@", StringComparison.Ordinal), "--target", db.TargetUri, "--slot", "pf_other"]);
            Assert.True(noReplication.ExitCode == 1, noReplication.Output);
            Assert.Contains($"role {role} on the source: has neither REPLICATION nor SUPERUSER and cannot create a replication slot. Fix: ALTER ROLE \"{role}\" WITH REPLICATION;", noReplication.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            await Sql.ExecAsync(db.SourceConnectionString, $"DROP ROLE {role}");
        }

        await Sql.ExecAsync(db.TargetConnectionString, "DROP TABLE public.orders");
        await Sql.ExecAsync(db.SourceConnectionString, "SELECT lo_from_bytea(0, 'a blob')");
        var ok = await ProcessRunner.ReplicatorAsync(["preflight", "--source", db.SourceUri, "--target", db.TargetUri, "--slot", "pf_fresh"]);
        Assert.True(ok.ExitCode == 0, ok.Output);
        Assert.Contains("preflight ok", ok.Stdout, StringComparison.Ordinal);
        Assert.Contains("note: the source has 1 large objects", ok.Stdout, StringComparison.Ordinal);
    }
}
