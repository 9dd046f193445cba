using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Configuration;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

public class VerifyTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private static (ConnectionInfo Source, ConnectionInfo Target) Connections(TestDatabases db) =>
        (ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"));

    private static Task<VerifyReport> PassAsync(TestDatabases db, VerifyRequest request)
    {
        var (source, target) = Connections(db);
        return Verification.RunPassAsync(request, source, target, NullLoggerFactory.Instance, CancellationToken.None);
    }

    [Fact]
    public async Task Identical_databases_pass_with_exit_0_and_a_json_report_even_when_the_target_formats_values_differently()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_same");
        await VerifyData.LoadBothAsync(db);
        // Same rows, different physical layout: columns in another order, a dropped column on one side.
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.reordered (id int PRIMARY KEY, a text, b int); INSERT INTO public.reordered SELECT g, 'a' || g, g FROM generate_series(1, 300) g;
            CREATE TABLE public.dropped (id int PRIMARY KEY, junk text, v text); INSERT INTO public.dropped SELECT g, 'junk', 'v' || g FROM generate_series(1, 300) g;
            ALTER TABLE public.dropped DROP COLUMN junk;
            """);
        await Sql.ExecAsync(db.TargetConnectionString, """
            CREATE TABLE public.reordered (b int, id int PRIMARY KEY, a text); INSERT INTO public.reordered SELECT g, g, 'a' || g FROM generate_series(1, 300) g;
            CREATE TABLE public.dropped (id int PRIMARY KEY, v text); INSERT INTO public.dropped SELECT g, 'v' || g FROM generate_series(1, 300) g;
            """);
        var json = Path.Combine(Path.GetTempPath(), $"verify-{Guid.NewGuid():N}.json");

        var result = await ProcessRunner.ReplicatorAsync(["verify", "--source", db.SourceUri, "--target", db.TargetUri, "--chunk-rows", "100", "--bisect-rows", "50", "--report-json", json]);

        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Contains("result: IDENTICAL", result.Stdout, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(json));
        File.Delete(json);
        Assert.Equal("identical", doc.RootElement.GetProperty("result").GetString());
        Assert.Equal("plain", doc.RootElement.GetProperty("cut").GetProperty("kind").GetString());
        var tables = doc.RootElement.GetProperty("tables").EnumerateArray().ToDictionary(t => t.GetProperty("table").GetString()!);
        Assert.Equal(["Odd \"Schema\".x.Tä ble", "public.dropped", "public.items", "public.nokey", "public.pairs", "public.reordered"], tables.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(1000, tables["public.items"].GetProperty("source_rows").GetInt64());
        Assert.True(tables["public.items"].GetProperty("chunks").GetInt32() >= 5, "1000 rows in buckets of about 50 make several chunks");
        Assert.Equal("multiset", tables["public.nokey"].GetProperty("method").GetString());
        Assert.Equal(0, doc.RootElement.GetProperty("row_differences").GetInt64());
    }

    [Fact]
    public async Task Injected_differences_are_reported_with_exactly_their_keys_and_columns_and_repair_fixes_them()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_diff");
        await VerifyData.LoadBothAsync(db);
        await Sql.ExecAsync(db.TargetConnectionString, """
            UPDATE public.items SET name = 'changed' WHERE id = 10;
            DELETE FROM public.items WHERE id = 20;
            INSERT INTO public.items (id, name) VALUES (5000, 'extra');
            UPDATE public.items SET price = NULL WHERE id = 30;
            UPDATE public.items SET ratio = '5.714285714285715'::float8 WHERE id = 40; -- 40/7 is 5.714285714285714: one ulp up
            UPDATE public.items SET at = at + interval '1 microsecond' WHERE id = 50;
            UPDATE public.items SET big = big || 'x' WHERE id = 600;
            INSERT INTO public.nokey VALUES (9, 'only on target');
            UPDATE public.pairs SET v = 'other' WHERE a = 3 AND b = 'k3';
            UPDATE "Odd ""Schema"".x"."Tä ble" SET "first name" = 'renamed' WHERE "Id" = 7;
            """);
        // The float change must really be in the last bit only.
        Assert.NotEqual(
            await Sql.ScalarAsync<double>(db.SourceConnectionString, "SELECT ratio FROM public.items WHERE id = 40"),
            await Sql.ScalarAsync<double>(db.TargetConnectionString, "SELECT ratio FROM public.items WHERE id = 40"));

        var report = await PassAsync(db, new VerifyRequest { ChunkRows = 100, BisectRows = 8 });

        Assert.False(report.Identical);
        var items = report.Tables.Single(t => t.Table == "public.items");
        var found = items.Rows.Select(r => $"{r.Kind} id={r.Key!["id"]} {string.Join(",", r.Columns ?? [])}".Trim()).ToList();
        Assert.Equal(
            ["changed id=10 name", "missing id=20", "changed id=30 price", "changed id=40 ratio", "changed id=50 at", "changed id=600 big", "extra id=5000"],
            found.OrderBy(f => int.Parse(f.Split('=')[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Equal(7, items.Differences);
        Assert.Equal("item 10", items.Rows.Single(r => r.Key!["id"] == "10").SourceValues!["name"]);
        Assert.Null(items.Rows.Single(r => r.Key!["id"] == "30").TargetValues!["price"]);

        var pairs = report.Tables.Single(t => t.Table == "public.pairs");
        var pair = Assert.Single(pairs.Rows);
        Assert.Equal(("3", "k3", "v"), (pair.Key!["a"], pair.Key["b"], Assert.Single(pair.Columns!)));

        var odd = report.Tables.Single(t => t.Table == "Odd \"Schema\".x.Tä ble");
        var oddRow = Assert.Single(odd.Rows);
        Assert.Equal("7", oddRow.Key!["Id"]);
        Assert.Equal(["first name", "doubled"], oddRow.Columns);

        var nokey = report.Tables.Single(t => t.Table == "public.nokey");
        var extra = Assert.Single(nokey.Rows);
        Assert.Equal((RowDifference.Extra, "9", "only on target", 1L), (extra.Kind, extra.Row!["a"], extra.Row["b"], extra.Count));

        var repaired = await PassAsync(db, new VerifyRequest { ChunkRows = 100, BisectRows = 8, Repair = true });

        Assert.Equal(report.RowDifferences, repaired.RowDifferences);
        Assert.NotNull(repaired.Repair);
        Assert.Equal(0, repaired.Repair!.RemainingDifferences);
        Assert.True(repaired.Repair.ReplicaRole);
        Assert.True(repaired.Repaired);
        var after = await PassAsync(db, new VerifyRequest { ChunkRows = 100 });
        Assert.True(after.Identical, after.ToText());
        Assert.Equal(1000, after.Tables.Single(t => t.Table == "public.items").TargetRows);
    }

    [Fact]
    public async Task An_inheritance_parent_is_compared_without_its_childrens_rows_and_repair_leaves_child_rows_in_the_child()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_inherits");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, """
                CREATE TABLE public.animals (id int PRIMARY KEY, name text);
                CREATE TABLE public.dogs (breed text) INHERITS (public.animals);
                ALTER TABLE public.dogs ADD PRIMARY KEY (id);
                INSERT INTO public.animals SELECT g, 'animal ' || g FROM generate_series(1, 50) g;
                INSERT INTO public.dogs SELECT g, 'dog ' || g, 'mutt' FROM generate_series(101, 150) g;
                """);
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.dogs SET name = 'drift' WHERE id = 120");

        var report = await PassAsync(db, new VerifyRequest { Repair = true });

        var animals = report.Tables.Single(t => t.Table == "public.animals");
        Assert.Equal((50L, 0L), (animals.SourceRows, animals.Differences));
        Assert.Equal(1, report.Tables.Single(t => t.Table == "public.dogs").Differences);
        Assert.True(report.Repaired, report.ToText());
        Assert.Equal(["50|50"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT (SELECT count(*) FROM ONLY public.animals), (SELECT count(*) FROM public.dogs)"));
    }
}
