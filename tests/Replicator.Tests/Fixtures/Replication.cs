using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Replicator.Applier;
using Replicator.Core.Configuration;
using Replicator.Core.State;
using Replicator.Kafka;
using Replicator.Kafka.Debezium;

namespace Replicator.Tests.Fixtures;

/// <summary>
/// Sets up continuous replication between a test's two databases without the snapshotter: the
/// same DDL on both sides, a publication and a slot on the source, and the target position at the
/// slot's consistent point (what the snapshotter records when its copy is done). Runs the
/// embedded pipeline in the background until disposed.
/// </summary>
public sealed class Replication : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private Task? _running;

    private Replication(TestDatabases db, string slot, string? targetUri = null)
    {
        Db = db;
        Slot = slot;
        TargetUri = targetUri ?? db.TargetUri;
    }

    /// <summary>Where the applier connects (another role than the superuser, in some tests).</summary>
    public string TargetUri { get; }

    public TestDatabases Db { get; }

    public string Slot { get; }

    public const string Publication = "replicator";

    public ReplicationPipeline Pipeline { get; private set; } = null!;

    /// <summary>Runs <paramref name="ddl"/> on both sides, then creates the publication and slot.</summary>
    public static async Task<Replication> PrepareAsync(TestDatabases db, string ddl, string? slot = null)
    {
        slot ??= "s_" + Guid.NewGuid().ToString("N")[..12];
        await Sql.ExecAsync(db.SourceConnectionString, ddl);
        await Sql.ExecAsync(db.TargetConnectionString, ddl);
        await Sql.ExecAsync(db.SourceConnectionString, $"CREATE PUBLICATION {Publication} FOR ALL TABLES");
        var lsn = await Sql.ScalarAsync<NpgsqlTypes.NpgsqlLogSequenceNumber>(db.SourceConnectionString,
            $"SELECT lsn FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')");
        await using var target = new NpgsqlConnection(db.TargetConnectionString);
        await target.OpenAsync();
        await TargetState.EnsureAsync(target, CancellationToken.None);
        await using var cmd = new NpgsqlCommand("INSERT INTO replicator.position (slot_name, commit_lsn) VALUES ($1, $2)", target);
        cmd.Parameters.AddWithValue(slot);
        cmd.Parameters.Add(Replicator.Core.Sql.Parameters.Lsn(TargetState.PositionBefore(lsn)));
        await cmd.ExecuteNonQueryAsync();
        return new Replication(db, slot);
    }

    /// <summary>The initial snapshot finished on the target (<c>replicator.position</c> has its row).</summary>
    public static async Task<bool> SnapshotDoneAsync(TestDatabases db) =>
        await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM pg_tables WHERE schemaname = 'replicator' AND tablename = 'position'") > 0
        && await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM replicator.position") > 0;

    /// <summary>
    /// The target's replicator schema and every table in it owned by <paramref name="role"/>, as if
    /// that role had created them (a managed target's user); their serial sequences follow the tables.
    /// </summary>
    public static Task GiveStateToAsync(TestDatabases db, string role) => Sql.ExecAsync(db.TargetConnectionString, $"""
        DO $$ DECLARE r record; BEGIN
          EXECUTE 'ALTER SCHEMA replicator OWNER TO {role}';
          FOR r IN SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'replicator'::regnamespace AND c.relkind = 'r' LOOP
            EXECUTE format('ALTER TABLE replicator.%I OWNER TO {role}', r.relname);
          END LOOP;
        END $$;
        """);

    /// <summary>Another pipeline on an existing slot and position.</summary>
    public static Replication Attach(TestDatabases db, string slot, string? targetUri = null) => new(db, slot, targetUri);

    public ApplierSettings Settings => new(Slot);

    /// <summary>Starts the pipeline in the background.</summary>
    public Replication Start(ApplierSettings? settings = null, ILoggerFactory? loggers = null)
    {
        Pipeline = new ReplicationPipeline(
            ConnectionInfo.Parse(Db.SourceUri, "source"), ConnectionInfo.Parse(TargetUri, "target"),
            settings ?? Settings, Publication, loggers ?? NullLoggerFactory.Instance);
        _running = Task.Run(() => Pipeline.RunAsync(_stop.Token));
        return this;
    }

    /// <summary>
    /// Starts <c>run --buffer kafka</c>'s pipeline in the background: capture and applier in this
    /// process with <paramref name="bootstrapServers"/>' broker between them (topics named after the slot).
    /// </summary>
    public Replication StartThroughKafka(string bootstrapServers, ILoggerFactory? loggers = null)
    {
        Pipeline = KafkaPipeline(Db, Slot, Slot, bootstrapServers, PipelineRole.KafkaBoth, loggers);
        _running = Task.Run(() => Pipeline.RunAsync(_stop.Token));
        return this;
    }

    /// <summary>A pipeline with Kafka between capture and applier (<paramref name="role"/>: both halves, or one of them), topics under <paramref name="prefix"/>.</summary>
    public static ReplicationPipeline KafkaPipeline(TestDatabases db, string slot, string prefix, string bootstrapServers, PipelineRole role, ILoggerFactory? loggers = null) =>
        new(ConnectionInfo.Parse(db.SourceUri, "source"), ConnectionInfo.Parse(db.TargetUri, "target"), new ApplierSettings(slot), Publication, loggers ?? NullLoggerFactory.Instance)
        {
            Role = role,
            KafkaSink = new KafkaSinkOptions { BootstrapServers = bootstrapServers, Format = new DebeziumOptions { TopicPrefix = prefix, DatabaseName = db.Name } },
            KafkaSource = new KafkaSourceOptions { BootstrapServers = bootstrapServers, TopicPrefix = prefix, GroupId = prefix },
        };

    /// <summary>The pipeline's task (faults with the replication error, if any).</summary>
    public Task Running => _running ?? Task.CompletedTask;

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Running;
    }

    /// <summary>Waits until the target has applied everything the source has committed so far.</summary>
    public async Task CatchUpAsync(TimeSpan? timeout = null)
    {
        // The insert position, not pg_current_wal_lsn(): with synchronous_commit = off a commit can
        // return before its record is even written.
        var goal = await Sql.ScalarAsync<NpgsqlTypes.NpgsqlLogSequenceNumber>(Db.SourceConnectionString, "SELECT pg_current_wal_insert_lsn()");
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (true)
        {
            if (Running.IsFaulted)
                await Running;
            var confirmed = await Sql.ScalarAsync<NpgsqlTypes.NpgsqlLogSequenceNumber>(Db.SourceConnectionString,
                $"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{Slot}'");
            if (confirmed >= goal)
                return;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"replication did not catch up to {goal} (slot confirmed {confirmed})");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until <paramref name="sql"/> on the target returns <paramref name="expected"/> (2 minutes at most), failing at once if <paramref name="running"/> ends.</summary>
    public static async Task WaitForTargetAsync(TestDatabases db, Task running, string sql, string expected)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (await Sql.ScalarAsync<string>(db.TargetConnectionString, sql) != expected)
        {
            if (running.IsCompleted)
                await running;
            Assert.True(DateTime.UtcNow < deadline, $"the target did not reach {expected} for {sql}");
            await Task.Delay(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await Running;
        }
        catch (Exception)
        {
            // The test already observed (or did not care about) the failure.
        }

        _stop.Dispose();
    }
}

