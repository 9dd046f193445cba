using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;
using Replicator.Core.Hosting;
using Replicator.Core.Logging;
using Replicator.Snapshotter;
using Spectre.Console;

namespace Replicator.Cli.Commands;

/// <summary><c>replicator snapshot</c>: the initial copy (CLI only; the work is <see cref="SnapshotRunner"/>).</summary>
public static class SnapshotCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var logLevel = globals.All.OfType<Option<string?>>().First(o => o.Name == "--log-level");
        var jobs = globals.Flag("--jobs", "Snapshot:Jobs", "Parallel COPY workers and index builds (default 4).", recursive: false);
        var chunkRows = globals.Flag("--chunk-rows", "Snapshot:ChunkRows", "Rows per range when a table is split; a table with more rows, or over 1 GiB, is split (default 10000000).", recursive: false);
        var copyOwnership = new Option<bool>("--copy-ownership") { Description = "Copy owners and grants (needs the same roles on the target; off for managed targets)." };
        var noSlot = new Option<bool>("--no-slot") { Description = "One-off copy from a plain exported snapshot: no slot, no publication, no state on the target, not resumable." };
        var noAnalyze = new Option<bool>("--no-analyze") { Description = "Skip the final ANALYZE of the copied tables (Snapshot:Analyze; the planner then has no statistics until autovacuum runs)." };
        var validateForeignKeys = new Option<bool>("--validate-foreign-keys")
        {
            Description = "Build every foreign key after the data and validate it by a scan (Snapshot:ValidateForeignKeys); by default a valid key to a small table is created before the data and its rows are not checked one by one.",
        };
        var command = new Command("snapshot",
            "Copy schema, data and sequences from a consistent snapshot of the source: creates the publication and the slot (kept for " +
            "'replicator run'), restores pre-data, copies tables in parallel binary COPY chunks, sets sequences, builds indexes and " +
            "constraints in parallel, compares row counts and gathers planner statistics (ANALYZE). Rerun after an interruption to resume. " +
            "Exit codes: 0 done, 1 preflight or row-count check failed, 2 error, 130 interrupted.");
        command.Options.Add(jobs);
        command.Options.Add(chunkRows);
        command.Options.Add(copyOwnership);
        command.Options.Add(noSlot);
        command.Options.Add(noAnalyze);
        command.Options.Add(validateForeignKeys);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            if (parse.GetValue(copyOwnership))
                options.Snapshot.CopyOwnership = true;
            if (parse.GetValue(noAnalyze))
                options.Snapshot.Analyze = false;
            if (parse.GetValue(validateForeignKeys))
                options.Snapshot.ValidateForeignKeys = true;
            var source = ConfigLoader.ResolveSource(options);
            var target = ConfigLoader.ResolveTarget(options);
            var interactive = !Console.IsErrorRedirected && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            // On a terminal the live display shows progress: informational log lines would only
            // tear it, unless a log level was asked for explicitly.
            var level = interactive && parse.GetResult(logLevel) is null && Environment.GetEnvironmentVariable("REPLICATOR_LOGGING__LEVEL") is null
                ? "Warning" : options.Logging.Level;
            using var loggerFactory = ReplicatorLogging.CreateFactory(level);
            var logger = loggerFactory.CreateLogger("Replicator.Cli");
            await using var monitoring = await StartMonitoringAsync(options, logger, cancellationToken).ConfigureAwait(false);
            return await RunReportedAsync("snapshot", "The snapshot was not handed over to replication.", () => interactive
                ? ShowProgressAsync(options, source, target, loggerFactory, parse.GetValue(noSlot), cancellationToken)
                : SnapshotRunner.RunAsync(options, source, target, loggerFactory, null, parse.GetValue(noSlot), cancellationToken)).ConfigureAwait(false);
        });
        return command;
    }

    private static async Task<SnapshotResult> ShowProgressAsync(ReplicatorOptions options, ConnectionInfo source, ConnectionInfo target,
        ILoggerFactory loggerFactory, bool noSlot, CancellationToken cancellationToken)
    {
        var tracker = new SnapshotProgressTracker();
        var run = SnapshotRunner.RunAsync(options, source, target, loggerFactory, tracker, noSlot, cancellationToken);
        await ProgressDisplay.ShowAsync(tracker, run).ConfigureAwait(false);
        return await run.ConfigureAwait(false);
    }

    /// <summary>
    /// Runs a snapshot and prints its summary; turns its failures into the messages and exit codes
    /// that 'snapshot' and 'run' share: preflight refused or row counts differ → 1, anything else → 2.
    /// </summary>
    internal static async Task<int> RunReportedAsync(string command, string notHandedOver, Func<Task<SnapshotResult>> snapshot)
    {
        try
        {
            PrintSummary(await snapshot().ConfigureAwait(false));
            return ExitCodes.Ok;
        }
        catch (PreflightException e)
        {
            await Console.Error.WriteLineAsync($"replicator {command}: {e.Message}\nNothing was changed.").ConfigureAwait(false);
            return ExitCodes.Failed;
        }
        catch (SnapshotMismatchException e)
        {
            PrintSummary(e.Result);
            await Console.Error.WriteLineAsync($"replicator {command}: {e.Message}. {notHandedOver}").ConfigureAwait(false);
            return ExitCodes.Failed;
        }
        catch (SnapshotException e)
        {
            await Console.Error.WriteLineAsync($"replicator {command}: {e.Message}").ConfigureAwait(false);
            return ExitCodes.Error;
        }
    }

    internal static async Task<MonitoringServer?> StartMonitoringAsync(ReplicatorOptions options, ILogger logger, CancellationToken cancellationToken)
    {
        if (!options.Metrics.Enabled)
            return null;
        try
        {
            var health = new HealthState();
            health.Set("snapshot", ready: false, "copying");
            return await MonitoringServer.StartAsync(options.Metrics.Listen, health, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            CliLog.MetricsUnavailable(logger, options.Metrics.Listen, e.Message);
            return null;
        }
    }

    internal static void PrintSummary(SnapshotResult result)
    {
        if (result.AlreadyComplete)
        {
            Console.Out.WriteLine($"Snapshot for slot {result.SlotName} is already complete on the target; nothing to do.");
            return;
        }

        var inv = CultureInfo.InvariantCulture;
        var rows = result.Tables.Select(t => new[]
        {
            t.Table.ToString(), t.SourceRows.ToString("N0", inv), t.TargetRows.ToString("N0", inv), (t.Bytes / 1048576.0).ToString("F1", inv),
            t.Chunks.ToString(inv), t.SyncLsn.ToString(), (t.Matches ? "ok" : "MISMATCH") + (t.MixedSnapshots ? " (resumed)" : "") + (t.TextFormat ? " (text)" : ""),
        }).ToList();
        string[] header = ["table", "source rows", "target rows", "MiB", "chunks", "sync lsn", "status"];
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Select(r => r[i].Length).DefaultIfEmpty(0).Max())).ToArray();
        string Line(string[] cells) => string.Join("  ", cells.Select((c, i) => i is 1 or 2 or 3 or 4 ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd();
        var o = Console.Out;
        o.WriteLine(Line(header));
        foreach (var r in rows)
            o.WriteLine(Line(r));
        o.WriteLine();
        o.WriteLine($"{result.Tables.Count} tables, {result.TotalRows.ToString("N0", inv)} rows, {(result.TotalBytes / 1048576.0).ToString("F1", inv)} MiB, " +
                    $"{result.Sequences} sequences, {result.PostDataEntries} indexes/constraints/triggers, {result.Duration.TotalSeconds.ToString("F1", inv)} s" +
                    (result.Resumed ? " (resumed)" : ""));
        if (result.SlotName is not null)
            o.WriteLine($"Slot {result.SlotName}: continuous replication starts at {result.ConsistentPoint}.");
        if (result.LargeObjects > 0)
            o.WriteLine($"Warning: {result.LargeObjects} large objects on the source were NOT copied.");
    }
}

