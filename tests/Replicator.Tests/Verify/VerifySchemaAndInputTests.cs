using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Configuration;
using Replicator.Core.Metrics;
using Replicator.Tests.Fixtures;
using Replicator.Verifier;

namespace Replicator.Tests.Verify;

public class VerifySchemaAndInputTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private static Task<VerifyReport> PassAsync(TestDatabases db, VerifyRequest request) =>
        Verification.RunPassAsync(request,
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            NullLoggerFactory.Instance, CancellationToken.None);

    [Fact]
    public async Task Schema_differences_are_reported_and_a_lagging_sequence_value_is_only_info()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_schema");
        await VerifyData.LoadBothAsync(db);
        await Sql.ExecAsync(db.SourceConnectionString, "SELECT nextval(pg_get_serial_sequence('\"Odd \"\"Schema\"\".x\".\"Tä ble\"', 'Id'))");

        var lagging = await PassAsync(db, new VerifyRequest());

        Assert.True(lagging.Identical, lagging.ToText());
        var info = Assert.Single(lagging.Schema);
        Assert.Equal(("sequence", SchemaDifference.Info), (info.ObjectKind, info.Severity));
        Assert.Contains("value: source 51, target 50", info.Problem, StringComparison.Ordinal);

        await Sql.ExecAsync(db.TargetConnectionString, """
            DROP INDEX public.items_name;
            ALTER TABLE public.items ADD CONSTRAINT price_positive CHECK (price >= 0);
            ALTER TABLE public.pairs ALTER COLUMN v TYPE varchar(50);
            ALTER TABLE public.nokey ADD COLUMN c int;
            CREATE TABLE public.only_target (x int);
            CREATE SEQUENCE public.items_seq INCREMENT 5;
            """);
        await Sql.ExecAsync(db.SourceConnectionString, "CREATE SEQUENCE public.items_seq INCREMENT 1");

        var report = await PassAsync(db, new VerifyRequest());

        Assert.False(report.Identical);
        var differences = report.Schema.Where(s => s.Severity == SchemaDifference.Difference).Select(s => $"{s.ObjectKind} {s.Object}").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(
            ["column public.nokey.c", "column public.pairs.v", "constraint public.items price_positive", "index public.items_name", "sequence public.items_seq", "table public.only_target"],
            differences);
        Assert.Contains("missing on target (CREATE INDEX items_name ON public.items USING btree (name))", report.Schema.Single(s => s.Object == "public.items_name").Problem, StringComparison.Ordinal);
        Assert.Equal("source text, target character varying(50)", report.Schema.Single(s => s.Object == "public.pairs.v").Problem);
        // The data is still compared on the columns both sides have, and is equal.
        Assert.Equal(0, report.RowDifferences);
    }

    [Fact]
    public async Task A_search_path_set_on_one_side_only_makes_no_schema_difference()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_searchpath");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, """
                CREATE SCHEMA app;
                CREATE TYPE app.mood AS ENUM ('ok', 'sad');
                CREATE TABLE public.feelings (id int PRIMARY KEY, m app.mood CHECK (m <> 'sad'::app.mood));
                CREATE INDEX feelings_m ON public.feelings (m) WHERE m = 'ok'::app.mood;
                INSERT INTO public.feelings SELECT g, 'ok' FROM generate_series(1, 100) g;
                """);
        // Names outside the search path come out schema-qualified (format_type, pg_get_*def).
        await Sql.ExecAsync(db.TargetConnectionString, $"ALTER DATABASE \"{db.Name}\" SET search_path = app, public");

        var report = await PassAsync(db, new VerifyRequest());

        Assert.True(report.Identical, report.ToText());
        Assert.Empty(report.Schema);
    }

    [Fact]
    public async Task A_key_of_an_extension_type_citext_is_compared_and_its_difference_found_by_key()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_citext");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, """
                CREATE EXTENSION citext;
                CREATE TABLE public.tags (name citext PRIMARY KEY, n int);
                INSERT INTO public.tags SELECT CASE WHEN g % 2 = 0 THEN 'Tag' ELSE 'tag' END || g, g FROM generate_series(1, 40000) g;
                ANALYZE;
                """);
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.tags SET n = -1 WHERE name = 'TAG20000'");

        var report = await PassAsync(db, new VerifyRequest { ChunkRows = 5000 });

        Assert.False(report.Identical, report.ToText());
        var tags = report.Tables.Single(t => t.Table == "public.tags");
        Assert.Null(tags.Problem);
        Assert.Equal(1, tags.Differences);
        Assert.Equal("Tag20000", Assert.Single(tags.Rows).Key!["name"]);
    }

    [Fact]
    public async Task Keys_of_types_without_min_and_max_ltree_and_isn_are_chunked_and_their_differences_found()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_ltree");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, """
                CREATE EXTENSION ltree;
                CREATE EXTENSION isn;
                CREATE TABLE public.paths (path ltree PRIMARY KEY, n int);
                INSERT INTO public.paths SELECT ('top.b' || (g % 97) || '.leaf' || g)::ltree, g FROM generate_series(1, 40000) g;
                CREATE TABLE public.books (isbn isbn13, copy int, n int, PRIMARY KEY (isbn, copy));
                INSERT INTO public.books
                    SELECT (d.s || (10 - (SELECT sum(substr(d.s, i, 1)::int * CASE WHEN i % 2 = 1 THEN 1 ELSE 3 END) FROM generate_series(1, 12) i) % 10) % 10)::isbn13, c, d.g
                    FROM (SELECT g, '978' || lpad(g::text, 9, '0') AS s FROM generate_series(1, 6000) g) d, generate_series(1, 2) c;
                ANALYZE;
                """);
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.paths SET n = -1 WHERE path = 'top.b18.leaf20000'; DELETE FROM public.books WHERE n = 3000 AND copy = 2");

        var report = await PassAsync(db, new VerifyRequest { ChunkRows = 5000 });

        Assert.False(report.Identical, report.ToText());
        var paths = report.Tables.Single(t => t.Table == "public.paths");
        Assert.Null(paths.Problem);
        Assert.Equal(1, paths.Differences);
        Assert.Equal("top.b18.leaf20000", Assert.Single(paths.Rows).Key!["path"]);
        var books = report.Tables.Single(t => t.Table == "public.books");
        Assert.Null(books.Problem);
        Assert.Equal(1, books.Differences);
        Assert.Equal("missing", Assert.Single(books.Rows).Kind);
    }

    [Fact]
    public async Task Large_tables_are_cut_into_sampled_chunks_and_one_differing_row_is_narrowed_down_by_bucket_or_bisection()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_bisect");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, """
                CREATE TABLE public.big (id bigint PRIMARY KEY, v text); INSERT INTO public.big SELECT g * 3, 'v' || g FROM generate_series(1, 60000) g;
                CREATE TABLE public.composite (a int, b text, v text, PRIMARY KEY (a, b)); INSERT INTO public.composite SELECT g / 10, 'b' || g, 'v' || g FROM generate_series(1, 30000) g;
                ANALYZE;
                """);
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.big SET v = 'drift' WHERE id = 100002; DELETE FROM public.composite WHERE a = 1234 AND b = 'b12345'");

        var report = await PassAsync(db, new VerifyRequest { ChunkRows = 5_000, BisectRows = 50 });

        // A composite key has no buckets: the differing chunk is bisected at median keys.
        var composite = report.Tables.Single(t => t.Table == "public.composite");
        Assert.InRange(composite.Chunks, 4, 8);
        var missing = Assert.Single(composite.Rows);
        Assert.Equal((RowDifference.Missing, "1234", "b12345"), (missing.Kind, missing.Key!["a"], missing.Key["b"]));
        var big = report.Tables.Single(t => t.Table == "public.big");
        // A single-column key: buckets of about --bisect-rows rows, scanned in block slices.
        Assert.InRange(big.Chunks, 200, 1300);
        Assert.Equal(1, big.ChunksDiffering);
        Assert.Equal(60_000, big.SourceRows);
        var row = Assert.Single(big.Rows);
        Assert.Equal(("100002", "v"), (row.Key!["id"], Assert.Single(row.Columns!)));
    }

    [Fact]
    public async Task Naming_a_multi_level_partitioned_table_verifies_the_leaves_under_its_sub_partitions()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_subpart");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, """
                CREATE TABLE public.events (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
                CREATE TABLE public.events_eu PARTITION OF public.events FOR VALUES IN ('eu') PARTITION BY RANGE (id);
                CREATE TABLE public.events_eu_low PARTITION OF public.events_eu FOR VALUES FROM (0) TO (100);
                CREATE TABLE public.events_eu_high PARTITION OF public.events_eu FOR VALUES FROM (100) TO (1000);
                CREATE TABLE public.events_us PARTITION OF public.events FOR VALUES IN ('us');
                INSERT INTO public.events SELECT g, r, 'v' || g FROM generate_series(1, 300) g, unnest(ARRAY['eu', 'us']) r;
                """);
        await Sql.ExecAsync(db.TargetConnectionString, "UPDATE public.events SET v = 'drift' WHERE id = 150 AND region = 'eu'");

        var report = await PassAsync(db, new VerifyRequest { Tables = ["public.events"] });

        Assert.False(report.Identical, report.ToText());
        Assert.Equal(["public.events_eu_high", "public.events_eu_low", "public.events_us"], report.Tables.Select(t => t.Table).Order(StringComparer.Ordinal));
        Assert.Equal(1, report.Tables.Single(t => t.Table == "public.events_eu_high").Differences);
    }

    [Fact]
    public async Task An_unknown_table_exits_2_naming_the_table_and_how_to_name_it()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_badtable");
        await Sql.ExecAsync(db.SourceConnectionString, "CREATE TABLE public.orders (id int PRIMARY KEY)");
        await Sql.ExecAsync(db.TargetConnectionString, "CREATE TABLE public.orders (id int PRIMARY KEY)");

        var result = await ProcessRunner.ReplicatorAsync(["verify", "--source", db.SourceUri, "--target", db.TargetUri, "--table", "public.Orders"]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("table 'public.Orders' not found on the source; name tables as schema.table, unquoted and case-sensitive", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bad_numbers_and_a_missing_target_exit_2_with_the_setting_named()
    {
        var jobs = await ProcessRunner.ReplicatorAsync(["verify", "--source", "postgres://u:Pw1@127.0.0.1:1/a", "--target", "postgres://u@127.0.0.1:1/b", "--jobs", "0"]);
        Assert.Equal(2, jobs.ExitCode);
        Assert.Contains("jobs must be at least 1 (got 0); set --jobs", jobs.Stderr, StringComparison.Ordinal);

        var noTarget = await ProcessRunner.ReplicatorAsync(["verify", "--source", "postgres://u:Pw1@127.0.0.1:1/a"]);
        Assert.Equal(2, noTarget.ExitCode);
        Assert.Contains("Target:ConnectionString", noTarget.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Pw1", jobs.Output + noTarget.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_continuous_verifier_runs_passes_reports_its_status_and_updates_the_metrics()
    {
        await using var db = await fixture.CreateDatabasesAsync("verify_continuous");
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
            await Sql.ExecAsync(cs, "CREATE TABLE public.t (id int PRIMARY KEY, v int); INSERT INTO public.t SELECT g, g FROM generate_series(1, 100) g;");
        var passes = new List<string>();
        var differences = new List<long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == ReplicatorMetrics.MeterName && instrument.Name is "replicator_verify_passes_total" or "replicator_verify_differences")
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var label = tags.ToArray().FirstOrDefault(t => t.Key is "result" or "table");
            lock (passes)
            {
                if (instrument.Name == "replicator_verify_passes_total")
                    passes.Add((string)label.Value!);
                else if ((string?)label.Value == "public.t")
                    differences.Add(value);
            }
        });
        listener.Start();
        var verifier = new ContinuousVerifier(new VerifyRequest(),
            ConnectionInfo.Parse(db.SourceUri, "Source:ConnectionString"), ConnectionInfo.Parse(db.TargetUri, "Target:ConnectionString"),
            TimeSpan.FromMilliseconds(100), NullLoggerFactory.Instance);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var loop = verifier.RunAsync(stop.Token);

        await WaitUntilAsync(() => verifier.Status.Passes >= 2);
        Assert.Equal("identical", verifier.Status.LastResult);
        Assert.NotNull(verifier.Status.LastCleanPassAt);
        await Sql.ExecAsync(db.TargetConnectionString, "DELETE FROM public.t WHERE id = 42");
        await WaitUntilAsync(() => verifier.Status.LastResult == "different");
        Assert.Contains("(1 rows differ)", verifier.Status.Describe(), StringComparison.Ordinal);
        await stop.CancelAsync();
        await loop;

        Assert.Equal("stopped", verifier.Status.State);
        lock (passes)
        {
            Assert.Contains("clean", passes);
            Assert.Contains("differences", passes);
            Assert.Equal(0, differences[0]);
            Assert.Equal(1, differences[^1]);
        }

        async Task WaitUntilAsync(Func<bool> condition)
        {
            while (!condition())
            {
                stop.Token.ThrowIfCancellationRequested();
                await Task.Delay(20);
            }
        }
    }
}
