using System.CommandLine;
using Replicator.Applier;
using Replicator.Core.Configuration;

namespace Replicator.Cli.Commands;

/// <summary><c>replicator run</c>: snapshot if not done yet, then replicate continuously until stopped.</summary>
public static class RunCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var command = new Command("run",
            "Replicate continuously from source to target (embedded buffer) until Ctrl-C or SIGTERM; the initial snapshot runs first when it has not finished. " +
            "Stopping is safe at any moment: nothing is acknowledged to the slot before it is committed on the target, and the next run resumes from the target's position.");
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            var source = ConfigLoader.ResolveSource(options);
            var target = ConfigLoader.ResolveTarget(options);
            return await CommandHost.RunAsync(options, monitoring: true, async (host, ct) =>
            {
                var pipeline = new ReplicationPipeline(source, target, ApplierSettingsFrom(options), options.PublicationName, host.Loggers, host.Health);
                await pipeline.RunAsync(ct).ConfigureAwait(false);
                return ExitCodes.Ok;
            }, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    public static ApplierSettings ApplierSettingsFrom(ReplicatorOptions options) => new(options.SlotName)
    {
        MaxBatchTransactions = options.Apply.MaxBatchTransactions,
        MaxBatchChanges = options.Apply.MaxBatchChanges,
        MaxBatchDuration = TimeSpan.FromMilliseconds(options.Apply.MaxBatchMilliseconds),
    };
}