/// <summary>Independent full comparison of two databases: every table's rows as text, sorted.</summary>
public static class Compare
{
    public static async Task<string> TableTextAsync(string connectionString, string quotedTable)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync();
        await using (var set = new NpgsqlCommand("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'", conn))
            await set.ExecuteNonQueryAsync();
        await using var cmd = new NpgsqlCommand($"SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), '') FROM {quotedTable} t", conn);
        return (string)(await cmd.ExecuteScalarAsync())!;
    }

    /// <summary>Asserts every user table has the same rows on both sides.</summary>
    public static async Task AssertSameAsync(TestDatabases db)
    {
        await using var conn = new NpgsqlConnection(db.SourceConnectionString);
        await conn.OpenAsync();
        var tables = await Replicator.Core.Catalog.TableCatalog.LoadAsync(conn, CancellationToken.None);
        Assert.NotEmpty(tables);
        foreach (var table in tables.Where(t => !t.IsPartitionedParent))
        {
            var source = await TableTextAsync(db.SourceConnectionString, table.QuotedName);
            var target = await TableTextAsync(db.TargetConnectionString, table.QuotedName);
            Assert.True(source == target, $"table {table.DisplayName} differs.\n--- source ---\n{Head(source)}\n--- target ---\n{Head(target)}");
        }
    }

    private static string Head(string s) => s.Length > 3000 ? s[..3000] + "…" : s;
}
