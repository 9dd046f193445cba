using Microsoft.Extensions.Logging;
using System.CommandLine;
using Npgsql;
using Replicator.Core.Configuration;
using Replicator.Core.Logging;
using Replicator.Verifier;

namespace Replicator.Cli.Commands;

/// <summary>
/// <c>replicator verify</c>: one verifier pass (see <see cref="Verification"/>). Exit 0 identical,
/// 1 different (the report says where), 2 the pass could not run.
/// </summary>
public static class VerifyCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var defaults = new VerifyRequest();
        var reportJson = new Option<FileInfo?>("--report-json") { Description = "Also write the report as JSON to FILE." };
        var format = new Option<string>("--format") { Description = "Report on stdout as text or json.", DefaultValueFactory = _ => "text" };
        format.AcceptOnlyFromAmong("text", "json");
        var repair = new Option<bool>("--repair") { Description = "Recopy differing rows from the source inside a new consistent cut, then check them again." };
        var tables = new Option<string[]>("--table") { Description = "Verify only this table (schema.table, unquoted; repeatable). A partitioned table means its partitions.", AllowMultipleArgumentsPerToken = false };
        var jobs = new Option<int>("--jobs", "-j") { Description = "Parallel workers, each with one connection per side.", DefaultValueFactory = _ => defaults.Jobs };
        var chunkRows = new Option<long>("--chunk-rows") { Description = "Rows per unit of work: a block slice of the table (single-column key) or a key range (composite key).", DefaultValueFactory = _ => defaults.ChunkRows };
        var bisectRows = new Option<int>("--bisect-rows") { Description = "Rows per hashed bucket; a differing key range is compared row by row once it holds at most this many rows.", DefaultValueFactory = _ => defaults.BisectRows };
        var maxListed = new Option<int>("--max-listed") { Description = "Differences listed per table; more are counted.", DefaultValueFactory = _ => defaults.MaxListedDifferences };
        var noBarrier = new Option<bool>("--no-barrier") { Description = "Take a plain target snapshot even if replication runs (differences may then be replication lag)." };
        var barrierTimeout = new Option<double>("--barrier-timeout") { Description = "Seconds to wait for the applier to reach the cut.", DefaultValueFactory = _ => defaults.BarrierTimeout.TotalSeconds };
        var noSchema = new Option<bool>("--no-schema-check") { Description = "Skip comparing tables, columns, indexes, constraints and sequences." };
        var interval = new Option<string?>("--interval") { Description = "Run continuously: a pass every INTERVAL (e.g. 15m, 6h) until stopped, serving /metrics; exit codes as for one pass do not apply." };

        var command = new Command("verify",
            "Compare source and target content at a consistent cut: chunk hashes inside both databases, bisected to the differing rows.\n" +
            "Exit 0 identical (or all differences repaired by --repair), 1 different (see the report), 2 error.")
        {
            reportJson, format, repair, tables, jobs, chunkRows, bisectRows, maxListed, noBarrier, barrierTimeout, noSchema, interval,
        };

        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            var source = ConfigLoader.ResolveSource(options);
            var target = ConfigLoader.ResolveTarget(options);
            var request = new VerifyRequest
            {
                SlotName = options.SlotName,
                UseBarrier = !parse.GetValue(noBarrier),
                BarrierTimeout = TimeSpan.FromSeconds(parse.GetValue(barrierTimeout)),
                Jobs = parse.GetValue(jobs),
                ChunkRows = parse.GetValue(chunkRows),
                BisectRows = parse.GetValue(bisectRows),
                MaxListedDifferences = parse.GetValue(maxListed),
                Tables = parse.GetValue(tables) ?? [],
                SchemaCheck = !parse.GetValue(noSchema),
                Repair = parse.GetValue(repair),
            };
            if (parse.GetValue(interval) is { } every)
            {
                var period = Durations.Parse(every, "--interval");
                return await CommandHost.RunAsync(options, monitoring: true, async (host, ct) =>
                {
                    await RunContinuouslyAsync(new ContinuousVerifier(request, source, target, period, host.Loggers), host, ct).ConfigureAwait(false);
                    return ExitCodes.Ok;
                }, cancellationToken).ConfigureAwait(false);
            }

            using var loggerFactory = ReplicatorLogging.CreateFactory(options.Logging.Level);
            VerifyReport report;
            try
            {
                report = await Verification.RunPassAsync(request, source, target, loggerFactory, cancellationToken).ConfigureAwait(false);
            }
            catch (VerifyException e)
            {
                await Console.Error.WriteLineAsync($"replicator verify: {e.Message}").ConfigureAwait(false);
                return ExitCodes.Error;
            }
            catch (PostgresException e)
            {
                // Name the side: the same message from two servers is otherwise ambiguous. Never the password.
                await Console.Error.WriteLineAsync($"replicator verify: {e.SqlState}: {e.MessageText} (source {source}, target {target})").ConfigureAwait(false);
                return ExitCodes.Error;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return ExitCodes.Interrupted;
            }
            catch (Exception e) when (e is not (OperationCanceledException or ConfigurationException or NpgsqlException))
            {
                await Console.Error.WriteLineAsync($"replicator verify: unexpected error: {e.GetType().Name}: {e.Message}").ConfigureAwait(false);
                return ExitCodes.Error;
            }

            if (parse.GetValue(reportJson) is { } file)
                await File.WriteAllTextAsync(file.FullName, report.ToJson(), cancellationToken).ConfigureAwait(false);
            await Console.Out.WriteAsync(parse.GetValue(format) == "json" ? report.ToJson() + Environment.NewLine : report.ToText()).ConfigureAwait(false);
            return report.Identical || report.Repaired ? ExitCodes.Ok : ExitCodes.Failed;
        });
        return command;
    }

    /// <summary>Runs passes until cancelled, logging each result and keeping /readyz honest.</summary>
    public static async Task RunContinuouslyAsync(ContinuousVerifier verifier, CommandHost host, CancellationToken cancellationToken)
    {
        var logger = host.Loggers.CreateLogger("Replicator.Verifier");
        verifier.PassCompleted += _ => logger.LogInformation("Verifier: {Status}", verifier.Status.Describe());
        host.Health.Set("verifier", ready: true, $"a pass every {verifier.Interval}");
        try
        {
            await verifier.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }
}
