using Npgsql;
using Replicator.Core.State;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Cutover;

/// <summary>The triggers the applier disables on a managed target, and how the cutover brings them back.</summary>
public class TriggerRestoreTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Tables = """
        CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE TABLE a_first (id int PRIMARY KEY);
        CREATE TABLE b_second (id int PRIMARY KEY);
        """;

    private static async Task<List<string>> TriggerModesAsync(string connectionString) =>
        await Sql.RowsAsync(connectionString, "SELECT tgname || ' ' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname");

    private static async Task WithConnectionAsync(string connectionString, Func<NpgsqlConnection, Task> action)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await action(connection);
    }

    [Fact]
    public async Task Triggers_come_back_enabled_as_they_were_always_replica_or_origin()
    {
        await using var db = await fixture.CreateDatabasesAsync("triggers_modes");
        await Sql.ExecAsync(db.TargetConnectionString, Tables + """
            CREATE TRIGGER on_origin BEFORE INSERT ON a_first FOR EACH ROW EXECUTE FUNCTION keep();
            CREATE TRIGGER on_always BEFORE INSERT ON a_first FOR EACH ROW EXECUTE FUNCTION keep();
            CREATE TRIGGER on_replica BEFORE INSERT ON b_second FOR EACH ROW EXECUTE FUNCTION keep();
            ALTER TABLE a_first ENABLE ALWAYS TRIGGER on_always;
            ALTER TABLE b_second ENABLE REPLICA TRIGGER on_replica;
            """);
        string[] before = ["on_always A", "on_origin O", "on_replica R"];
        Assert.Equal(before, await TriggerModesAsync(db.TargetConnectionString));

        await WithConnectionAsync(db.TargetConnectionString, async target =>
        {
            await TargetState.EnsureAsync(target, CancellationToken.None);
            Assert.Equal(3, (await TargetState.DisableUserTriggersAsync(target, CancellationToken.None)).Count);
            Assert.Equal(["on_always D", "on_origin D", "on_replica D"], await TriggerModesAsync(db.TargetConnectionString));
            Assert.Equal(3, await TargetState.RestoreTriggersAsync(target, CancellationToken.None));
        });
        Assert.Equal(before, await TriggerModesAsync(db.TargetConnectionString));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM replicator.disabled_triggers"));
    }

    [Fact]
    public async Task A_restore_that_fails_part_way_leaves_every_trigger_disabled_and_recorded()
    {
        await using var db = await fixture.CreateDatabasesAsync("triggers_half");
        var role = "trg_" + Guid.NewGuid().ToString("N")[..8];
        await Sql.ExecAsync(db.TargetConnectionString, Tables + $"""
            CREATE TRIGGER first_audit BEFORE INSERT ON a_first FOR EACH ROW EXECUTE FUNCTION keep();
            CREATE TRIGGER second_audit BEFORE INSERT ON b_second FOR EACH ROW EXECUTE FUNCTION keep();
            CREATE ROLE {role} LOGIN;
            """);
        await WithConnectionAsync(db.TargetConnectionString, async target =>
        {
            await TargetState.EnsureAsync(target, CancellationToken.None);
            await TargetState.DisableUserTriggersAsync(target, CancellationToken.None);
        });
        // The cutover's role owns the first table but no longer the second (changed on the target since).
        await Sql.ExecAsync(db.TargetConnectionString, $"""
            ALTER TABLE a_first OWNER TO {role};
            GRANT USAGE ON SCHEMA replicator TO {role}; GRANT SELECT, DELETE ON replicator.disabled_triggers TO {role};
            """);

        var asRole = new NpgsqlConnectionStringBuilder(db.TargetConnectionString) { Username = role }.ConnectionString;
        await WithConnectionAsync(asRole, async target =>
        {
            var e = await Assert.ThrowsAsync<PostgresException>(() => TargetState.RestoreTriggersAsync(target, CancellationToken.None));
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, e.SqlState);
        });

        // None is enabled while the applier resumes (it would fire it a second time), and each is still there to restore.
        Assert.Equal(["first_audit D", "second_audit D"], await TriggerModesAsync(db.TargetConnectionString));
        Assert.Equal(2L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM replicator.disabled_triggers"));
    }
}
