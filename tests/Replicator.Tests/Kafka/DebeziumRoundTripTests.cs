using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Kafka.Debezium;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Kafka;

/// <summary>
/// Source rows → PostgreSQL text (as pgoutput sends it) → Debezium records → deserializer → text
/// parameters cast to the target's column types → the target row prints exactly as the source row.
/// Real PostgreSQL on both ends; no Kafka needed to prove the value conversions.
/// </summary>
public class DebeziumRoundTripTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private const string Ddl = """"
        CREATE TYPE "Mood ""x""" AS ENUM ('happy', 'sad', 'it''s ok');
        CREATE SCHEMA "Odd ""Sch""";
        CREATE TABLE "Odd ""Sch""".types (
            id int PRIMARY KEY,
            i2 smallint, i8 bigint, f4 real, f8 double precision,
            n123 numeric(12,3), n numeric, m money, b boolean,
            t text, vc varchar(20), c3 char(3), by bytea,
            d date, tm time, tm3 time(3), ts timestamp, ts3 timestamp(3), tstz timestamptz, tstz0 timestamptz(0),
            iv interval, u uuid, j json, jb jsonb, x xml, ip inet, net cidr, mac macaddr, r int4range,
            bit1 bit(1), bit5 bit(5), pt point, mood "Mood ""x""", ia int[], ta text[], moods "Mood ""x"""[],
            "Mixed Case ""col""" text);
        """";

    private const string Rows = """"
        INSERT INTO "Odd ""Sch""".types VALUES
        (1, -32768, 9223372036854775807, 3.14, 1e20, -123456789.125, 3.141592653589793238462643383279, '$1,234.56', true,
         'tab	quote" backslash\ é ☃', 'varchar', 'ab', '\x00ff10'::bytea,
         '0044-03-15 BC', '23:59:59.999999', '12:00:00.5', '2024-02-29 13:14:15.123456', '1999-12-31 23:59:59.999', '2024-01-02 04:04:05.1+01', '2024-06-01 00:00:00+00',
         '-1 days -02:00:00.25', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, "two"]}', '{"k": {"n": null}}', '<a b="c">d</a>', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '[1,5)',
         B'1', B'10110', '(1.5,-2.25)', 'it''s ok', '{1,NULL,-3}', '{"a,b","c\"d",NULL,""}', '{happy,sad}',
         'mixed'),
        (2, NULL, NULL, 'NaN', '-Infinity', 0, 0.000001, '-$0.01', false, '', NULL, NULL, '\x'::bytea,
         '1970-01-01', '00:00:00', NULL, '1900-01-01 00:00:00', NULL, '1969-12-31 23:59:59.999999+00', NULL,
         '3 days 04:05:06.5', NULL, NULL, '[]', NULL, '::1', NULL, NULL, 'empty',
         B'0', B'00000', NULL, 'happy', '{}', '{}', NULL, NULL),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        """";

    /// <summary>With schemas (each value read by its field's schema) and without (read by the target column's type).</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Every_type_family_survives_source_text_to_Debezium_JSON_and_back_into_the_target_unchanged(bool schemas)
    {
        await using var db = await fixture.CreateDatabasesAsync("dbzroundtrip");
        await Sql.ExecAsync(db.SourceConnectionString, Ddl + Rows);
        await Sql.ExecAsync(db.TargetConnectionString, Ddl);

        await using var source = new NpgsqlConnection(db.SourceConnectionString);
        await source.OpenAsync();
        await using (var settings = new NpgsqlCommand("SET DateStyle = ISO; SET IntervalStyle = postgres; SET bytea_output = hex; SET extra_float_digits = 1; SET TimeZone = 'UTC'", source))
            await settings.ExecuteNonQueryAsync();
        var relation = await RelationAsync(source, "Odd \"Sch\"", "types");
        var types = await CatalogTypeResolver.LoadAsync(source, CancellationToken.None);
        var rows = new List<ColumnValue[]>();
        var select = "SELECT " + string.Join(", ", relation.Columns.Select(c => c.QuotedName + "::text")) + " FROM " + relation.QuotedName + " ORDER BY id";
        await using (var cmd = new NpgsqlCommand(select, source))
        await using (var reader = await cmd.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
                rows.Add(Enumerable.Range(0, reader.FieldCount).Select(i => reader.IsDBNull(i) ? ColumnValue.Null : ColumnValue.Of(reader.GetString(i))).ToArray());
        }

        var serializer = new DebeziumSerializer(new DebeziumOptions { TopicPrefix = "rt", DatabaseName = db.Name, SchemasEnable = schemas }, types);
        var records = new List<DebeziumRecord>();
        records.AddRange(serializer.Serialize(new TransactionBegin(700, new NpgsqlLogSequenceNumber(1000), DateTimeOffset.UtcNow)));
        var lsn = 100UL;
        foreach (var row in rows)
            records.AddRange(serializer.Serialize(new RowChange(relation, ChangeKind.Insert, new NpgsqlLogSequenceNumber(lsn++), null, false, row)));
        records.AddRange(serializer.Serialize(new TransactionCommit(700, new NpgsqlLogSequenceNumber(1000), new NpgsqlLogSequenceNumber(1010), DateTimeOffset.UtcNow)));

        await using var target = new NpgsqlConnection(db.TargetConnectionString);
        await target.OpenAsync();
        var tables = await TableCatalog.LoadAsync(target, CancellationToken.None);
        var deserializer = new DebeziumDeserializer(DebeziumSourceSettings.Default, (s, t) => tables.FirstOrDefault(x => x.Schema == s && x.Name == t));
        var offset = 0L;
        var applied = 0;
        foreach (var record in records.Where(r => r.Kind == DebeziumRecordKind.Change))
        {
            var decoded = Assert.IsType<DecodedChange>(deserializer.Decode(new KafkaPosition(record.Topic, 0, offset++), record.Key, record.Value));
            var change = Assert.IsType<RowChange>(decoded.Change);
            await InsertAsync(target, change);
            applied++;
        }

        Assert.Equal(3, applied);
        const string compare = "SELECT t::text FROM \"Odd \"\"Sch\"\"\".types t ORDER BY id";
        var expected = await Sql.RowsAsync(db.SourceConnectionString, compare);
        var actual = await Sql.RowsAsync(db.TargetConnectionString, compare);
        Assert.Equal(expected, actual);
    }

    /// <summary>The relation pgoutput would describe: type OIDs, typmods, format_type names, key flags.</summary>
    private static async Task<StreamRelation> RelationAsync(NpgsqlConnection conn, string schema, string table)
    {
        const string sql = """
            SELECT c.oid, a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod),
                   coalesce(a.attnum = ANY (i.indkey), false)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
            WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum
            """;
        await using var cmd = new NpgsqlCommand(sql, conn) { Parameters = { new() { Value = schema }, new() { Value = table } } };
        await using var reader = await cmd.ExecuteReaderAsync();
        var columns = new List<StreamColumn>();
        uint oid = 0;
        while (await reader.ReadAsync())
        {
            oid = reader.GetFieldValue<uint>(0);
            columns.Add(new StreamColumn(reader.GetString(1), reader.GetFieldValue<uint>(2), reader.GetInt32(3), reader.GetBoolean(5), reader.GetString(4)));
        }

        return new StreamRelation(oid, schema, table, 'd', columns);
    }

    /// <summary>What the applier does with a row: every value a text parameter cast to the column's type.</summary>
    private static async Task InsertAsync(NpgsqlConnection target, RowChange change)
    {
        var columns = change.Relation.Columns;
        var sql = $"INSERT INTO {change.Relation.QuotedName} ({string.Join(", ", columns.Select(c => c.QuotedName))}) VALUES ("
            + string.Join(", ", columns.Select((c, i) => $"${i + 1}::text::{c.TypeName}")) + ")";
        await using var cmd = new NpgsqlCommand(sql, target);
        foreach (var value in change.New!)
        {
            Assert.NotEqual(ValueKind.UnchangedToast, value.Kind);
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = value.IsNull ? DBNull.Value : value.Text });
        }

        await cmd.ExecuteNonQueryAsync();
    }
}
