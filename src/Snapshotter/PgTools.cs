using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;
using Replicator.Core.Configuration;

namespace Replicator.Snapshotter;

/// <summary>
/// The PostgreSQL client programs the snapshot runs (pg_dump, pg_restore, psql), found for the
/// source server's major version. Connection details reach them through the libpq environment
/// (PGHOST, PGPASSWORD, …), never on the command line, so a password cannot show up in `ps`.
/// </summary>
public sealed partial class PgTools
{
    private PgTools(string binDirectory, int majorVersion)
    {
        BinDirectory = binDirectory;
        MajorVersion = majorVersion;
    }

    public string BinDirectory { get; }

    /// <summary>Major version of the pg_dump found (15 for "pg_dump (PostgreSQL) 15.18").</summary>
    public int MajorVersion { get; }

    public string PgDump => Path.Combine(BinDirectory, "pg_dump");

    public string PgRestore => Path.Combine(BinDirectory, "pg_restore");

    public string Psql => Path.Combine(BinDirectory, "psql");

    /// <summary>
    /// Finds pg_dump for a source of major version <paramref name="serverMajor"/>: $PG_DUMP_BIN when set
    /// (and then only there: a directory chosen on purpose is never passed over silently), else
    /// /usr/lib/postgresql/&lt;serverMajor&gt;/bin, else the newest /usr/lib/postgresql/*/bin that is not
    /// older than the server, else the one on PATH. Returns null with <paramref name="problem"/> and
    /// <paramref name="fix"/> set when none is usable.
    /// </summary>
    public static PgTools? Find(int serverMajor, out string? problem, out string? fix)
    {
        var candidates = new List<string>();
        var chosen = Environment.GetEnvironmentVariable("PG_DUMP_BIN") is { Length: > 0 } fromEnv ? fromEnv : null;
        if (chosen is not null)
        {
            candidates.Add(chosen);
        }
        else
        {
            if (Directory.Exists("/usr/lib/postgresql"))
            {
                candidates.Add($"/usr/lib/postgresql/{serverMajor.ToString(CultureInfo.InvariantCulture)}/bin");
                candidates.AddRange(Directory.GetDirectories("/usr/lib/postgresql")
                    .Select(d => (Dir: Path.Combine(d, "bin"), Version: int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0))
                    .Where(c => c.Version >= serverMajor)
                    .OrderBy(c => c.Version)
                    .Select(c => c.Dir));
            }

            candidates.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries));
        }

        var found = new List<string>();
        foreach (var dir in candidates.Distinct(StringComparer.Ordinal))
        {
            if (!File.Exists(Path.Combine(dir, "pg_dump")) || !File.Exists(Path.Combine(dir, "pg_restore")) || !File.Exists(Path.Combine(dir, "psql")))
                continue;
            var major = ReadMajorVersion(Path.Combine(dir, "pg_dump"));
            if (major is null)
                continue;
            found.Add($"{Path.Combine(dir, "pg_dump")} is version {major.Value.ToString(CultureInfo.InvariantCulture)}");
            if (major >= serverMajor)
            {
                problem = null;
                fix = null;
                return new PgTools(dir, major.Value);
            }
        }

        var wanted = serverMajor.ToString(CultureInfo.InvariantCulture);
        problem = (chosen, found.Count) switch
        {
            (not null, 0) => $"PG_DUMP_BIN={chosen} holds no pg_dump, pg_restore and psql that run",
            (not null, _) => $"PG_DUMP_BIN={chosen} holds a pg_dump older than the source server ({found[0]}, the source runs PostgreSQL {wanted}); pg_dump refuses to dump a newer server",
            (null, 0) => "no pg_dump, pg_restore and psql were found (looked in /usr/lib/postgresql/*/bin and PATH)",
            _ => $"no pg_dump of version {wanted} or newer was found ({string.Join("; ", found)})",
        };
        fix = chosen is not null
            ? $"point PG_DUMP_BIN at the bin directory of the PostgreSQL {wanted} (or newer) client tools, or unset it to search /usr/lib/postgresql/*/bin and PATH"
            : $"install the PostgreSQL {wanted} client tools (apt-get install postgresql-client-{wanted}) or set PG_DUMP_BIN to their directory";
        return null;
    }

    private static int? ReadMajorVersion(string program)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(program, ["--version"]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (process is null)
                return null;
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            var match = VersionPattern().Match(output);
            return match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    [GeneratedRegex(@"\(PostgreSQL\)\s+(\d+)")]
    private static partial Regex VersionPattern();

    /// <summary>libpq environment variables for <paramref name="connection"/> (the password only here).</summary>
    public static Dictionary<string, string?> LibpqEnvironment(ConnectionInfo connection)
    {
        var b = new NpgsqlConnectionStringBuilder(connection.ToNpgsqlConnectionString());
        var env = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["PGHOST"] = b.Host,
            ["PGPORT"] = b.Port.ToString(CultureInfo.InvariantCulture),
            ["PGDATABASE"] = b.Database,
            ["PGUSER"] = b.Username,
            ["PGPASSWORD"] = string.IsNullOrEmpty(b.Password) ? null : b.Password,
            ["PGPASSFILE"] = b.Passfile,
            ["PGAPPNAME"] = "replicator-snapshot",
            ["PGSSLMODE"] = b.SslMode switch
            {
                SslMode.Disable => "disable",
                SslMode.Allow => "allow",
                SslMode.Prefer => "prefer",
                SslMode.Require => "require",
                SslMode.VerifyCA => "verify-ca",
                SslMode.VerifyFull => "verify-full",
                _ => null,
            },
            ["PGSSLROOTCERT"] = b.RootCertificate,
            ["PGSSLCERT"] = b.SslCertificate,
            ["PGSSLKEY"] = b.SslKey,
            ["PGOPTIONS"] = b.Options,
            ["PGCONNECT_TIMEOUT"] = b.Timeout.ToString(CultureInfo.InvariantCulture),
        };
        return env;
    }

    /// <summary>Runs <paramref name="program"/> to completion; stdout is returned, a non-zero exit throws with stderr.</summary>
    /// <exception cref="SnapshotException">The program failed.</exception>
    public static async Task<string> RunAsync(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string?> environment, string what, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(program, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var (key, value) in environment)
        {
            if (value is null)
                start.Environment.Remove(key);
            else
                start.Environment[key] = value;
        }

        using var process = Process.Start(start) ?? throw new SnapshotException($"could not start {program} ({what})");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        var output = await stdout.ConfigureAwait(false);
        var errors = await stderr.ConfigureAwait(false);
        if (process.ExitCode != 0)
            throw new SnapshotException($"{what} failed ({Path.GetFileName(program)} exit code {process.ExitCode}): {Trim(errors)}");
        return output;
    }

    private static string Trim(string text)
    {
        var t = text.Trim();
        return t.Length > 4000 ? t[..4000] + " …" : t;
    }
}

/// <summary>A snapshot step failed; the message names the object and, where known, the fix.</summary>
public sealed class SnapshotException : Exception
{
    public SnapshotException(string message)
        : base(message)
    {
    }

    public SnapshotException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public SnapshotException()
    {
    }
}
