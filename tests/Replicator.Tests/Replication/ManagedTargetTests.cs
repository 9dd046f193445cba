using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

/// <summary>A target role without superuser, as on Azure or RDS: no session_replication_role.</summary>
public class ManagedTargetTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Schema = """
        CREATE TABLE parent (id int PRIMARY KEY, name text);
        CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id) ON DELETE CASCADE, note text);
        CREATE TABLE audit (id serial PRIMARY KEY, at timestamptz DEFAULT now(), what text);
        CREATE FUNCTION log_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit (what) VALUES ('insert ' || NEW.id); RETURN NEW; END $$;
        CREATE TRIGGER parent_audit AFTER INSERT ON parent FOR EACH ROW EXECUTE FUNCTION log_insert();
        """;

    [Fact]
    public async Task Without_replica_role_user_triggers_are_disabled_and_recorded_and_changes_apply_in_source_order()
    {
        await using var db = await fixture.CreateDatabasesAsync("managed");
        var role = "app_" + Guid.NewGuid().ToString("N")[..8];
        await Sql.ExecAsync(db.TargetConnectionString, $"CREATE ROLE {role} LOGIN; GRANT ALL ON DATABASE \"{db.Name}\" TO {role}; GRANT ALL ON SCHEMA public TO {role}; SET ROLE {role}; {Schema}");
        await Sql.ExecAsync(db.SourceConnectionString, Schema);
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "SELECT 1");
        await Sql.ExecAsync(db.TargetConnectionString, $"ALTER SCHEMA replicator OWNER TO {role}; ALTER TABLE replicator.position OWNER TO {role}; ALTER TABLE replicator.table_sync OWNER TO {role}; ALTER TABLE replicator.barrier OWNER TO {role}; ALTER TABLE replicator.disabled_triggers OWNER TO {role}; ALTER SEQUENCE replicator.barrier_id_seq OWNER TO {role}");
        var asRole = Fixtures.Replication.Attach(db, replication.Slot, targetUri: $"postgres://{role}@127.0.0.1:{db.TargetCluster.Port}/{db.Name}");
        await using (asRole)
        {
            asRole.Start();
            await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO parent VALUES (1, 'a'), (2, 'b'); INSERT INTO child VALUES (10, 1, 'x'), (20, 2, 'y')");
            await Sql.ExecAsync(db.SourceConnectionString, "DELETE FROM parent WHERE id = 1");
            await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO parent VALUES (3, 'c'); UPDATE child SET parent_id = 3 WHERE id = 20; DELETE FROM parent WHERE id = 2");
            await asRole.CatchUpAsync();
        }

        Assert.Equal(["3|c"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT id, name FROM parent ORDER BY id"));
        Assert.Equal(["20|3|y"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM child ORDER BY id"));
        // The source's trigger wrote its own audit rows, which replicate; the target's copy did not fire again.
        Assert.Equal(await Sql.RowsAsync(db.SourceConnectionString, "SELECT what FROM audit ORDER BY what"), await Sql.RowsAsync(db.TargetConnectionString, "SELECT what FROM audit ORDER BY what"));
        Assert.Equal(["public|parent|parent_audit"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT schema_name, table_name, trigger_name FROM replicator.disabled_triggers"));
        Assert.Equal("D", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'parent_audit'"));
    }
}