/// <summary>The live terminal display: phase, tables, rows, bytes, rate and ETA.</summary>
internal static class ProgressDisplay
{
    public static async Task ShowAsync(SnapshotProgressTracker tracker, Task run)
    {
        await AnsiConsole.Live(new Markup("starting…")).StartAsync(async ctx =>
        {
            while (!run.IsCompleted)
            {
                ctx.UpdateTarget(Render(tracker.Read()));
                await Task.WhenAny(run, Task.Delay(250)).ConfigureAwait(false);
            }

            ctx.UpdateTarget(Render(tracker.Read()));
        }).ConfigureAwait(false);
    }

    private static Table Render(ProgressSnapshot p)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().Border(TableBorder.Simple)
            .Title($"snapshot: {Markup.Escape(p.Phase)} — {p.TablesDone}/{p.Tables.Count} tables, {p.ChunksDone}/{p.Chunks} chunks, " +
                   $"{p.Rows.ToString("N0", inv)} rows, {(p.Bytes / 1048576.0).ToString("F1", inv)} MiB, {(p.BytesPerSecond / 1048576.0).ToString("F1", inv)} MiB/s, " +
                   $"ETA {(p.Eta is { } eta ? eta.ToString(@"hh\:mm\:ss", inv) : "?")}" +
                   (p.PostDataTotal > 0 ? $", indexes {p.PostDataDone}/{p.PostDataTotal}" : ""));
        table.AddColumns("table", "chunks", "rows", "MiB", "done");
        foreach (var t in p.Tables.Where(t => !t.Done || t.Rows > 0).OrderBy(t => t.Done).ThenByDescending(t => t.EstimatedBytes).Take(15))
        {
            var fraction = t.EstimatedBytes > 0 ? Math.Min(1.0, (double)t.Bytes / t.EstimatedBytes) : 0;
            table.AddRow(Markup.Escape(t.Table.ToString()), $"{t.ChunksDone}/{t.Chunks}", t.Rows.ToString("N0", inv),
                (t.Bytes / 1048576.0).ToString("F1", inv), t.Done ? "✓" : $"{fraction * 100:F0}%");
        }

        return table;
    }
}
