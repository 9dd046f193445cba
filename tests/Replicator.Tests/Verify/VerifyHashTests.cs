using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

/// <summary>
/// The typed row hash (PostgreSQL 14+: <c>hash_record_extended</c> over the columns whose type hashes
/// exactly like its text, the others through their text) must find every difference the text hash
/// finds: values that are equal for their type's hash function but print differently, and values
/// swapped between two rows (the record hash combines fields linearly, so unmixed sums would cancel).
/// </summary>
public class VerifyHashTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Schema = """
        CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
        CREATE TABLE public.exact (
            id int PRIMARY KEY,
            n numeric, f float8, iv interval, arr int[], j jsonb, bp bpchar, ci text COLLATE nocase, ch char(4), vc varchar(10),
            at timestamptz, u uuid, b bytea, ok bool);
        INSERT INTO public.exact
        SELECT g, 1.0, 0, interval '1 day', '{1,2}', '{"a": 1.0}', 'x', 'abc', 'ab', 'v' || g,
               timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', lpad(to_hex(g), 32, '0')::uuid, '\x0102', g % 2 = 0
        FROM generate_series(1, 20) g;
        CREATE TABLE public.swap (id int PRIMARY KEY, v int);
        INSERT INTO public.swap VALUES (1, 1), (2, 2);
        """;

    [Fact]
    public async Task Values_equal_for_their_hash_function_but_printed_differently_and_values_swapped_between_rows_are_differences()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_hash");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, Schema);
        await Sql.ExecAsync(db.TargetConnectionString, """
            UPDATE public.exact SET n = 1.00 WHERE id = 1;
            UPDATE public.exact SET f = '-0' WHERE id = 2;
            UPDATE public.exact SET iv = interval '24 hours' WHERE id = 3;
            UPDATE public.exact SET arr = '[0:1]={1,2}' WHERE id = 4;
            UPDATE public.exact SET j = '{"a": 1.00}' WHERE id = 5;
            UPDATE public.exact SET bp = 'x ' WHERE id = 6;
            UPDATE public.exact SET ci = 'ABC' WHERE id = 7;
            UPDATE public.exact SET ch = 'AB' WHERE id = 8;
            UPDATE public.exact SET vc = 'V9' WHERE id = 9;
            UPDATE public.exact SET at = at + interval '1 microsecond' WHERE id = 10;
            UPDATE public.exact SET b = '\x0103' WHERE id = 11;
            UPDATE public.exact SET ok = NOT ok WHERE id = 12;
            UPDATE public.swap SET v = 3 - v;
            """);
        // Each of these is equal for the type's own comparison, yet prints differently.
        Assert.True(await Sql.ScalarAsync<bool>(db.TargetConnectionString,
            "SELECT 1.0 = 1.00::numeric AND 0::float8 = '-0'::float8 AND interval '1 day' = interval '24 hours' AND 'x'::bpchar = 'x '::bpchar " +
            "AND '{\"a\": 1.0}'::jsonb = '{\"a\": 1.00}'::jsonb AND 'abc' = 'ABC' COLLATE nocase " +
            "AND hash_array_extended('{1,2}'::int[], 0) = hash_array_extended('[0:1]={1,2}'::int[], 0)"));

        IReadOnlyList<TableInfo> tables;
        await using (var conn = new NpgsqlConnection(db.SourceConnectionString))
        {
            await conn.OpenAsync();
            tables = await TableCatalog.LoadAsync(conn, CancellationToken.None);
        }

        var exactTable = tables.Single(t => t.DisplayName == "public.exact");
        var match = new TableMatch(exactTable, exactTable, typedHash: true);
        Assert.True(match.Source.Typed);
        Assert.Equal(
            "hash_record_extended(ROW(\"id\", \"ci\" COLLATE \"C\", \"ch\" COLLATE \"C\", \"vc\" COLLATE \"C\", \"at\", \"u\", \"b\", \"ok\", " +
            "ROW(\"n\", \"f\", \"iv\", \"arr\", \"j\", \"bp\")::text COLLATE \"C\"), 0)",
            match.Source.RawHash);

        var report = await Verification.RunPassAsync(new VerifyRequest(),
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, CancellationToken.None);

        var exact = report.Tables.Single(t => t.Table == "public.exact");
        Assert.Equal(
            ["1 n", "2 f", "3 iv", "4 arr", "5 j", "6 bp", "7 ci", "8 ch", "9 vc", "10 at", "11 b", "12 ok"],
            exact.Rows.Select(r => $"{r.Key!["id"]} {string.Join(",", r.Columns!)}").OrderBy(r => int.Parse(r.Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.All(exact.Rows, r => Assert.Equal(RowDifference.Changed, r.Kind));
        var swap = report.Tables.Single(t => t.Table == "public.swap");
        Assert.Equal(["1 v", "2 v"], swap.Rows.Select(r => $"{r.Key!["id"]} {string.Join(",", r.Columns!)}").Order(StringComparer.Ordinal));
        Assert.Equal("x ", exact.Rows.Single(r => r.Key!["id"] == "6").TargetValues!["bp"]);

        var repaired = await Verification.RunPassAsync(new VerifyRequest { Repair = true },
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, CancellationToken.None);
        Assert.Equal(0, repaired.Repair!.RemainingDifferences);
        Assert.Equal("x|1", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT bp::text || '|' || length(concat(bp)) FROM public.exact WHERE id = 6"));
    }

    [Fact]
    public async Task A_column_whose_type_differs_between_the_sides_is_compared_by_its_text()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_hash_types");
        await Sql.ExecAsync(db.SourceConnectionString,
            "CREATE TABLE public.t (id int PRIMARY KEY, v int, w text); INSERT INTO public.t SELECT g, g * 7, 'w' || g FROM generate_series(1, 5000) g");
        await Sql.ExecAsync(db.TargetConnectionString,
            "CREATE TABLE public.t (id int PRIMARY KEY, v bigint, w varchar(20)); INSERT INTO public.t SELECT g, g * 7, 'w' || g FROM generate_series(1, 5000) g");

        var report = await Verification.RunPassAsync(new VerifyRequest { SchemaCheck = false, BisectRows = 100 },
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, CancellationToken.None);

        Assert.True(report.Identical, report.ToText());
        Assert.Equal(5000, report.Tables.Single().TargetRows);
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.t SET v = v + 1 WHERE id = 4321");
        var changed = await Verification.RunPassAsync(new VerifyRequest { SchemaCheck = false, BisectRows = 100 },
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, CancellationToken.None);
        var row = Assert.Single(changed.Tables.Single().Rows);
        Assert.Equal(("4321", "v"), (row.Key!["id"], Assert.Single(row.Columns!)));
    }
}
