using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;
using Replicator.Core.Errors;
using Replicator.Core.Hosting;
using Replicator.Core.Logging;

namespace Replicator.Cli;

/// <summary>
/// What a long-running subcommand needs around its job: the loaded configuration, logging, the
/// /metrics + /healthz + /readyz server, and one place that turns failures into an exit code and
/// one clear line (never a stack trace, never a password).
/// </summary>
public sealed class CommandHost : IAsyncDisposable
{
    private MonitoringServer? _monitoring;

    private CommandHost(ReplicatorOptions options, ILoggerFactory loggers)
    {
        Options = options;
        Loggers = loggers;
    }

    public ReplicatorOptions Options { get; }

    public ILoggerFactory Loggers { get; }

    public HealthState Health { get; } = new();

    /// <summary>The monitoring address, once started.</summary>
    public Uri? MonitoringAddress => _monitoring?.Address;

    public static async Task<CommandHost> StartAsync(ReplicatorOptions options, bool monitoring, CancellationToken cancellationToken)
    {
        var host = new CommandHost(options, ReplicatorLogging.CreateFactory(options.Logging.Level));
        if (monitoring && options.Metrics.Enabled)
        {
            host._monitoring = await MonitoringServer.StartAsync(options.Metrics.Listen, host.Health, cancellationToken).ConfigureAwait(false);
            host.Loggers.CreateLogger("replicator").LogInformation("Serving /metrics, /healthz and /readyz at {Address}", host._monitoring.Address);
        }

        return host;
    }

    /// <summary>Runs <paramref name="job"/>; Ctrl-C or SIGTERM ends it cleanly with <see cref="ExitCodes.Interrupted"/> unless the job itself treats it as done.</summary>
    public static async Task<int> RunAsync(ReplicatorOptions options, bool monitoring, Func<CommandHost, CancellationToken, Task<int>> job, CancellationToken cancellationToken)
    {
        await using var host = await StartAsync(options, monitoring, cancellationToken).ConfigureAwait(false);
        try
        {
            return await job(host, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return ExitCodes.Interrupted;
        }
        catch (ReplicationException e)
        {
            await Console.Error.WriteLineAsync($"replicator: {e.Message}").ConfigureAwait(false);
            return ExitCodes.Error;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_monitoring is not null)
            await _monitoring.DisposeAsync().ConfigureAwait(false);
        Loggers.Dispose();
    }
}
