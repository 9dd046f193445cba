using Npgsql;
using Replicator.Core.Sql;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests;

public class SqlLiteralTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Theory]
    [InlineData("on")]
    [InlineData("off")]
    public async Task A_quoted_literal_reads_back_as_the_same_string_whatever_standard_conforming_strings_says(string setting)
    {
        string[] values = ["plain", "it's", "a \\ path", "\\'; DROP TABLE x; --", "{\"2026-12-05 08:37:33+00\"}", "ünï \t\n", ""];
        await using var conn = new NpgsqlConnection(fixture.Servers.Source.ConnectionString());
        await conn.OpenAsync();
        await using (var set = new NpgsqlCommand($"SET standard_conforming_strings = {setting}", conn))
            await set.ExecuteNonQueryAsync();
        foreach (var value in values)
        {
            await using var cmd = new NpgsqlCommand($"SELECT {SqlLiteral.Quote(value)}", conn);
            Assert.Equal(value, (string?)await cmd.ExecuteScalarAsync());
        }
    }
}
