using Microsoft.Extensions.Logging;
using Npgsql;
using Replicator.Core.Configuration;
using Replicator.Snapshotter;
using Replicator.Tests.Fixtures;
using static Replicator.Tests.Snapshot.SnapshotTestHelpers;

namespace Replicator.Tests.Snapshot;

/// <summary>Foreign keys to small tables are created before the data (SchemaCopy.EarlyForeignKeysAsync); everything else after it.</summary>
public class SnapshotForeignKeyTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Schema = """
        CREATE TABLE public.branches (bid int PRIMARY KEY, name text);
        CREATE TABLE public.codes (code text NOT NULL, note text);
        CREATE UNIQUE INDEX codes_code ON public.codes (code);
        ALTER TABLE public.codes REPLICA IDENTITY USING INDEX codes_code;
        CREATE TABLE public."Accounts ü" (aid int PRIMARY KEY, bid int REFERENCES public.branches, code text CONSTRAINT "code → codes" REFERENCES public.codes (code), abalance int);
        CREATE TABLE public.notes (id int PRIMARY KEY, aid int);
        CREATE TABLE public.staff (id int PRIMARY KEY, boss int REFERENCES public.staff);
        INSERT INTO public.staff SELECT g, nullif(g / 2, 0) FROM generate_series(1, 100) g;
        INSERT INTO public.branches SELECT g, 'b' || g FROM generate_series(1, 10) g;
        INSERT INTO public.codes SELECT 'c' || g, 'n' FROM generate_series(1, 20) g;
        INSERT INTO public."Accounts ü" SELECT g, g % 10 + 1, 'c' || (g % 20 + 1), 0 FROM generate_series(1, 20000) g;
        -- a key the source does not hold valid, with a row that breaks it: restored NOT VALID after the data
        INSERT INTO public.notes VALUES (1, 5), (2, 999999);
        ALTER TABLE public.notes ADD CONSTRAINT notes_aid_fkey FOREIGN KEY (aid) REFERENCES public."Accounts ü" NOT VALID;
        """;

    private const string ForeignKeys = "SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace";

    private static async Task<(SnapshotResult Result, CapturingLoggerProvider Log)> SnapshotAsync(TestDatabases db, string? targetUri = null, bool validate = false)
    {
        var options = new ReplicatorOptions { SlotName = "fk_" + Guid.NewGuid().ToString("N")[..8], PublicationName = "fk_pub" };
        options.Snapshot.ValidateForeignKeys = validate;
        var log = new CapturingLoggerProvider();
        using var factory = LoggerFactory.Create(b => b.AddProvider(log));
        var result = await SnapshotRunner.RunAsync(options, ConnectionInfo.Parse(db.SourceUri, "Source"), ConnectionInfo.Parse(targetUri ?? db.TargetUri, "Target"),
            factory, null, CancellationToken.None);
        return (result, log);
    }

    [Fact]
    public async Task Foreign_keys_to_small_tables_are_created_before_the_data_valid_and_enforced_and_a_not_valid_one_stays_not_valid()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot fk early");
        await Sql.ExecAsync(db.SourceConnectionString, Schema);

        var (result, log) = await SnapshotAsync(db);

        Assert.True(log.Contains("Foreign keys to small tables created before the data: 3 (6 entries built now"), log.Text);
        Assert.Equal("code → codes:true,Accounts ü_bid_fkey:true,notes_aid_fkey:false,staff_boss_fkey:true".Split(',').Order(StringComparer.Ordinal),
            (await Sql.ScalarAsync<string>(db.TargetConnectionString, ForeignKeys))!.Split(',').Order(StringComparer.Ordinal));
        Assert.Equal(await Sql.ScalarAsync<string>(db.SourceConnectionString, ForeignKeys), await Sql.ScalarAsync<string>(db.TargetConnectionString, ForeignKeys));
        Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
        // every entry built once and marked: the early ones are not built again after the data
        Assert.Equal(result.PostDataEntries, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.snapshot_postdata"));
        Assert.Equal(9, result.PostDataEntries); // 4 primary keys, 1 unique index, 3 valid (one to its own table) and 1 not valid foreign key
        // the keys hold for ordinary sessions on the target
        var violation = await Assert.ThrowsAsync<PostgresException>(() => Sql.ExecAsync(db.TargetConnectionString, "INSERT INTO public.\"Accounts ü\" VALUES (30000, 11, 'c1', 0)"));
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, violation.SqlState);
    }

    [Fact]
    public async Task Asked_to_validate_or_without_the_right_to_skip_checks_every_foreign_key_is_built_after_the_data()
    {
        await using (var db = await fixture.CreateDatabasesAsync("snapshot fk validate"))
        {
            await Sql.ExecAsync(db.SourceConnectionString, Schema);
            var (_, log) = await SnapshotAsync(db, validate: true);
            Assert.False(log.Contains("created before the data"), log.Text);
            Assert.Equal(await Sql.ScalarAsync<string>(db.SourceConnectionString, ForeignKeys), await Sql.ScalarAsync<string>(db.TargetConnectionString, ForeignKeys));
            Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
        }

        await using (var db = await fixture.CreateDatabasesAsync("snapshot fk no superuser"))
        {
            await Sql.ExecAsync(db.SourceConnectionString, Schema);
            var role = "app_" + Guid.NewGuid().ToString("N")[..8];
            await Sql.ExecAsync(db.TargetConnectionString, $"CREATE ROLE {role} LOGIN; GRANT ALL ON DATABASE \"{db.Name}\" TO {role}; GRANT ALL ON SCHEMA public TO {role}");
            var (_, log) = await SnapshotAsync(db, $"postgres://{role}@127.0.0.1:{db.TargetCluster.Port}/{db.Name}");
            Assert.False(log.Contains("created before the data"), log.Text);
            Assert.Equal(await Sql.ScalarAsync<string>(db.SourceConnectionString, ForeignKeys), await Sql.ScalarAsync<string>(db.TargetConnectionString, ForeignKeys));
            Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
        }
    }
}
