using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests;

public class CatalogTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task The_catalog_describes_keys_identity_generated_columns_and_partitions_with_odd_names()
    {
        await using var db = await fixture.CreateDatabasesAsync("catalog");
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE SCHEMA "Odd ""Schema"".x";
            CREATE TABLE "Odd ""Schema"".x"."Tä ble" (
                "Id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                "first name" text NOT NULL,
                doubled int GENERATED ALWAYS AS (length("first name") * 2) STORED);
            CREATE TABLE public.nokey (a int, b text);
            ALTER TABLE public.nokey REPLICA IDENTITY FULL;
            CREATE TABLE public.byindex (a int NOT NULL, b int NOT NULL, c text);
            CREATE UNIQUE INDEX byindex_ab ON public.byindex (b, a);
            ALTER TABLE public.byindex REPLICA IDENTITY USING INDEX byindex_ab;
            CREATE TABLE public.measure (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
            CREATE TABLE public.measure_2026 PARTITION OF public.measure FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            CREATE UNLOGGED TABLE public.scratch (x int);
            CREATE SCHEMA replicator; CREATE TABLE replicator.progress (x int);
            """);
        await using var conn = new NpgsqlConnection(db.SourceConnectionString);
        await conn.OpenAsync();

        var tables = await TableCatalog.LoadAsync(conn, CancellationToken.None);

        Assert.Equal(["Odd \"Schema\".x.Tä ble", "public.byindex", "public.measure", "public.measure_2026", "public.nokey"], tables.Select(t => t.DisplayName));
        var odd = tables[0];
        Assert.Equal("\"Odd \"\"Schema\"\".x\".\"Tä ble\"", odd.QuotedName);
        Assert.Equal(["Id"], odd.PrimaryKey);
        Assert.True(odd.Column("Id").IsIdentityAlways);
        Assert.True(odd.Column("doubled").IsGenerated);
        Assert.Equal(["Id", "first name"], odd.WritableColumns.Select(c => c.Name));
        Assert.Equal("bigint", odd.Column("Id").TypeName);
        Assert.Equal(["b", "a"], tables[1].KeyColumns);
        Assert.True(tables[2].IsPartitionedParent);
        Assert.Equal(new TableName("public", "measure"), tables[3].Parent);
        Assert.Equal('f', tables[4].ReplicaIdentity);
        Assert.Empty(tables[4].KeyColumns);
    }
}
