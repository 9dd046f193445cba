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

    [Fact]
    public async Task A_copy_text_row_reads_back_as_the_same_strings_and_nulls()
    {
        string?[] values = ["plain", "tab\there", "line\nbreak", "carriage\rreturn", "back\\slash", "\\.", "\\N", "NULL", "", null, "ünï", "end\\"];
        await using var conn = new NpgsqlConnection(fixture.Servers.Source.ConnectionString());
        await conn.OpenAsync();
        await using (var create = new NpgsqlCommand("CREATE TEMP TABLE copied (i int, v text)", conn))
            await create.ExecuteNonQueryAsync();
        var rows = new System.Text.StringBuilder();
        for (var i = 0; i < values.Length; i++)
        {
            CopyText.AppendField(rows, i.ToString());
            rows.Append('\t');
            CopyText.AppendField(rows, values[i]);
            rows.Append('\n');
        }

        await using (var writer = await conn.BeginTextImportAsync("COPY copied (i, v) FROM STDIN"))
            await writer.WriteAsync(rows.ToString());
        await using var read = new NpgsqlCommand("SELECT v FROM copied ORDER BY i", conn);
        await using var reader = await read.ExecuteReaderAsync();
        var back = new List<string?>();
        while (await reader.ReadAsync())
            back.Add(reader.IsDBNull(0) ? null : reader.GetString(0));
        Assert.Equal(values, back);
    }
}
