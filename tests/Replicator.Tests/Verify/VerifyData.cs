using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Verify;

/// <summary>The same schema and rows on both sides: a mix of types whose text form depends on session settings.</summary>
internal static class VerifyData
{
    public const string Schema = """
        CREATE SCHEMA "Odd ""Schema"".x";
        CREATE TABLE "Odd ""Schema"".x"."Tä ble" (
            "Id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            "first name" text NOT NULL,
            doubled int GENERATED ALWAYS AS (length("first name") * 2) STORED);
        CREATE TABLE public.items (
            id int PRIMARY KEY,
            name text,
            price numeric(12,2),
            ratio float8,
            at timestamptz,
            day date,
            span interval,
            payload bytea,
            doc jsonb,
            tags text[],
            big text);
        CREATE TABLE public.pairs (a int, b text, v text, PRIMARY KEY (a, b));
        CREATE TABLE public.nokey (a int, b text);
        ALTER TABLE public.items ALTER COLUMN big SET STORAGE EXTERNAL;
        CREATE INDEX items_name ON public.items (name);
        """;

    public const string Rows = """
        INSERT INTO "Odd ""Schema"".x"."Tä ble" ("first name") SELECT 'name ' || g FROM generate_series(1, 50) g;
        INSERT INTO public.items
        SELECT g, 'item ' || g, g * 1.25, g / 7.0::float8, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour 1.000001 second',
               date '2026-01-01' + g, g * interval '1 day 2 hours', decode(lpad(to_hex(g), 8, '0'), 'hex'),
               jsonb_build_object('n', g, 's', 'x' || g), ARRAY['a' || g, 'b'],
               CASE WHEN g % 100 = 0 THEN repeat(md5_free.v, 2000) END
        FROM generate_series(1, 1000) g, LATERAL (SELECT 'toast-' || g || '-' AS v) md5_free;
        INSERT INTO public.pairs SELECT g % 10, 'k' || g, 'v' || g FROM generate_series(1, 200) g;
        INSERT INTO public.nokey SELECT g % 5, 'dup' FROM generate_series(1, 20) g;
        ANALYZE;
        """;

    public static async Task LoadBothAsync(TestDatabases db)
    {
        foreach (var cs in new[] { db.SourceConnectionString, db.TargetConnectionString })
        {
            await Sql.ExecAsync(cs, Schema);
            await Sql.ExecAsync(cs, Rows);
        }

        // The target's defaults shape text output differently: the verifier's fixed session
        // settings must make equal rows hash equally anyway.
        await Sql.ExecAsync(db.TargetConnectionString,
            $"ALTER DATABASE \"{db.Name}\" SET TimeZone = 'Asia/Kolkata'; ALTER DATABASE \"{db.Name}\" SET DateStyle = 'SQL, DMY'; " +
            $"ALTER DATABASE \"{db.Name}\" SET extra_float_digits = 0; ALTER DATABASE \"{db.Name}\" SET bytea_output = 'escape'; " +
            $"ALTER DATABASE \"{db.Name}\" SET IntervalStyle = 'sql_standard'");
    }
}
