using System.CommandLine;
using Microsoft.Extensions.Logging;
using Npgsql;
using Replicator.Applier;
using Replicator.Core.Configuration;
using Replicator.Cutover;
using Replicator.Verifier;

namespace Replicator.Cli.Commands;

/// <summary>
/// <c>replicator cutover</c> (source → target) and <c>replicator rollback</c> (back to the source,
/// through the reverse replication a <c>cutover --reverse</c> started). See <see cref="CutoverRunner"/>.
/// Exit 0 switched (or a dry run whose preconditions hold), 1 preconditions fail, the cutover
/// aborted (the side being left is writable again), or it switched while a write got through the
/// fence, 2 error.
/// </summary>
public static class CutoverCommand
{
    public static Command Create(GlobalOptions globals) => Build(globals, rollback: false);

    public static Command CreateRollback(GlobalOptions globals) => Build(globals, rollback: true);

    private static Command Build(GlobalOptions globals, bool rollback)
    {
        var defaults = new CutoverOptions();
        var dryRun = new Option<bool>("--dry-run") { Description = "Check and report the preconditions only; change nothing." };
        var maxLag = new Option<long>("--max-lag") { Description = "Most bytes of WAL the slot may be behind when starting.", DefaultValueFactory = _ => defaults.MaxLagBytes };
        var maxVerifyAge = new Option<string>("--max-verify-age") { Description = "How old the last clean verifier pass may be (e.g. 30m, 6h), or 'off'.", DefaultValueFactory = _ => rollback ? "24h" : "1h" };
        var maxTransactionAge = new Option<string>("--max-transaction-age") { Description = "Transactions open longer than this on the side being left fail the preconditions.", DefaultValueFactory = _ => "30s" };
        var allowRoles = new Option<string[]>("--allow-role") { Description = "A role whose sessions the fence leaves alone (repeatable); a write by it after the fence stops the cutover." };
        var fenceGrace = new Option<string>("--fence-grace") { Description = "Time transactions running at the fence get to commit before their sessions are ended.", DefaultValueFactory = _ => "500ms" };
        var fenceCommand = new Option<string?>("--fence-command") { Description = "Fence with this shell command instead (e.g. a PgBouncer PAUSE; needs --unfence-command); the database is then not made read-only." };
        var unfenceCommand = new Option<string?>("--unfence-command") { Description = "Shell command that lifts --fence-command's fence when the cutover aborts, even when the fence command itself failed (e.g. PgBouncer RESUME)." };
        var drainTimeout = new Option<string>("--drain-timeout") { Description = "How long the applier may take to apply everything up to the fence; then the fence is lifted and the cutover aborts.", DefaultValueFactory = _ => "30s" };
        var finalVerify = new Option<string>("--final-verify") { Description = "While writes are fenced, verify: changed (tables changed since the last clean pass; all when small), full, or none.", DefaultValueFactory = _ => "changed" };
        finalVerify.AcceptOnlyFromAmong("changed", "full", "none");
        var switchCommand = new Option<string?>("--switch-command") { Description = "Shell command that points the application at the new side (REPLICATOR_NEW_HOST, _PORT, _DATABASE, _USER, _ENDPOINT in its environment); failure aborts." };
        var switchUrl = new Option<Uri?>("--switch-url") { Description = "URL that gets an HTTP POST with the new endpoint as JSON; a non-2xx answer aborts." };
        var hookTimeout = new Option<string>("--hook-timeout") { Description = "Time limit of each hook.", DefaultValueFactory = _ => "30s" };
        var reverseSlot = new Option<string>("--reverse-slot") { Description = "Slot and publication on the target for replication back to the source.", DefaultValueFactory = _ => defaults.ReverseSlot };
        var keepSlot = new Option<bool>("--keep-slot") { Description = "Keep the slot of the direction left (by default it is dropped so that side keeps no WAL for it)." };
        var format = new Option<string>("--format") { Description = "Report on stdout as text or json.", DefaultValueFactory = _ => "text" };
        format.AcceptOnlyFromAmong("text", "json");
        var reverse = new Option<bool>("--reverse") { Description = "Before the target takes writes, set up replication target → source, and run it after the switch (until stopped, or until 'replicator rollback')." };

        var command = rollback
            ? new Command("rollback",
                "Move the application back from the target to the source after 'cutover --reverse', losing none of the writes made on the target: " +
                "the same steps as cutover in the other direction (fence the target, drain the reverse replication, sequences, verify, source writable again, switch hook).\n" +
                "Exit 0 switched back, 1 preconditions fail or aborted (the target stays writable) or switched back while a write got through the fence (named in the report), 2 error.")
            : new Command("cutover",
                "Switch the application from source to target while replication runs: preconditions, write fence on the source, drain to the fence LSN, " +
                "sequences, final verification, target ready (triggers, constraints), a last look for writes that got through the fence, switch hook; reports the write outage in milliseconds.\n" +
                "Exit 0 switched (or a dry run whose preconditions hold), 1 preconditions fail or aborted (the source is writable again) or switched while a write got through the fence (named in the report), 2 error.");
        foreach (var option in new Option[] { dryRun, maxLag, maxVerifyAge, maxTransactionAge, allowRoles, fenceGrace, fenceCommand, unfenceCommand, drainTimeout,
                     finalVerify, switchCommand, switchUrl, hookTimeout, reverseSlot, keepSlot, format })
            command.Options.Add(option);
        if (!rollback)
            command.Options.Add(reverse);

        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            var source = ConfigLoader.ResolveSource(options);
            var target = ConfigLoader.ResolveTarget(options);
            var verifyAge = parse.GetValue(maxVerifyAge)!;
            var cutover = new CutoverOptions
            {
                Slot = rollback ? parse.GetValue(reverseSlot)! : options.SlotName,
                Publication = rollback ? parse.GetValue(reverseSlot)! : options.PublicationName,
                DryRun = parse.GetValue(dryRun),
                MaxLagBytes = parse.GetValue(maxLag),
                MaxVerifyAge = verifyAge.Equals("off", StringComparison.OrdinalIgnoreCase) ? null : Durations.Parse(verifyAge, "--max-verify-age"),
                MaxTransactionAge = Durations.Parse(parse.GetValue(maxTransactionAge)!, "--max-transaction-age"),
                AllowRoles = parse.GetValue(allowRoles) ?? [],
                FenceGrace = Durations.Parse(parse.GetValue(fenceGrace)!, "--fence-grace"),
                FenceCommand = parse.GetValue(fenceCommand),
                UnfenceCommand = parse.GetValue(unfenceCommand),
                DrainTimeout = Durations.Parse(parse.GetValue(drainTimeout)!, "--drain-timeout"),
                FinalVerify = Enum.Parse<FinalVerification>(parse.GetValue(finalVerify)!, ignoreCase: true),
                SwitchCommand = parse.GetValue(switchCommand),
                SwitchUrl = parse.GetValue(switchUrl),
                HookTimeout = Durations.Parse(parse.GetValue(hookTimeout)!, "--hook-timeout"),
                Reverse = !rollback && parse.GetValue(reverse),
                ReverseSlot = parse.GetValue(reverseSlot)!,
                KeepSlot = parse.GetValue(keepSlot),
            };
            if (cutover.UnfenceCommand is not null && cutover.FenceCommand is null)
                throw new ConfigurationException("--unfence-command", "needs --fence-command (the database fence is lifted by the cutover itself)");
            if (cutover.FenceCommand is not null && cutover.UnfenceCommand is null)
                throw new ConfigurationException("--fence-command", "needs --unfence-command too: a cutover that aborts must lift the pooler's fence (e.g. PgBouncer RESUME)");
            var (from, to) = rollback ? (target, source) : (source, target);
            var name = rollback ? "rollback" : "cutover";
            var json = parse.GetValue(format) == "json";

            return await CommandHost.RunAsync(options, monitoring: cutover.Reverse, async (host, ct) =>
            {
                var logger = host.Loggers.CreateLogger("Replicator.Cutover");
                CutoverReport report;
                try
                {
                    report = await new CutoverRunner(cutover, from, to, name, host.Loggers).RunAsync(ct).ConfigureAwait(false);
                }
                catch (CutoverException e)
                {
                    if (e.Report is { } partial)
                        await Console.Out.WriteAsync(json ? partial.ToJson() + Environment.NewLine : partial.ToText()).ConfigureAwait(false);
                    await Console.Error.WriteLineAsync($"replicator {name}: aborted: {e.Message}. " +
                        (e.SourceWritable ? $"The {(rollback ? "target" : "source")} is writable again and replication goes on." : "")).ConfigureAwait(false);
                    return e.SourceWritable ? ExitCodes.Failed : ExitCodes.Error;
                }
                catch (PostgresException e)
                {
                    // Failed before the fence went up (connecting, preconditions): nothing was changed.
                    await Console.Error.WriteLineAsync($"replicator {name}: {e.SqlState}: {e.MessageText} (from {from}, to {to}); nothing was changed").ConfigureAwait(false);
                    return ExitCodes.Error;
                }

                await Console.Out.WriteAsync(json ? report.ToJson() + Environment.NewLine : report.ToText()).ConfigureAwait(false);
                await Console.Out.FlushAsync(ct).ConfigureAwait(false);
                if (report.Outcome != "switched")
                    return report.Preconditions.All(p => p.Ok) ? ExitCodes.Ok : ExitCodes.Failed;
                // Switched, but a write that got through while the switch hook ran is missing on the target.
                var switched = report.WriteLost ? ExitCodes.Failed : ExitCodes.Ok;
                if (!cutover.Reverse)
                    return switched;

                logger.LogInformation("Reverse replication {From} → {To} (slot {Slot}) runs until stopped; 'replicator rollback' moves the application back",
                    to, from, cutover.ReverseSlot);
                var pipeline = new ReplicationPipeline(to, from, RunCommand.ApplierSettingsFrom(options, cutover.ReverseSlot), cutover.ReverseSlot, host.Loggers, host.Health);
                await pipeline.RunAsync(ct).ConfigureAwait(false);
                if (pipeline.Switched)
                    logger.LogInformation("A rollback moved the application back to {Source}: reverse replication has stopped", from);
                return ct.IsCancellationRequested && !pipeline.Switched ? ExitCodes.Interrupted : switched;
            }, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

}
