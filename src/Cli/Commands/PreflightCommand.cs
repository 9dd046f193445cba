using System.CommandLine;
using Replicator.Core.Configuration;
using Replicator.Snapshotter;

namespace Replicator.Cli.Commands;

/// <summary><c>replicator preflight</c>: the snapshot's read-only checks, on their own.</summary>
public static class PreflightCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var noSlot = new Option<bool>("--no-slot") { Description = "Check for a one-off copy without a slot (skips wal_level, replication and slot checks)." };
        var command = new Command("preflight",
            "Check source and target are ready for a snapshot and replication (connections, wal_level, replication privilege, free slots " +
            "and WAL senders, versions, pg_dump, empty target, replica identities). Changes nothing. Exit codes: 0 ready, 1 problems found, 2 error.");
        command.Options.Add(noSlot);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            var source = ConfigLoader.ResolveSource(options);
            var target = ConfigLoader.ResolveTarget(options);
            var report = await Preflight.RunAsync(options, source, target, parse.GetValue(noSlot), cancellationToken).ConfigureAwait(false);
            foreach (var note in report.Notes)
                Console.Out.WriteLine($"note: {note}");
            if (report.Ok)
            {
                Console.Out.WriteLine($"preflight ok: source {source} (PostgreSQL {report.SourceMajorVersion}), target {target}, pg_dump in {report.Tools?.BinDirectory}" +
                                      (report.Resume ? "; an interrupted snapshot will resume" : ""));
                return ExitCodes.Ok;
            }

            foreach (var problem in report.Problems)
                await Console.Error.WriteLineAsync($"problem: {problem}").ConfigureAwait(false);
            await Console.Error.WriteLineAsync($"preflight found {report.Problems.Count} problem(s); nothing was changed.").ConfigureAwait(false);
            return ExitCodes.Failed;
        });
        return command;
    }
}
