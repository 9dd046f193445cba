using System.Diagnostics;
using Npgsql;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Snapshot;

internal static class SnapshotTestHelpers
{
    public static string[] Args(TestDatabases db, params string[] more) =>
        ["snapshot", "--source", db.SourceUri, "--target", db.TargetUri, "--metrics-listen", "127.0.0.1:0", .. more];

    /// <summary>Every user table's rows as text, sorted, per table, for one side.</summary>
    public static async Task<Dictionary<string, List<string>>> ContentAsync(string connectionString)
    {
        var tables = await Sql.RowsAsync(connectionString, """
            SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'replicator') AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1
            """);
        var content = new Dictionary<string, List<string>>();
        foreach (var t in tables)
            content[t] = await Sql.RowsAsync(connectionString, $"SELECT x::text FROM ONLY {t} x ORDER BY x::text COLLATE \"C\"");
        return content;
    }

    /// <summary>Count and an order-independent hash of every row's text, per table.</summary>
    public static async Task<Dictionary<string, string>> FingerprintAsync(string connectionString)
    {
        var tables = await Sql.RowsAsync(connectionString, """
            SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'replicator') AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1
            """);
        var result = new Dictionary<string, string>();
        foreach (var t in tables)
            result[t] = (await Sql.RowsAsync(connectionString, $"SELECT count(*), sum(hashtextextended(x::text, 7)::numeric) FROM ONLY {t} x"))[0];
        return result;
    }

    /// <summary>Starts the CLI without waiting (so a test can kill it).</summary>
    public static Process Start(IEnumerable<string> args, System.Text.StringBuilder output)
    {
        var start = new ProcessStartInfo(ProcessRunner.Cli.Program, [.. ProcessRunner.Cli.Prefix, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    public static async Task<long> ScalarLongAsync(string connectionString, string sql)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        try
        {
            return Convert.ToInt64(await cmd.ExecuteScalarAsync() ?? 0L, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName)
        {
            return 0;
        }
    }
}
