using System.CommandLine;
using Npgsql;
using Replicator.Cli.Commands;
using Replicator.Core.Configuration;

namespace Replicator.Cli;

/// <summary>The <c>replicator</c> command tree. Program.cs only invokes it; tests invoke it in process.</summary>
public static class CliApp
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "Replicator: continuous PostgreSQL-to-PostgreSQL replication for migrations with a write outage of seconds.\n" +
            "Configuration: --config FILE (JSON), REPLICATOR_* environment variables (REPLICATOR_Source__ConnectionString), flags (win).");
        var globals = new GlobalOptions();
        foreach (var option in globals.All)
            root.Options.Add(option);

        root.Subcommands.Add(PreflightCommand.Create(globals));
        root.Subcommands.Add(SnapshotCommand.Create(globals));
        root.Subcommands.Add(RunCommand.Create(globals));
        root.Subcommands.Add(RunCommand.CreateCapture(globals));
        root.Subcommands.Add(RunCommand.CreateApply(globals));
        root.Subcommands.Add(VerifyCommand.Create(globals));
        root.Subcommands.Add(CutoverCommand.Create(globals));
        root.Subcommands.Add(CutoverCommand.CreateRollback(globals));
        root.Subcommands.Add(StatusCommand.Create(globals));
        root.Subcommands.Add(ConfigCommand.Create(globals));
        root.Subcommands.Add(DevKafkaCommand.Create());
        root.Subcommands.Add(SyncCommand.Create(globals));
        return root;
    }

    /// <summary>Parses and runs; configuration and connection errors become one clear line and exit 2.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? error = null, CancellationToken cancellationToken = default)
    {
        error ??= Console.Error;
        var parse = Build().Parse(args);
        try
        {
            // SIGTERM cancels the job; it then gets up to 20 s to stop cleanly (a Kafka consumer
            // leaving its group, a batch rolling back) before the runtime ends it with 143.
            // Kubernetes' default grace period is 30 s.
            return await parse.InvokeAsync(new InvocationConfiguration
            {
                Error = error,
                EnableDefaultExceptionHandler = false,
                ProcessTerminationTimeout = TimeSpan.FromSeconds(20),
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (ConfigurationException e)
        {
            await error.WriteLineAsync($"replicator: {e.Message}").ConfigureAwait(false);
            return ExitCodes.Error;
        }
        catch (NpgsqlException e)
        {
            await error.WriteLineAsync($"replicator: {e.Message}").ConfigureAwait(false);
            return ExitCodes.Error;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return ExitCodes.Interrupted;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await error.WriteLineAsync($"replicator: internal error, please report it with this text: {e}").ConfigureAwait(false);
            return ExitCodes.Error;
        }
    }
}
