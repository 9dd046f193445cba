using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Configuration;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

/// <summary>
/// Targets that drifted from the source in ways the schema check would show but cutover and
/// <c>replicator run</c> verify without it (SchemaCheck off): the data comparison must catch them itself.
/// </summary>
public class VerifyTargetDriftTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    // items: a single-column key (buckets, block slices); pairs: a composite key (key ranges, bisection).
    private const string SourceSchema = """
        CREATE TABLE public.items (id int PRIMARY KEY, v text);
        CREATE TABLE public.pairs (a int, b text, v text, PRIMARY KEY (a, b));
        """;

    private const string Rows = """
        INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, 1000) g;
        INSERT INTO public.pairs SELECT g / 10, 'k' || g, 'v' || g FROM generate_series(1, 2000) g;
        ANALYZE;
        """;

    private static Task<VerifyReport> PassAsync(TestDatabases db, VerifyRequest request) =>
        Verification.RunPassAsync(request,
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, CancellationToken.None);

    private static VerifyRequest Request(bool repair = false) => new() { SchemaCheck = false, ChunkRows = 500, BisectRows = 50, Repair = repair };

    [Fact]
    public async Task A_key_held_twice_by_a_target_without_the_primary_key_is_one_extra_row_and_repair_leaves_one()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_dupkey");
        await Sql.ExecAsync(db.SourceConnectionString, SourceSchema + Rows);
        // The schema as pg_dump's pre-data section leaves it: NOT NULL, but no primary key yet.
        await Sql.ExecAsync(db.TargetConnectionString, """
            CREATE TABLE public.items (id int NOT NULL, v text);
            CREATE TABLE public.pairs (a int NOT NULL, b text NOT NULL, v text);
            """ + Rows);
        await Sql.ExecAsync(db.TargetConnectionString, "INSERT INTO public.items VALUES (500, 'v500'); INSERT INTO public.pairs VALUES (100, 'k1000', 'v1000')");

        var report = await PassAsync(db, Request());

        Assert.False(report.Identical, report.ToText());
        foreach (var (table, key) in new[] { ("public.items", "500"), ("public.pairs", "100") })
        {
            var t = report.Tables.Single(t => t.Table == table);
            Assert.True(t.Differences == 1, report.ToText());
            var row = Assert.Single(t.Rows);
            Assert.Equal((RowDifference.Extra, key, 1L, 2L), (row.Kind, row.Key!.First().Value, row.SourceRowsWithKey, row.TargetRowsWithKey));
        }

        var repaired = await PassAsync(db, Request(repair: true));
        Assert.True(repaired.Repaired, repaired.ToText());
        var after = await PassAsync(db, Request());
        Assert.True(after.Identical, after.ToText());
        Assert.Equal(["1"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT count(*) FROM public.items WHERE id = 500"));
    }

    [Fact]
    public async Task A_target_row_with_a_null_key_column_is_an_extra_row_in_bucketed_and_key_range_tables()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_nullkey");
        await Sql.ExecAsync(db.SourceConnectionString, SourceSchema + Rows);
        await Sql.ExecAsync(db.TargetConnectionString, """
            CREATE TABLE public.items (id int, v text);
            CREATE TABLE public.pairs (a int, b text, v text);
            """ + Rows);
        // (150, NULL) sorts inside a middle key range by its first column: it must be counted once.
        await Sql.ExecAsync(db.TargetConnectionString, """
            INSERT INTO public.items VALUES (NULL, 'ghost');
            INSERT INTO public.pairs VALUES (NULL, 'k1', 'ghost'), (150, NULL, 'ghost');
            """);

        var report = await PassAsync(db, Request());

        Assert.False(report.Identical, report.ToText());
        var items = report.Tables.Single(t => t.Table == "public.items");
        Assert.Equal((1000L, 1001L, 1L), (items.SourceRows, items.TargetRows, items.Differences));
        var ghost = Assert.Single(items.Rows);
        Assert.Equal((RowDifference.Extra, (string?)null), (ghost.Kind, ghost.Key!["id"]));
        var pairs = report.Tables.Single(t => t.Table == "public.pairs");
        Assert.Equal((2000L, 2002L, 2L), (pairs.SourceRows, pairs.TargetRows, pairs.Differences));
        Assert.Equal(["extra a= b=k1", "extra a=150 b="],
            pairs.Rows.Select(r => $"{r.Kind} a={r.Key!["a"]} b={r.Key["b"]}").Order(StringComparer.Ordinal));

        var repaired = await PassAsync(db, Request(repair: true));
        Assert.True(repaired.Repaired, repaired.ToText());
        var after = await PassAsync(db, Request());
        Assert.True(after.Identical, after.ToText());
    }

    [Fact]
    public async Task A_source_column_missing_on_the_target_is_a_table_problem_even_without_the_schema_check()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_srccolumn");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, SourceSchema + Rows);
        // DDL is not replicated: a column added on the source with a default and no later writes.
        await Sql.ExecAsync(db.SourceConnectionString, "ALTER TABLE public.items ADD COLUMN flag bool DEFAULT true");
        // A column only the target has is not compared (docs/verify.md says why).
        await Sql.ExecAsync(db.TargetConnectionString, "ALTER TABLE public.pairs ADD COLUMN note text");

        var report = await PassAsync(db, Request());

        Assert.False(report.Identical, report.ToText());
        var items = report.Tables.Single(t => t.Table == "public.items");
        Assert.Equal("column flag missing on the target: its values are not compared; add it to the target", items.Problem);
        var pairs = report.Tables.Single(t => t.Table == "public.pairs");
        Assert.Equal((null, 0L), (pairs.Problem, pairs.Differences));
        Assert.Contains("column flag missing on the target", report.ToText(), StringComparison.Ordinal);
    }
}
