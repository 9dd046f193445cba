using Npgsql;
using Replicator.Cutover;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Cutover;

public class SequenceSyncTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Sequences = """
        CREATE SEQUENCE drawn;
        CREATE SEQUENCE restarted;
        CREATE SEQUENCE set_not_called;
        CREATE SEQUENCE never_drawn START 50;
        CREATE SEQUENCE downwards INCREMENT -1;
        CREATE SEQUENCE downwards_not_called INCREMENT -5;
        """;

    private static async Task<int> SyncAsync(TestDatabases db, string? sourceConnectionString = null)
    {
        await using var from = new NpgsqlConnection(sourceConnectionString ?? db.SourceConnectionString);
        await using var to = new NpgsqlConnection(db.TargetConnectionString);
        await from.OpenAsync();
        await to.OpenAsync();
        return await SequenceSync.SyncAsync(from, to, CancellationToken.None);
    }

    [Fact]
    public async Task The_target_hands_out_next_what_the_source_would_hand_out_next_whether_or_not_the_last_value_was_called()
    {
        await using var db = await fixture.CreateDatabasesAsync("seq_called");
        await Sql.ExecAsync(db.SourceConnectionString, Sequences + """
            SELECT nextval('drawn') FROM generate_series(1, 3);
            SELECT nextval('restarted') FROM generate_series(1, 3);
            ALTER SEQUENCE restarted RESTART WITH 1000;
            SELECT setval('set_not_called', 2000, false);
            SELECT nextval('downwards') FROM generate_series(1, 3);
            SELECT setval('downwards_not_called', -500, false);
            """);
        await Sql.ExecAsync(db.TargetConnectionString, Sequences);

        Assert.Equal(6, await SyncAsync(db));

        // What the source would hand out next, and the target must too (not a value the source already handed out).
        string[] expected = ["drawn 4", "restarted 1000", "set_not_called 2000", "never_drawn 50", "downwards -4", "downwards_not_called -500"];
        foreach (var line in expected)
        {
            var name = line.Split(' ')[0];
            Assert.Equal(line, name + " " + await Sql.ScalarAsync<long>(db.TargetConnectionString, $"SELECT nextval('{name}')"));
            Assert.Equal(line, name + " " + await Sql.ScalarAsync<long>(db.SourceConnectionString, $"SELECT nextval('{name}')"));
        }
    }

    [Fact]
    public async Task A_sequence_the_role_may_not_read_on_the_side_being_left_is_an_error_naming_it_and_the_grant()
    {
        await using var db = await fixture.CreateDatabasesAsync("seq_denied");
        var role = "seq_" + Guid.NewGuid().ToString("N")[..8];
        await Sql.ExecAsync(db.SourceConnectionString, $"""
            CREATE SEQUENCE readable; CREATE SEQUENCE "Secret seq";
            SELECT setval('"Secret seq"', 70);
            CREATE ROLE {role} LOGIN; GRANT SELECT ON SEQUENCE readable TO {role};
            """);
        await Sql.ExecAsync(db.TargetConnectionString, """CREATE SEQUENCE readable; CREATE SEQUENCE "Secret seq";""");

        var asRole = new NpgsqlConnectionStringBuilder(db.SourceConnectionString) { Username = role }.ConnectionString;
        // Caught by the preconditions, before anything is fenced.
        await using (var from = new NpgsqlConnection(asRole))
        await using (var to = new NpgsqlConnection(db.TargetConnectionString))
        {
            await from.OpenAsync();
            await to.OpenAsync();
            var check = await Preconditions.CheckSequencesAsync(from, to, CancellationToken.None);
            Assert.False(check.Ok, check.Detail);
            Assert.Contains("may not read public.Secret seq", check.Detail, StringComparison.Ordinal);
            Assert.Contains("GRANT SELECT ON SEQUENCE", check.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain("readable", check.Detail, StringComparison.Ordinal);
        }

        var e = await Assert.ThrowsAsync<CutoverException>(() => SyncAsync(db, asRole));
        Assert.Contains($"GRANT SELECT ON SEQUENCE \"public\".\"Secret seq\" TO \"{role}\"", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("readable", e.Message, StringComparison.Ordinal);
        // Nothing was set on the target.
        Assert.Equal(1L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT nextval('\"Secret seq\"')"));
    }

    [Fact]
    public async Task Many_sequences_are_read_in_batches_each_value_to_its_own_sequence()
    {
        await using var db = await fixture.CreateDatabasesAsync("seq_many");
        const string create = "DO $$ BEGIN FOR i IN 1..1201 LOOP EXECUTE format('CREATE SEQUENCE s%s', i); END LOOP; END $$";
        await Sql.ExecAsync(db.SourceConnectionString, create + "; DO $$ BEGIN FOR i IN 1..1201 LOOP PERFORM setval(format('s%s', i), i * 10, i % 2 = 0); END LOOP; END $$");
        await Sql.ExecAsync(db.TargetConnectionString, create);

        Assert.Equal(1201, await SyncAsync(db));

        // Every one, across the batch boundaries, holds its own value and is_called (pg_sequences shows
        // last_value only when it was called).
        Assert.Equal(
            await Sql.RowsAsync(db.SourceConnectionString, "SELECT sequencename || ':' || coalesce(last_value::text, 'never') FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"),
            await Sql.RowsAsync(db.TargetConnectionString, "SELECT sequencename || ':' || coalesce(last_value::text, 'never') FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"));
    }
}
