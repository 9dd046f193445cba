using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Replicator.Tests.Fixtures;

/// <summary>
/// One throwaway PostgreSQL cluster made with initdb and pg_ctl from the installed server binaries:
/// a temp directory, a free port on 127.0.0.1, <c>wal_level=logical</c>, trust authentication on
/// loopback. Under root the server programs run as the <c>postgres</c> OS user (initdb refuses root).
/// </summary>
public sealed class PostgresCluster
{
    private PostgresCluster(string name, string binDirectory, string dataDirectory, int port)
    {
        Name = name;
        BinDirectory = binDirectory;
        DataDirectory = dataDirectory;
        Port = port;
    }

    public string Name { get; }

    public string BinDirectory { get; }

    public string DataDirectory { get; }

    public int Port { get; }

    /// <summary>libpq URI for <paramref name="database"/> as superuser <c>postgres</c>.</summary>
    public string Uri(string database = "postgres") => $"postgres://postgres@127.0.0.1:{Port}/{System.Uri.EscapeDataString(database)}";

    /// <summary>Npgsql connection string (for test code talking to the cluster directly).</summary>
    public string ConnectionString(string database = "postgres") =>
        new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Port, Username = "postgres", Database = database, Pooling = false, Timeout = 30 }.ConnectionString;

    internal static bool RunningAsRoot => Environment.UserName == "root";

    /// <summary>Finds initdb and pg_ctl: $PG_BIN, else the newest /usr/lib/postgresql/*/bin.</summary>
    /// <exception cref="InvalidOperationException">No server binaries: the message says what to install.</exception>
    public static string FindBinDirectory()
    {
        var fromEnv = Environment.GetEnvironmentVariable("PG_BIN");
        if (!string.IsNullOrEmpty(fromEnv))
        {
            return File.Exists(Path.Combine(fromEnv, "initdb"))
                ? fromEnv
                : throw new InvalidOperationException($"PG_BIN={fromEnv} has no initdb: point it at a PostgreSQL server bin directory");
        }

        var candidates = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql")
                .Select(d => (Dir: Path.Combine(d, "bin"), Version: int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0))
                .Where(c => File.Exists(Path.Combine(c.Dir, "initdb")) && File.Exists(Path.Combine(c.Dir, "pg_ctl")))
                .OrderByDescending(c => c.Version)
                .ToList()
            : [];
        return candidates.Count > 0
            ? candidates[0].Dir
            : throw new InvalidOperationException(
                "PostgreSQL server binaries (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin. " +
                "Install them with 'apt-get install -y postgresql' (scripts/test.sh does this), or set PG_BIN to their directory.");
    }

    /// <summary>Creates and starts a cluster under <paramref name="baseDirectory"/>.</summary>
    public static async Task<PostgresCluster> StartAsync(string name, string binDirectory, string baseDirectory, CancellationToken cancellationToken)
    {
        var data = Path.Combine(baseDirectory, name);
        var port = FreePort();
        await RunAsync(binDirectory, "initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"], cancellationToken).ConfigureAwait(false);
        var settings = new[]
        {
            $"port = {port}",
            "listen_addresses = '127.0.0.1'",
            $"unix_socket_directories = '{data}'",
            "wal_level = logical",
            "max_replication_slots = 64",
            "max_wal_senders = 64",
            "max_connections = 300",
            "max_prepared_transactions = 10",
            "shared_buffers = 128MB",
            // Throwaway clusters: durability across an OS crash is not needed, speed is.
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "log_min_messages = warning",
            "timezone = 'UTC'",
        };
        await File.AppendAllLinesAsync(Path.Combine(data, "postgresql.conf"), settings, cancellationToken).ConfigureAwait(false);
        await RunAsync(binDirectory, "pg_ctl", ["-D", data, "-l", Path.Combine(data, "server.log"), "-w", "-t", "60", "start"], cancellationToken).ConfigureAwait(false);
        return new PostgresCluster(name, binDirectory, data, port);
    }

    /// <summary>Stops the server at once (the data is thrown away anyway).</summary>
    public void Stop()
    {
        try
        {
            RunAsync(BinDirectory, "pg_ctl", ["-D", DataDirectory, "-m", "immediate", "-w", "stop"], CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (InvalidOperationException)
        {
            // Already stopped.
        }
    }

    /// <summary>Restarts the server (for failure tests: target restart, source restart).</summary>
    public async Task RestartAsync(CancellationToken cancellationToken)
    {
        await RunAsync(BinDirectory, "pg_ctl", ["-D", DataDirectory, "-m", "fast", "-w", "-t", "60", "restart", "-l", Path.Combine(DataDirectory, "server.log")], cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    internal static async Task RunAsync(string binDirectory, string program, string[] args, CancellationToken cancellationToken)
    {
        var path = Path.Combine(binDirectory, program);
        var start = RunningAsRoot
            ? new ProcessStartInfo("runuser", ["-u", "postgres", "--", path, .. args])
            : new ProcessStartInfo(path, args);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed with exit code {process.ExitCode}:\n{await stdout.ConfigureAwait(false)}{await stderr.ConfigureAwait(false)}");
    }
}
