using Npgsql;
using Replicator.Snapshotter;
using Replicator.Tests.Fixtures;
using static Replicator.Tests.Snapshot.SnapshotTestHelpers;

namespace Replicator.Tests.Snapshot;

public class SnapshotCopyTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string AllTypesSchema = """"
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy ☺');
        CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
        CREATE TYPE pair AS (a int, b text);
        CREATE TYPE floatrange AS RANGE (subtype = float8);
        CREATE SCHEMA "Ünï ""Schema""";
        CREATE TABLE "Ünï ""Schema"""."All Types" (
            "Id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            n numeric, f4 real, f8 double precision, m money, t text, c char(5), vc varchar(10), b bytea,
            d date, ts timestamp, tstz timestamptz, i interval, tm time, tmtz timetz, u uuid, j json, jb jsonb, x xml,
            inet_ inet, cidr_ cidr, mac macaddr, mac8 macaddr8, bits bit(5), vbits varbit, tsv tsvector, tsq tsquery,
            arr int[], arr2 text[], mood_ mood, moods mood[], dom posint, doms posint[], p pair, pairs pair[],
            r int4range, fr floatrange, mr int4multirange, tr tstzrange,
            pt point, ln line, ls lseg, bx box, pth path, pg polygon, ci circle, bo boolean, oid_ oid,
            "Spaced Col" text, "UPPER" text GENERATED ALWAYS AS (upper(t)) STORED);
        INSERT INTO "Ünï ""Schema"""."All Types" (n, f4, f8, m, t, c, vc, b, d, ts, tstz, i, tm, tmtz, u, j, jb, x, inet_, cidr_, mac, mac8, bits, vbits, tsv, tsq,
            arr, arr2, mood_, moods, dom, doms, p, pairs, r, fr, mr, tr, pt, ln, ls, bx, pth, pg, ci, bo, oid_, "Spaced Col") VALUES
          (12345678901234567890.123456789, 1.5, 3.141592653589793, 12.34, E'tab\there\nnew line \\ back "quote" ''single''', 'ab', 'grüße', '\x00ff10',
           '2024-02-29', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+05:30', '1 year 2 mons 3 days 04:05:06.789', '23:59:59.999999', '12:00+03',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50, null], "k": "v\u00e9"}', '{"b": {"c": true}, "a": 1}', '<r a="1">x &amp; y</r>',
           '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', B'10101', B'1100110011', 'fat cats ate rats', 'fat & (rat | cat)',
           '{1,NULL,3}', '{{a,NULL},{"x y","z\"q"}}', 'happy ☺', '{sad,ok}', 7, '{1,2}', '(1,"x,y")', ARRAY['(2,b)'::pair, NULL, '(3,)'::pair],
           '[1,10)', '[1.5,2.5]', '{[1,3),[5,8)}', '[2024-01-01 00:00+00,infinity)',
           '(1.5,2.5)', '{1,-1,0}', '[(0,0),(1,1)]', '((0,0),(2,2))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(0,0),5>', true, 4294967295, 'spaced'),
          ('NaN', 'Infinity', '-Infinity', -0.01, '日本語 🎉 Ω', NULL, '', '\x', 'infinity', 'infinity', '-infinity', '-178000000 years', '00:00', '00:00+00',
           NULL, 'null', '[]', '<a/>', '::1', '::/0', NULL, NULL, B'00000', B'', '', NULL,
           '{}', '{{1,2},{3,4}}', 'sad', '{}', 1, NULL, '(,)', '{}', 'empty', NULL, '{}', NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, 0, NULL),
          ('-Infinity', 'NaN', 'NaN', 0, repeat('long ', 10), NULL, NULL, NULL, '-infinity', '-infinity', 'infinity', '0', NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           '[0:1]={7,8}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        INSERT INTO "Ünï ""Schema"""."All Types" (t) VALUES (NULL);
        -- "All Types" has composite and user-defined array columns, so it travels in text format;
        -- the same values without those columns travel in binary format.
        CREATE TABLE "Ünï ""Schema"""."Binary Types" AS
            SELECT "Id", n, f4, f8, m, t, c, vc, b, d, ts, tstz, i, tm, tmtz, u, j, jb, x, inet_, cidr_, mac, mac8, bits, vbits, tsv, tsq,
                   arr, arr2, mood_, dom, r, fr, mr, tr, pt, ln, ls, bx, pth, pg, ci, bo, oid_, "Spaced Col"
            FROM "Ünï ""Schema"""."All Types";
        ALTER TABLE "Ünï ""Schema"""."Binary Types" ADD PRIMARY KEY ("Id");
        """";

    private const string ShapesSchema = """
        CREATE TABLE public."UPPER Case" ("Key" int PRIMARY KEY, "värde" text);
        INSERT INTO public."UPPER Case" SELECT g, 'v' || g FROM generate_series(1, 500) g;
        CREATE TABLE public."my table" (id int PRIMARY KEY, parent int REFERENCES public."UPPER Case" ("Key"), note text);
        CREATE INDEX "my index" ON public."my table" (note);
        INSERT INTO public."my table" SELECT g, g % 500 + 1, md5(g::text) FROM generate_series(1, 1000) g;
        CREATE TABLE public.measure (id int, at date, v float8, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE public.measure_2025 PARTITION OF public.measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE public.measure_2026 PARTITION OF public.measure FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE public.measure_other PARTITION OF public.measure DEFAULT;
        INSERT INTO public.measure SELECT g, date '2025-06-01' + (g % 900), g / 7.0 FROM generate_series(1, 3000) g;
        CREATE TABLE public.nokey (a int, b text);
        ALTER TABLE public.nokey REPLICA IDENTITY FULL;
        INSERT INTO public.nokey SELECT g % 10, 'dup' FROM generate_series(1, 100) g;
        CREATE TABLE public.toasty (id int PRIMARY KEY, big text, blob bytea);
        INSERT INTO public.toasty SELECT g, (SELECT string_agg(md5((g * 10000 + i)::text), '') FROM generate_series(1, 4000) i),
            (SELECT string_agg(sha256(int4send(g * 10000 + i)), '') FROM generate_series(1, 3000) i) FROM generate_series(1, 5) g;
        CREATE SEQUENCE "Seq ü" START 100;
        SELECT nextval('"Seq ü"'), nextval('"Seq ü"');
        CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
        CREATE TRIGGER "touch it" BEFORE INSERT ON public."my table" FOR EACH ROW EXECUTE FUNCTION public.touch();
        """;

    [Fact]
    public async Task Every_type_family_odd_names_partitions_keyless_and_toast_tables_arrive_identical_and_hand_over_to_replication()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot types");
        await Sql.ExecAsync(db.SourceConnectionString, AllTypesSchema + ShapesSchema);

        var result = await ProcessRunner.ReplicatorAsync(Args(db, "--jobs", "3", "--slot", "snap_types", "--publication", "pub_types"), timeout: TimeSpan.FromMinutes(4));

        Assert.True(result.ExitCode == 0, result.Output);
        var source = await ContentAsync(db.SourceConnectionString);
        var target = await ContentAsync(db.TargetConnectionString);
        Assert.Equal(source.Keys, target.Keys);
        foreach (var (table, rows) in source)
            Assert.True(rows.SequenceEqual(target[table]), $"{table} differs:\nsource: {string.Join("\n", rows.Take(5))}\ntarget: {string.Join("\n", target[table].Take(5))}");
        Assert.Equal(4, source["\"Ünï \"\"Schema\"\"\".\"All Types\""].Count);
        Assert.Equal(4, source["\"Ünï \"\"Schema\"\"\".\"Binary Types\""].Count);
        var textLine = Assert.Single(result.Stderr.Split('\n'), l => l.Contains("copied in text format", StringComparison.Ordinal));
        Assert.EndsWith(": Ünï \"Schema\".All Types", textLine.TrimEnd(), StringComparison.Ordinal);
        Assert.Contains("Ünï \"Schema\".All Types", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Foreign keys to small tables created before the data: 1 (2 entries built now", result.Stderr, StringComparison.Ordinal); // "my table" → "UPPER Case"

        // post-data: indexes, keys, foreign keys, triggers; sequences at their snapshot values
        const string Objects = """
            SELECT (SELECT count(*) FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'replicator'))
                 || '/' || (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname NOT IN ('pg_catalog', 'replicator'))
                 || '/' || (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal)
                 || '/' || (SELECT string_agg(last_value::text, ',' ORDER BY schemaname, sequencename) FROM pg_sequences WHERE schemaname <> 'replicator')
            """;
        Assert.Equal(await Sql.ScalarAsync<string>(db.SourceConnectionString, Objects), await Sql.ScalarAsync<string>(db.TargetConnectionString, Objects));
        Assert.Equal("101", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT last_value::text FROM \"Seq ü\""));

        // the hand-over contract: position = one below the slot's consistent point (a commit right at it is not in the copy), and table_sync at it for every copied table
        var consistent = await Sql.ScalarAsync<string>(db.SourceConnectionString, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'snap_types'");
        Assert.NotNull(consistent);
        Assert.Equal(Replicator.Core.State.TargetState.PositionBefore(NpgsqlTypes.NpgsqlLogSequenceNumber.Parse(consistent)).ToString(), await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT commit_lsn::text FROM replicator.position WHERE slot_name = 'snap_types'"));
        // every table holding rows, plus the partitioned parent (for publish_via_partition_root)
        Assert.Equal(source.Count + 1, await ScalarLongAsync(db.TargetConnectionString, $"SELECT count(*) FROM replicator.table_sync WHERE slot_name = 'snap_types' AND sync_lsn = '{consistent}'"));
        Assert.Equal(1, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.table_sync WHERE table_name = 'measure'"));
        Assert.True(await Sql.ScalarAsync<bool>(db.SourceConnectionString, "SELECT puballtables FROM pg_publication WHERE pubname = 'pub_types'"));

        // a second run finds the snapshot complete and changes nothing
        var again = await ProcessRunner.ReplicatorAsync(Args(db, "--slot", "snap_types", "--publication", "pub_types"));
        Assert.True(again.ExitCode == 0, again.Output);
        Assert.Contains("already complete", again.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_one_off_copy_without_a_slot_leaves_no_slot_publication_or_state_behind()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot noslot");
        await Sql.ExecAsync(db.SourceConnectionString, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g; CREATE TABLE k (v text); INSERT INTO k VALUES ('x'); CREATE TABLE c (id int PRIMARY KEY, t_id int REFERENCES t); INSERT INTO c SELECT g, g FROM generate_series(1, 100) g;");

        var result = await ProcessRunner.ReplicatorAsync(Args(db, "--no-slot", "--slot", "noslot_never"));

        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Equal(await FingerprintAsync(db.SourceConnectionString), await FingerprintAsync(db.TargetConnectionString));
        Assert.Equal(0, await ScalarLongAsync(db.SourceConnectionString, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'noslot_never'"));
        Assert.Equal(0, await ScalarLongAsync(db.SourceConnectionString, "SELECT count(*) FROM pg_publication"));
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM pg_namespace WHERE nspname = 'replicator'"));
        // the foreign key went in before the data and was not built a second time after it
        Assert.Contains("Foreign keys to small tables created before the data: 1 (2 entries built now", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM pg_constraint WHERE conname = 'c_t_id_fkey' AND convalidated"));
    }

    [Fact]
    public async Task The_copied_tables_get_planner_statistics_a_partitioned_table_included_unless_asked_not_to()
    {
        const string Schema = """
            CREATE TABLE plain (id int PRIMARY KEY, v text);
            INSERT INTO plain SELECT g, g::text FROM generate_series(1, 2000) g;
            CREATE TABLE parted (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
            CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            INSERT INTO parted SELECT g, date '2025-06-01' + (g % 400) FROM generate_series(1, 2000) g;
            """;
        // Table names with statistics; '*' marks a partitioned table's statistics over its partitions.
        const string Stats = """
            SELECT string_agg(tablename || CASE WHEN inherited THEN '*' ELSE '' END, ',' ORDER BY tablename)
            FROM (SELECT DISTINCT tablename, inherited FROM pg_stats WHERE schemaname = 'public') s
            """;
        await using var db = await fixture.CreateDatabasesAsync("snapshot analyze");
        await Sql.ExecAsync(db.SourceConnectionString, Schema);

        var result = await ProcessRunner.ReplicatorAsync(Args(db, "--no-slot"));

        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Equal("parted*,parted_a,parted_b,plain", await Sql.ScalarAsync<string>(db.TargetConnectionString, Stats));
        Assert.Contains("(ANALYZE) for 2 tables", result.Output, StringComparison.Ordinal);

        await using var skipped = await fixture.CreateDatabasesAsync("snapshot no analyze");
        await Sql.ExecAsync(skipped.SourceConnectionString, Schema);
        var without = await ProcessRunner.ReplicatorAsync(Args(skipped, "--no-slot", "--no-analyze"));
        Assert.True(without.ExitCode == 0, without.Output);
        Assert.Equal(await FingerprintAsync(skipped.SourceConnectionString), await FingerprintAsync(skipped.TargetConnectionString));
        // Autovacuum may analyze the partitions meanwhile, but never a partitioned table itself.
        Assert.Equal(0, await ScalarLongAsync(skipped.TargetConnectionString, "SELECT count(*) FROM pg_stats WHERE tablename = 'parted'"));
        Assert.DoesNotContain("(ANALYZE)", without.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_copy_the_target_rejects_halfway_through_a_large_table_fails_promptly_naming_the_table_and_hands_nothing_over()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot rejected");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.wide (id int PRIMARY KEY, v text);
            INSERT INTO public.wide SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g;
            """);
        // Sabotage on the target: the table gets a trigger that rejects one row deep into the stream.
        await SabotageEveryNewTableAsync(db, "reject", "BEFORE", """
            BEGIN
                IF NEW.id = 150000 THEN RAISE EXCEPTION 'row % rejected by the target', NEW.id; END IF;
                RETURN NEW;
            END
            """);

        var result = await ProcessRunner.ReplicatorAsync(Args(db, "--slot", "rejected_slot"), timeout: TimeSpan.FromMinutes(2));

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("copying public.wide failed: row 150000 rejected by the target (P0001", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("run the same command again: it resumes", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM public.wide"));
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.position"));
    }

    [Fact]
    public async Task A_row_count_difference_fails_the_command_and_nothing_is_handed_over()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot mismatch");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TABLE public.loose (id int, v text);
            ALTER TABLE public.loose REPLICA IDENTITY FULL;
            INSERT INTO public.loose SELECT g, g::text FROM generate_series(1, 10) g;
            """);
        // Sabotage on the target: every table created in public gets a trigger that inserts row 1 twice.
        await SabotageEveryNewTableAsync(db, "dup", "AFTER", """
            BEGIN
                IF pg_trigger_depth() = 1 AND NEW.id = 1 THEN
                    EXECUTE format('INSERT INTO %s SELECT ($1).*', TG_RELID::regclass) USING NEW;
                END IF;
                RETURN NULL;
            END
            """);

        var result = await ProcessRunner.ReplicatorAsync(Args(db, "--slot", "mismatch_slot"));

        Assert.True(result.ExitCode == 1, result.Output);
        Assert.Matches(@"public\.loose\s+10\s+11\s.*MISMATCH", result.Stdout);
        Assert.Contains("row counts differ between source and target for: public.loose (source 10, target 11)", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.position"));
        Assert.Equal(0, await ScalarLongAsync(db.TargetConnectionString, "SELECT count(*) FROM replicator.table_sync"));
    }

    [Fact]
    public async Task The_row_counter_counts_binary_copy_tuples_however_the_stream_is_split()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot counter");
        await Sql.ExecAsync(db.SourceConnectionString, "CREATE TABLE t (id int, v text, b bytea); INSERT INTO t SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('x', g % 50) END, '\\x0a0d' FROM generate_series(1, 2345) g;");
        await using var conn = new NpgsqlConnection(db.SourceConnectionString);
        await conn.OpenAsync();
        using var bytes = new MemoryStream();
        await using (var copy = await conn.BeginRawBinaryCopyAsync("COPY t TO STDOUT (FORMAT binary)"))
            await copy.CopyToAsync(bytes);
        var data = bytes.ToArray();

        foreach (var piece in new[] { 1, 3, 7, 4096, data.Length })
        {
            var counter = new CopyRowCounter(text: false);
            for (var i = 0; i < data.Length; i += piece)
                counter.Feed(data.AsSpan(i, Math.Min(piece, data.Length - i)));
            Assert.Equal(2345, counter.Rows);
        }
    }

    /// <summary>
    /// On the target, every table the snapshot creates in <c>public</c> gets a row trigger
    /// <paramref name="name"/> (<paramref name="timing"/> INSERT) running the plpgsql <paramref name="body"/>.
    /// </summary>
    private static Task SabotageEveryNewTableAsync(TestDatabases db, string name, string timing, string body) => Sql.ExecAsync(db.TargetConnectionString, $$$"""
        CREATE FUNCTION public.{{{name}}}_row() RETURNS trigger LANGUAGE plpgsql AS $$
        {{{body}}} $$;
        CREATE FUNCTION public.add_{{{name}}}() RETURNS event_trigger LANGUAGE plpgsql AS $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' AND schema_name = 'public' LOOP
                EXECUTE format('CREATE TRIGGER {{{name}}} {{{timing}}} INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.{{{name}}}_row()', r.object_identity);
            END LOOP;
        END $$;
        CREATE EVENT TRIGGER add_{{{name}}} ON ddl_command_end EXECUTE FUNCTION public.add_{{{name}}}();
        """);
}
