using Microsoft.Extensions.Logging;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

public class SchemaChangeTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task An_added_nullable_or_constant_default_column_is_added_on_the_target_automatically()
    {
        await using var db = await fixture.CreateDatabasesAsync("ddl_add");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'old')");
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO item VALUES (2, 'before');
            ALTER TABLE item ADD COLUMN note text;
            ALTER TABLE item ADD COLUMN "Qty Ω" int NOT NULL DEFAULT 5;
            INSERT INTO item VALUES (3, 'after', 'n', 7);
            UPDATE item SET note = 'touched' WHERE id = 1;
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(["1|old|touched|5", "2|before|NULL|5", "3|after|n|7"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM item ORDER BY id"));
    }

    [Fact]
    public async Task A_column_added_with_a_default_evaluated_once_gets_the_sources_value_on_the_targets_existing_rows()
    {
        // now() and CURRENT_TIMESTAMP are evaluated when the column is added: the source's rows hold that
        // moment, which PostgreSQL keeps as the column's missing value. The target's rows must hold the same,
        // not the moment the applier adds the column there.
        await using var db = await fixture.CreateDatabasesAsync("ddl_once");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'old')");
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, "ALTER TABLE item ADD COLUMN added timestamptz NOT NULL DEFAULT now()");
        await Task.Delay(1100); // the target's own now() would differ
        await Sql.ExecAsync(db.SourceConnectionString, """
            ALTER TABLE item ADD COLUMN stamped timestamp DEFAULT CURRENT_TIMESTAMP;
            ALTER TABLE item ADD COLUMN code text DEFAULT E'it''s a \\ path';
            ALTER TABLE item ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
            ALTER TABLE item ADD COLUMN grid int[] DEFAULT '{{1,2},{3,NULL}}';
            INSERT INTO item (id, name) VALUES (2, 'new');
            """);
        await replication.CatchUpAsync(TimeSpan.FromSeconds(90));
        await Compare.AssertSameAsync(db);
        Assert.Equal(["now()", "CURRENT_TIMESTAMP", "'it''s a \\ path'::text", "'{}'::text[]", "'{{1,2},{3,NULL}}'::integer[]"], await Sql.RowsAsync(db.TargetConnectionString,
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'item'::regclass ORDER BY adnum"));
    }

    [Fact]
    public async Task A_column_added_to_a_partitioned_table_published_via_its_root_gets_the_value_its_partitions_keep()
    {
        // A partitioned table keeps no missing value itself; its partitions do.
        await using var db = await fixture.CreateDatabasesAsync("ddl_root");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE reading (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
            CREATE TABLE reading_eu PARTITION OF reading FOR VALUES IN ('eu');
            CREATE TABLE reading_us PARTITION OF reading FOR VALUES IN ('us');
            """);
        await Sql.ExecAsync(db.SourceConnectionString, $"ALTER PUBLICATION {Fixtures.Replication.Publication} SET (publish_via_partition_root = true)");
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO reading VALUES (1, 'eu'), (2, 'us')");
        await replication.CatchUpAsync();
        await Sql.ExecAsync(db.SourceConnectionString, """
            ALTER TABLE reading ADD COLUMN unit text NOT NULL DEFAULT 'kWh';
            ALTER TABLE reading ADD COLUMN at timestamptz DEFAULT now();
            INSERT INTO reading (id, region) VALUES (3, 'eu');
            """);
        await replication.CatchUpAsync(TimeSpan.FromSeconds(90));
        await Compare.AssertSameAsync(db);
    }

    [Fact]
    public async Task An_update_of_a_table_with_a_generated_always_identity_column_waits_for_the_ddl_named_and_resumes()
    {
        await using var db = await fixture.CreateDatabasesAsync("ddl_identity");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE ticket (code text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, state text)");
        var log = new CapturingLoggerProvider();
        using var loggers = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddProvider(log));
        replication.Start(loggers: loggers);
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO ticket (code, state) VALUES ('a', 'new'), ('b', 'new')");
        await replication.CatchUpAsync();
        Assert.True(log.Contains("ALTER TABLE \"public\".\"ticket\" ALTER COLUMN \"seq\" SET GENERATED BY DEFAULT"), log.Text); // named when the table is first seen

        await Sql.ExecAsync(db.SourceConnectionString, "UPDATE ticket SET state = 'done' WHERE code = 'a'; INSERT INTO ticket (code, state) VALUES ('c', 'new')");
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!log.Contains("Replication waits for a schema change on the target") && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.True(log.Contains("can only be updated to DEFAULT"), log.Text);
        Assert.False(replication.Running.IsCompleted);
        Assert.Equal(["a|1|new", "b|2|new"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM ticket ORDER BY code"));

        await Sql.ExecAsync(db.TargetConnectionString, "ALTER TABLE public.ticket ALTER COLUMN seq SET GENERATED BY DEFAULT");
        await replication.CatchUpAsync(TimeSpan.FromSeconds(90));
        await Compare.AssertSameAsync(db);
        Assert.Equal(["a|1|done", "b|2|new", "c|3|new"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM ticket ORDER BY code"));
    }

    [Fact]
    public async Task An_incompatible_change_stops_with_the_ddl_to_run_and_resumes_once_it_is_run()
    {
        await using var db = await fixture.CreateDatabasesAsync("ddl_type");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE price (id int PRIMARY KEY, amount int)");
        var log = new CapturingLoggerProvider();
        using var loggers = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddProvider(log));
        replication.Start(loggers: loggers);
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO price VALUES (1, 10)");
        await Sql.ExecAsync(db.SourceConnectionString, """
            ALTER TABLE price ALTER COLUMN amount TYPE numeric(12,2);
            INSERT INTO price VALUES (2, 20.5);
            """);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        // Waiting, with every transaction before the change applied (the first try may hold it in the batch that failed).
        while (!(log.Contains("Replication waits for a schema change on the target") && await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM price") == 1) && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.True(log.Contains("column amount of public.price is numeric(12,2) on the source but integer on the target"), log.Text);
        Assert.True(log.Contains("ALTER TABLE \"public\".\"price\" ALTER COLUMN \"amount\" TYPE numeric(12,2)"), log.Text);
        Assert.Equal(["1|10"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM price ORDER BY id"));
        Assert.False(replication.Running.IsCompleted);

        await Sql.ExecAsync(db.TargetConnectionString, "ALTER TABLE public.price ALTER COLUMN amount TYPE numeric(12,2) USING amount::numeric(12,2)");
        await replication.CatchUpAsync(TimeSpan.FromSeconds(90));
        await Compare.AssertSameAsync(db);
        Assert.Equal(["1|10.00", "2|20.50"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM price ORDER BY id"));
    }
}
