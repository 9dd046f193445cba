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

        root.Subcommands.Add(NotImplementedCommand.Create("preflight", "Check source and target are ready (wal_level, privileges, slots, pg_dump, versions).", "issue #3, Snapshotter"));
        root.Subcommands.Add(NotImplementedCommand.Create("snapshot", "Copy schema, data and sequences from a consistent snapshot of the source.", "issue #3, Snapshotter"));
        root.Subcommands.Add(NotImplementedCommand.Create("run", "Snapshot if needed, then replicate changes continuously until stopped.", "issue #4, continuous replication"));
        root.Subcommands.Add(NotImplementedCommand.Create("capture", "Read the source's logical replication stream into the buffer (Kafka).", "issue #5, Kafka buffer"));
        root.Subcommands.Add(NotImplementedCommand.Create("apply", "Apply change events from the buffer (Kafka) to the target.", "issue #5, Kafka buffer"));
        root.Subcommands.Add(VerifyCommand.Create(globals));
        root.Subcommands.Add(NotImplementedCommand.Create("cutover", "Fence writes on the source, drain, sync sequences, verify, switch.", "issue #7, cutover"));
        root.Subcommands.Add(NotImplementedCommand.Create("status", "Show replication position, lag and verifier state.", "issue #4, continuous replication"));
        root.Subcommands.Add(ConfigCommand.Create(globals));
        root.Subcommands.Add(DevKafkaCommand.Create());
        return root;
    }

    /// <summary>Parses and runs; configuration and connection errors become one clear line and exit 2.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? error = null, CancellationToken cancellationToken = default)
    {
        error ??= Console.Error;
        var parse = Build().Parse(args);
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { Error = error, EnableDefaultExceptionHandler = false }, cancellationToken).ConfigureAwait(false);
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
    }
}
