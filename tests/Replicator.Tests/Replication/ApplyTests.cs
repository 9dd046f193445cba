using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Replication;

public class ApplyTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task Inserts_updates_and_deletes_of_many_types_reach_the_target_in_order()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_basic");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
            CREATE TABLE "Mixed ""Case"" tä" (
                id int PRIMARY KEY, n numeric(20,6), f float8, r real, t text, b bytea, d date, ts timestamp, tz timestamptz,
                iv interval, u uuid, j jsonb, js json, x xml, ip inet, bits bit varying(10), tv tsvector, arr int[][],
                tarr text[], m mood, rng int4range, pt point, mon money, flag boolean);
            """);
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO "Mixed ""Case"" tä" VALUES
              (1, 'NaN', 'Infinity', '-Infinity', E'tab\there\nnewline ''quote'' \\ back ünïcödé', '\xdeadbeef', 'infinity', '2026-01-02 03:04:05.123456',
               '2026-01-02 03:04:05.123456+05:30', '1 year 2 months 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
               '{"a": [1, 2, {"b": null}]}', '{ "keep":   "spacing" }', '<a>x</a>', '192.168.0.1/24', B'10101', 'a fat cat',
               '{{1,NULL},{3,4}}', ARRAY['a,b', NULL, '"q"', ''], 'happy', '[1,10)', '(1.5,-2)', '12.34', true),
              (2, -0.000001, 1e-300, 3.4e38, '', '\x', '-infinity', '1999-12-31 23:59:59', '-infinity', '-1 day', NULL, 'null', '[]', NULL, '::1', B'', '', '{}', '{}', 'sad', 'empty', '(0,0)', '-1', false),
              (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
            UPDATE "Mixed ""Case"" tä" SET t = 'changed', n = 123456789.123456 WHERE id = 2;
            DELETE FROM "Mixed ""Case"" tä" WHERE id = 3;
            BEGIN; INSERT INTO "Mixed ""Case"" tä" (id, t) VALUES (4, 'four'); UPDATE "Mixed ""Case"" tä" SET t = 'four again' WHERE id = 4; COMMIT;
            BEGIN; INSERT INTO "Mixed ""Case"" tä" (id, t) VALUES (5, 'rolled back'); ROLLBACK;
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(["1", "2", "4"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT id FROM \"Mixed \"\"Case\"\" tä\" ORDER BY id"));
    }

    [Fact]
    public async Task Values_keep_their_meaning_whatever_output_settings_the_source_and_target_databases_have()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_settings");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE settings_shaped (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz, iv interval, f float8, r real, b bytea, farr float8[]);
            """);
        // What PostgreSQL 10 and 11 print by default (extra_float_digits = 0: 15 digits), and
        // styles a DBA may have chosen; the target reads dates the other way round.
        await Sql.ExecAsync(db.SourceConnectionString, $"""
            ALTER DATABASE "{db.Name}" SET extra_float_digits = 0; ALTER DATABASE "{db.Name}" SET DateStyle = 'SQL, DMY';
            ALTER DATABASE "{db.Name}" SET IntervalStyle = 'sql_standard'; ALTER DATABASE "{db.Name}" SET bytea_output = 'escape';
            ALTER DATABASE "{db.Name}" SET TimeZone = 'Asia/Kolkata';
            """);
        await Sql.ExecAsync(db.TargetConnectionString, $"""
            ALTER DATABASE "{db.Name}" SET DateStyle = 'SQL, MDY'; ALTER DATABASE "{db.Name}" SET TimeZone = 'America/New_York';
            """);
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO settings_shaped VALUES
              (1, '2026-12-05', '2026-12-05 13:14:15.5', '2026-12-05 13:14:15.5+00', '1 year 2 mons -3 days 04:05:06.7', 0.1::float8 + 0.2::float8, 1.1::real * 3, '\x00ff5c27', ARRAY[0.1::float8 + 0.2::float8, 1e-310]),
              (2, '0099-01-02 BC', '2026-01-12 00:00:00', '1999-12-31 23:59:59.999999+14', '-1 day +2 hours', 2::float8 / 3, 1.0::real / 3, '\x', '{}');
            UPDATE settings_shaped SET f = f * 3, iv = iv * 2 WHERE id = 2;
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
    }

    [Fact]
    public async Task A_backlog_of_many_small_transactions_on_hot_rows_lands_whole_with_batches_grown_while_behind()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_backlog");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL, note text);
            CREATE TABLE cold (id int PRIMARY KEY, v int);
            CREATE TABLE tally (v int);
            ALTER TABLE tally REPLICA IDENTITY FULL;
            CREATE PROCEDURE churn(n int) LANGUAGE plpgsql AS $$
            BEGIN
              FOR i IN 1..n LOOP
                UPDATE hot SET v = v + i, note = 'by ' || i WHERE id = i % 7;
                INSERT INTO cold VALUES (i, i);
                INSERT INTO tally VALUES (i % 3);
                IF i % 500 = 0 THEN
                  DELETE FROM cold WHERE id BETWEEN i - 499 AND i - 400;
                  UPDATE cold SET id = -id WHERE id = i - 1;
                  DELETE FROM tally WHERE v = 0;
                END IF;
                COMMIT;
              END LOOP;
            END $$;
            """);
        // Written before the pipeline starts: a backlog of 3,000 transactions waits in the slot.
        await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO hot SELECT g, 0, '' FROM generate_series(0, 6) g");
        await Sql.ExecAsync(db.SourceConnectionString, "CALL churn(3000)");
        await Sql.ExecAsync(db.SourceConnectionString, "TRUNCATE tally; INSERT INTO tally VALUES (42)");
        // Small limits so that growing them while behind changes where batches end.
        replication.Start(replication.Settings with { MaxBatchTransactions = 20, BehindEvents = 50 });
        await replication.CatchUpAsync(TimeSpan.FromMinutes(3));
        await Compare.AssertSameAsync(db);
        Assert.Equal(4501500L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT sum(v)::bigint FROM hot"));
    }

    [Fact]
    public async Task Update_with_unchanged_toast_column_keeps_the_target_value()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_toast");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE doc (id int PRIMARY KEY, big text, small int);
            ALTER TABLE doc ALTER COLUMN big SET STORAGE EXTERNAL;
            """);
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO doc SELECT g, repeat(md5(g::text), 1000), 0 FROM generate_series(1, 3) g;
            UPDATE doc SET small = 1 WHERE id = 1;
            UPDATE doc SET small = 2 WHERE id = 1;
            BEGIN; UPDATE doc SET small = 3 WHERE id = 2; UPDATE doc SET id = 20 WHERE id = 2; COMMIT;
            UPDATE doc SET id = 30, small = 4 WHERE id = 3;
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(32000, await Sql.ScalarAsync<int>(db.TargetConnectionString, "SELECT length(big) FROM doc WHERE id = 30"));
    }

    [Fact]
    public async Task A_table_without_a_key_under_replica_identity_full_changes_exactly_one_of_several_identical_rows()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_keyless");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE bag (a int, b text, j json, p point);
            ALTER TABLE bag REPLICA IDENTITY FULL;
            """);
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO bag VALUES (1, 'x', '{"k": 1}', '(1,2)'), (1, 'x', '{"k": 1}', '(1,2)'), (1, 'x', '{"k": 1}', '(1,2)'), (2, NULL, NULL, NULL);
            UPDATE bag SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM bag WHERE a = 1);
            DELETE FROM bag WHERE ctid = (SELECT max(ctid) FROM bag WHERE a = 1 AND b = 'x');
            UPDATE bag SET b = 'was null' WHERE a = 2;
            INSERT INTO bag VALUES (3, 'late', NULL, NULL);
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(4L, await Sql.ScalarAsync<long>(db.TargetConnectionString, "SELECT count(*) FROM bag"));
    }

    [Fact]
    public async Task A_keyless_partitioned_table_published_via_its_root_changes_one_row_not_one_per_partition()
    {
        // Changes of every partition arrive as the root's; a row's ctid is unique within its partition only:
        // the first row of each partition is at (0,1).
        await using var db = await fixture.CreateDatabasesAsync("apply_keyless_root");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE pbag (region text, v int) PARTITION BY LIST (region);
            CREATE TABLE pbag_eu PARTITION OF pbag FOR VALUES IN ('eu');
            CREATE TABLE pbag_us PARTITION OF pbag FOR VALUES IN ('us');
            ALTER TABLE pbag REPLICA IDENTITY FULL;
            ALTER TABLE pbag_eu REPLICA IDENTITY FULL;
            ALTER TABLE pbag_us REPLICA IDENTITY FULL;
            """);
        await Sql.ExecAsync(db.SourceConnectionString, $"ALTER PUBLICATION {Fixtures.Replication.Publication} SET (publish_via_partition_root = true)");
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO pbag VALUES ('eu', 1), ('us', 1), ('eu', 2), ('us', 2);
            DELETE FROM pbag WHERE region = 'eu' AND v = 1;
            UPDATE pbag SET v = 20 WHERE region = 'eu' AND v = 2;
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(["eu|20", "us|1", "us|2"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT region, v FROM pbag ORDER BY 1, 2"));
    }

    [Fact]
    public async Task Truncate_identity_generated_and_partitioned_tables_replicate()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_kinds");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE ident (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, doubled int GENERATED ALWAYS AS (length(v) * 2) STORED);
            CREATE TABLE gone (id int PRIMARY KEY);
            CREATE TABLE parted (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
            CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
            CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
            """);
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO ident (v) VALUES ('a'), ('bb'), ('ccc');
            UPDATE ident SET v = 'dddd' WHERE id = 2;
            INSERT INTO gone SELECT generate_series(1, 100);
            TRUNCATE gone;
            INSERT INTO gone VALUES (7);
            INSERT INTO parted VALUES (1, '2026-02-01', 'a'), (2, '2026-08-01', 'b');
            UPDATE parted SET v = 'moved', at = '2026-09-01' WHERE id = 1;
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(["1|a|2", "2|dddd|8", "3|ccc|6"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT id, v, doubled FROM ident ORDER BY id"));
    }

    [Fact]
    public async Task Many_inserts_into_one_table_go_as_one_copy_and_every_value_survives_it()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_copy");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
            CREATE TABLE "Bulk tä" (
                id int PRIMARY KEY, t text, b bytea, arr text[], j jsonb, ts timestamptz, n numeric, f float8, m mood,
                g bigint GENERATED ALWAYS AS IDENTITY, len int GENERATED ALWAYS AS (length(t)) STORED);
            CREATE TABLE events (at timestamptz, what text);
            ALTER TABLE events REPLICA IDENTITY FULL;
            """);
        // Target only: which statement wrote each table (a trigger the replica role still fires).
        await Sql.ExecAsync(db.TargetConnectionString, """
            CREATE SCHEMA probe;
            CREATE TABLE probe.writes (tbl text, stmt text);
            CREATE FUNCTION probe.note() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO probe.writes VALUES (TG_TABLE_NAME, upper(left(current_query(), 4))); RETURN NULL; END $$;
            CREATE TRIGGER note AFTER INSERT ON "Bulk tä" FOR EACH STATEMENT EXECUTE FUNCTION probe.note();
            CREATE TRIGGER note AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION probe.note();
            ALTER TABLE "Bulk tä" ENABLE ALWAYS TRIGGER note;
            ALTER TABLE events ENABLE ALWAYS TRIGGER note;
            """);
        replication.Start();
        await Sql.ExecAsync(db.SourceConnectionString, """
            BEGIN;
            INSERT INTO "Bulk tä" (id, t, b, arr, j, ts, n, f, m)
            SELECT i,
                   (ARRAY[E'tab\there', E'line\nbreak', E'cr\rhere', E'back\\slash', E'\\.', E'\\N', 'NULL', '', NULL, 'ünï 😀'])[1 + i % 10],
                   CASE WHEN i % 7 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') || '\x5c090a'::bytea END,
                   ARRAY[E'a\tb', NULL, '"q"', E'\\', i::text],
                   jsonb_build_object('k', E'v\n\\' || i, 'n', i),
                   '2026-12-05 13:14:15.5+00'::timestamptz + i * interval '1 hour',
                   i / 7.0, i / 3.0::float8, (ARRAY['sad', 'ok', 'happy']::mood[])[1 + i % 3]
            FROM generate_series(1, 500) i;
            INSERT INTO events SELECT '2026-12-05'::timestamptz + i * interval '1 second', E'event\t' || i FROM generate_series(1, 300) i;
            COMMIT;
            """);
        await replication.CatchUpAsync();
        // A few rows stay INSERTs in the pipelined batch.
        await Sql.ExecAsync(db.SourceConnectionString, """
            INSERT INTO "Bulk tä" (id, t) VALUES (1001, E'one \\ row');
            INSERT INTO events VALUES (NULL, NULL);
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(
            ["Bulk tä|COPY", "Bulk tä|INSE", "events|COPY", "events|INSE"],
            await Sql.RowsAsync(db.TargetConnectionString, "SELECT DISTINCT tbl, stmt FROM probe.writes ORDER BY 1, 2"));
    }

    [Fact]
    public async Task A_unique_clash_that_only_the_folded_batch_has_is_replayed_change_by_change_and_lands()
    {
        await using var db = await fixture.CreateDatabasesAsync("apply_clash");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, """
            CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE NOT NULL);
            INSERT INTO people VALUES (1, 'a'), (2, 'b');
            """);
        replication.Start();
        // Folded, the swap is one UPDATE that sets 'b' on row 1 while row 2 still has it.
        await Sql.ExecAsync(db.SourceConnectionString, """
            BEGIN;
            INSERT INTO people SELECT i, 'p' || i FROM generate_series(10, 300) i;
            UPDATE people SET email = 'tmp' WHERE id = 1;
            UPDATE people SET email = 'a' WHERE id = 2;
            UPDATE people SET email = 'b' WHERE id = 1;
            COMMIT;
            INSERT INTO people SELECT i, 'q' || i FROM generate_series(301, 500) i;
            """);
        await replication.CatchUpAsync();
        await Compare.AssertSameAsync(db);
        Assert.Equal(["1|b", "2|a"], await Sql.RowsAsync(db.TargetConnectionString, "SELECT id, email FROM people WHERE id < 3 ORDER BY id"));
    }
}
