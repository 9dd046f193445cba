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
        var asRole = await AsTableOwnerAsync(db, Schema);
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

    [Fact]
    public async Task Without_replica_role_a_key_change_is_an_update_in_place_so_the_targets_foreign_key_actions_do_what_the_sources_did()
    {
        // Foreign-key actions fire on the target here. Applied as a delete and an insert, the parent's key
        // change would cascade-delete its children, and the source's own cascaded child updates would then
        // find nothing to update.
        await using var db = await fixture.CreateDatabasesAsync("managed_keymove");
        var asRole = await AsTableOwnerAsync(db, """
            CREATE TABLE parent (id int PRIMARY KEY, name text);
            CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id) ON UPDATE CASCADE ON DELETE CASCADE, note text);
            """);
        await using (asRole)
        {
            asRole.Start();
            await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO parent VALUES (1, 'a'), (2, 'b'); INSERT INTO child VALUES (10, 1, 'x'), (11, 1, 'y'), (20, 2, 'z')");
            await Sql.ExecAsync(db.SourceConnectionString, "UPDATE parent SET id = 5 WHERE id = 1");
            await Sql.ExecAsync(db.SourceConnectionString, "UPDATE parent SET id = 6, name = 'b2' WHERE id = 2; UPDATE child SET note = 'moved' WHERE parent_id = 6");
            await asRole.CatchUpAsync();
        }

        await Compare.AssertSameAsync(db);
        Assert.Equal(["10|5|x", "11|5|y", "20|6|moved"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT * FROM child ORDER BY id"));
    }

    /// <summary>
    /// <paramref name="schema"/> on both sides, the target's owned by a role without superuser (the
    /// replicator schema too), and a pipeline that connects to the target as that role (not started).
    /// </summary>
    private static async Task<Fixtures.Replication> AsTableOwnerAsync(TestDatabases db, string schema)
    {
        var role = "app_" + Guid.NewGuid().ToString("N")[..8];
        await Sql.ExecAsync(db.TargetConnectionString, $"CREATE ROLE {role} LOGIN; GRANT ALL ON DATABASE \"{db.Name}\" TO {role}; GRANT ALL ON SCHEMA public TO {role}; SET ROLE {role}; {schema}");
        await Sql.ExecAsync(db.SourceConnectionString, schema);
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "SELECT 1");
        await Fixtures.Replication.GiveStateToAsync(db, role);
        return Fixtures.Replication.Attach(db, replication.Slot, targetUri: $"postgres://{role}@127.0.0.1:{db.TargetCluster.Port}/{db.Name}");
    }
}
