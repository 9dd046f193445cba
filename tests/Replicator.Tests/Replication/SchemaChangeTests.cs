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
        while (!log.Contains("ALTER TABLE public.price ALTER COLUMN amount TYPE numeric(12,2)") && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.True(log.Contains("column amount of public.price is numeric(12,2) on the source but integer on the target"), log.Text);
        Assert.Equal(["1|10"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM price ORDER BY id"));
        Assert.False(replication.Running.IsCompleted);

        await Sql.ExecAsync(db.TargetConnectionString, "ALTER TABLE public.price ALTER COLUMN amount TYPE numeric(12,2) USING amount::numeric(12,2)");
        await replication.CatchUpAsync(TimeSpan.FromSeconds(90));
        await Compare.AssertSameAsync(db);
        Assert.Equal(["1|10.00", "2|20.50"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM price ORDER BY id"));
    }
}
