using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

public class MultisetComparerTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task The_two_sides_hash_streams_are_merged_into_exactly_the_rows_whose_copies_differ_in_number()
    {
        await using var db = await fixture.CreateDatabasesAsync("multiset merge");
        const string Table = "CREATE TABLE public.bag (a int, b text); INSERT INTO public.bag SELECT g % 50000, 'same' FROM generate_series(1, 200000) g;";
        await Sql.ExecAsync(db.SourceConnectionString, Table + """
            INSERT INTO public.bag VALUES (-1, 'only on the source'), (-2, 'twice on the source'), (-2, 'twice on the source'), (-3, 'three here, one there'), (-3, 'three here, one there'), (-3, 'three here, one there');
            """);
        await Sql.ExecAsync(db.TargetConnectionString, Table + """
            INSERT INTO public.bag VALUES (-3, 'three here, one there'), (-4, 'only on the target'), (-4, 'only on the target');
            DELETE FROM public.bag WHERE ctid = (SELECT min(ctid) FROM public.bag WHERE a = 7);
            """);

        await using var source = new NpgsqlConnection(db.SourceConnectionString);
        await using var target = new NpgsqlConnection(db.TargetConnectionString);
        await source.OpenAsync();
        await target.OpenAsync();
        var match = new TableMatch((await TableCatalog.LoadAsync(source, default)).Single(t => t.Name == "bag"), (await TableCatalog.LoadAsync(target, default)).Single(t => t.Name == "bag"));

        var hashes = await MultisetComparer.DifferingHashesAsync(new ConnectionPair(source, target), match, default);

        Assert.Equal(hashes.OrderBy(h => h.Hash).Select(h => h.Hash), hashes.Select(h => h.Hash));
        var rows = await MultisetComparer.DescribeAsync(new ConnectionPair(source, target), match, hashes, default);
        var found = rows.Select(r => $"{r.Kind} {r.Row!["a"]} {r.Row!["b"]} x{r.Count}").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(
        [
            "extra -4 only on the target x2",
            "missing -1 only on the source x1",
            "missing -2 twice on the source x2",
            "missing -3 three here, one there x2",
            "missing 7 same x1",
        ], found);
    }
}
