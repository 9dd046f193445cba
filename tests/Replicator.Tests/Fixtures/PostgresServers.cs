using System.Diagnostics;
using Npgsql;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Replicator.Tests.Fixtures;

/// <summary>
/// The two clusters (source and target) shared by the whole test run, started once on first use.
/// They are always stopped and deleted afterwards: at normal exit by a ProcessExit handler, and if
/// the test host is killed or cancelled by a detached watchdog that waits for this process to
/// disappear and then stops the servers and removes the directory.
/// </summary>
public sealed class PostgresServers
{
    private static readonly Lazy<Task<PostgresServers>> Instance = new(StartAsync);

    private PostgresServers(PostgresCluster source, PostgresCluster target, string baseDirectory, TimeSpan startup)
    {
        Source = source;
        Target = target;
        BaseDirectory = baseDirectory;
        Startup = startup;
    }

    public PostgresCluster Source { get; }

    public PostgresCluster Target { get; }

    public string BaseDirectory { get; }

    /// <summary>How long starting both clusters took.</summary>
    public TimeSpan Startup { get; }

    public static Task<PostgresServers> GetAsync() => Instance.Value;

    private static async Task<PostgresServers> StartAsync()
    {
        var stopwatch = Stopwatch.StartNew();
        var bin = PostgresCluster.FindBinDirectory();
        var baseDirectory = Path.Combine(Path.GetTempPath(), $"replicator-tests-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(baseDirectory);
        if (PostgresCluster.RunningAsRoot && !OperatingSystem.IsWindows())
            File.SetUnixFileMode(baseDirectory, (UnixFileMode)0b111_111_111);
        StartWatchdog(bin, baseDirectory);
        var sourceTask = PostgresCluster.StartAsync("source", bin, baseDirectory, CancellationToken.None);
        var targetTask = PostgresCluster.StartAsync("target", bin, baseDirectory, CancellationToken.None);
        var servers = new PostgresServers(await sourceTask.ConfigureAwait(false), await targetTask.ConfigureAwait(false), baseDirectory, stopwatch.Elapsed);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => servers.StopAndDelete();
        return servers;
    }

    private void StopAndDelete()
    {
        Source.Stop();
        Target.Stop();
        try
        {
            Directory.Delete(BaseDirectory, recursive: true);
        }
        catch (IOException)
        {
            // The watchdog removes it once this process is gone.
        }
    }

    private static void StartWatchdog(string bin, string baseDirectory)
    {
        var asUser = PostgresCluster.RunningAsRoot ? "runuser -u postgres -- " : "";
        var script =
            $"while kill -0 {Environment.ProcessId} 2>/dev/null; do sleep 1; done; " +
            $"for d in '{baseDirectory}'/*/; do [ -f \"$d/postmaster.pid\" ] && {asUser}'{bin}/pg_ctl' -D \"$d\" -m immediate stop >/dev/null 2>&1; done; " +
            $"rm -rf '{baseDirectory}'; pkill -f '{(ProcessRunner.Cli.Prefix.Length > 0 ? ProcessRunner.Cli.Prefix[0] : ProcessRunner.Cli.Program)}' || true";
        var start = new ProcessStartInfo("setsid", ["bash", "-c", script])
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start);
    }

    /// <summary>Creates a fresh, uniquely named database on both clusters; disposing drops them.</summary>
    public async Task<TestDatabases> CreateDatabasesAsync(string purpose)
    {
        var name = "t_" + new string(purpose.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_').Take(30).ToArray()) + "_" + Guid.NewGuid().ToString("N")[..8];
        foreach (var cluster in new[] { Source, Target })
        {
            await using var conn = new NpgsqlConnection(cluster.ConnectionString());
            await conn.OpenAsync().ConfigureAwait(false);
            await using var cmd = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", conn);
            await cmd.ExecuteNonQueryAsync().ConfigureAwait(false);
        }

        return new TestDatabases(this, name);
    }
}

/// <summary>A database of the same name on source and target, dropped (with its slots) on dispose.</summary>
public sealed class TestDatabases : IAsyncDisposable
{
    private readonly PostgresServers _servers;

    internal TestDatabases(PostgresServers servers, string name)
    {
        _servers = servers;
        Name = name;
    }

    public string Name { get; }

    public string SourceUri => _servers.Source.Uri(Name);

    public string TargetUri => _servers.Target.Uri(Name);

    public string SourceConnectionString => _servers.Source.ConnectionString(Name);

    public string TargetConnectionString => _servers.Target.ConnectionString(Name);

    public PostgresCluster SourceCluster => _servers.Source;

    public PostgresCluster TargetCluster => _servers.Target;

    public async ValueTask DisposeAsync()
    {
        foreach (var cluster in new[] { _servers.Source, _servers.Target })
        {
            await using var conn = new NpgsqlConnection(cluster.ConnectionString());
            await conn.OpenAsync().ConfigureAwait(false);
            // Slots pin a database: drop them first (ending any walsender still holding one).
            await using (var slots = new NpgsqlCommand(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL", conn))
            {
                slots.Parameters.AddWithValue(Name);
                await slots.ExecuteNonQueryAsync().ConfigureAwait(false);
            }

            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    await using var drop = new NpgsqlCommand("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", conn);
                    drop.Parameters.AddWithValue(Name);
                    await drop.ExecuteNonQueryAsync().ConfigureAwait(false);
                    break;
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse && attempt < 50)
                {
                    await Task.Delay(100).ConfigureAwait(false);
                }
            }

            await using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{Name}\" WITH (FORCE)", conn);
            await cmd.ExecuteNonQueryAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>
/// Class fixture giving tests the shared clusters; it reports the start-up time once through
/// xunit's diagnostic messages (shown in the test output).
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private static int _reported;
    private readonly IMessageSink _sink;

    public PostgresFixture(IMessageSink sink) => _sink = sink;

    public PostgresServers Servers { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Servers = await PostgresServers.GetAsync().ConfigureAwait(false);
        if (Interlocked.Exchange(ref _reported, 1) == 0)
        {
            _sink.OnMessage(new DiagnosticMessage(
                $"PostgreSQL fixture: source on port {Servers.Source.Port}, target on port {Servers.Target.Port}, both started in {Servers.Startup.TotalSeconds:F1} s ({Servers.BaseDirectory})"));
        }
    }

    public Task DisposeAsync() => Task.CompletedTask;

    public Task<TestDatabases> CreateDatabasesAsync(string purpose) => Servers.CreateDatabasesAsync(purpose);
}
