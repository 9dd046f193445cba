using System.CommandLine;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Applier;
using Replicator.Core.Configuration;
using Replicator.Core.State;
using Replicator.Verifier;

namespace Replicator.Cli.Commands;

/// <summary>
/// <c>replicator sync</c>: periodic sync for hybrid-cloud setups (a Kubernetes CronJob or cron):
/// apply everything up to the source's WAL position at start, stop, verify, exit.
/// </summary>
public static class SyncCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var timeout = new Option<string>("--timeout") { Description = "Give up when not caught up after this long (e.g. 30m).", DefaultValueFactory = _ => "1h" };
        var noVerify = new Option<bool>("--no-verify") { Description = "Skip the verifier pass at the end." };
        var command = new Command("sync",
            "Apply everything the source has committed up to now (taking the initial snapshot first if needed), then verify and exit: " +
            "for a CronJob that keeps a copy in step. Exit 0 in step and identical, 1 differences found, 2 error or timeout.")
        {
            timeout, noVerify,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            var source = ConfigLoader.ResolveSource(options);
            var target = ConfigLoader.ResolveTarget(options);
            var limit = Durations.Parse(parse.GetValue(timeout)!, "--timeout");
            return await CommandHost.RunAsync(options, monitoring: true, async (host, ct) =>
            {
                var logger = host.Loggers.CreateLogger("Replicator.Cli");
                if (await RunCommand.SnapshotFirstAsync("sync", options, source, target, host, ct).ConfigureAwait(false) is { } failed)
                    return failed;
                await using var sourceData = NpgsqlDataSource.Create(source.ToNpgsqlConnectionString());
                NpgsqlLogSequenceNumber goal;
                await using (var insertPosition = sourceData.CreateCommand("SELECT pg_current_wal_insert_lsn()"))
                    goal = (NpgsqlLogSequenceNumber)(await insertPosition.ExecuteScalarAsync(ct).ConfigureAwait(false))!;
                logger.LogInformation("Syncing up to source position {Lsn}", goal);

                using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var pipeline = new ReplicationPipeline(source, target, RunCommand.ApplierSettingsFrom(options), options.PublicationName, host.Loggers, host.Health);
                var running = pipeline.RunAsync(stop.Token);
                var deadline = DateTime.UtcNow + limit;
                while (true)
                {
                    if (running.IsCompleted)
                    {
                        await running.ConfigureAwait(false);
                        await Console.Error.WriteLineAsync("replicator sync: replication stopped before catching up").ConfigureAwait(false);
                        return ExitCodes.Error;
                    }

                    var confirmed = await SourceSlot.ConfirmedAsync(sourceData, options.SlotName, ct).ConfigureAwait(false);
                    if (confirmed >= goal)
                        break;
                    if (DateTime.UtcNow > deadline)
                    {
                        await stop.CancelAsync().ConfigureAwait(false);
                        await running.ConfigureAwait(false);
                        await Console.Error.WriteLineAsync($"replicator sync: not caught up to {goal} within {limit} (at {confirmed}); the next run goes on from there").ConfigureAwait(false);
                        return ExitCodes.Error;
                    }

                    await Task.Delay(200, ct).ConfigureAwait(false);
                }

                await stop.CancelAsync().ConfigureAwait(false);
                await running.ConfigureAwait(false);
                logger.LogInformation("Caught up to {Lsn}", goal);
                if (parse.GetValue(noVerify))
                    return ExitCodes.Ok;

                // Nothing applies any more: a plain target snapshot is a consistent cut.
                var report = await Verification.RunPassAsync(new VerifyRequest { SlotName = options.SlotName, UseBarrier = false, SchemaCheck = false }, source, target, host.Loggers, ct).ConfigureAwait(false);
                await Console.Out.WriteAsync(report.ToText()).ConfigureAwait(false);
                return report.Identical ? ExitCodes.Ok : ExitCodes.Failed;
            }, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }
}
