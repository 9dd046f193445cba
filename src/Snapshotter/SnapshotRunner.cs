using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Core.Metrics;
using Replicator.Core.State;

namespace Replicator.Snapshotter;

/// <summary>How long each phase took (seconds from the previous phase's start), for the completion log line.</summary>
internal sealed class PhaseTimings(Stopwatch stopwatch) : ISnapshotProgress
{
    private readonly List<(string Phase, double At)> _marks = [("start", 0)];

    public void Phase(string phase)
    {
        lock (_marks)
            _marks.Add((phase, stopwatch.Elapsed.TotalSeconds));
    }

    public string Describe()
    {
        lock (_marks)
            return string.Join(", ", _marks.Skip(1).Zip(_marks, (b, a) => $"{a.Phase} {(b.At - a.At).ToString("F2", System.Globalization.CultureInfo.InvariantCulture)} s"));
    }

    public void Planned(IReadOnlyList<TablePlan> tables)
    {
    }

    public void Copied(TableName table, long rows, long bytes)
    {
    }

    public void ChunkDone(TableName table)
    {
    }

    public void PostDataBuilt(string entry, int done, int total)
    {
    }
}

/// <summary>Row counts differ between source and target: the snapshot is not handed over.</summary>
public sealed class SnapshotMismatchException(SnapshotResult result)
    : Exception("row counts differ between source and target for: " + string.Join(", ", result.Mismatches.Select(m => $"{m.Table} (source {m.SourceRows}, target {m.TargetRows})")))
{
    public SnapshotResult Result { get; } = result;
}

/// <summary>
/// The initial copy, start to finish, and the first phase of <c>replicator run</c>:
/// preflight → publication → slot with exported snapshot → schema pre-data → parallel chunked
/// COPY → sequences → row counts → post-data in parallel → ANALYZE → hand-over (<c>table_sync</c> and
/// <c>position</c> in one target transaction). Rerunning after a crash resumes (see
/// <see cref="SnapshotState"/>); rerunning after success does nothing.
/// </summary>
public static class SnapshotRunner
{
    /// <summary>Copies with a permanent slot, ready for continuous replication to stream from its consistent point.</summary>
    public static Task<SnapshotResult> RunAsync(ReplicatorOptions options, ConnectionInfo source, ConnectionInfo target, ILoggerFactory loggerFactory,
        ISnapshotProgress? progress, CancellationToken cancellationToken) =>
        RunAsync(options, source, target, loggerFactory, progress, noSlot: false, cancellationToken);

    /// <summary>
    /// As <see cref="RunAsync(ReplicatorOptions, ConnectionInfo, ConnectionInfo, ILoggerFactory, ISnapshotProgress?, CancellationToken)"/>;
    /// with <paramref name="noSlot"/> a one-off copy from a plain exported snapshot: no slot, no
    /// publication, nothing written in the target's <c>replicator</c> schema, not resumable.
    /// </summary>
    /// <exception cref="PreflightException">A check failed; nothing was changed.</exception>
    /// <exception cref="SnapshotMismatchException">Row counts differ; the snapshot was not handed over.</exception>
    public static async Task<SnapshotResult> RunAsync(ReplicatorOptions options, ConnectionInfo source, ConnectionInfo target, ILoggerFactory loggerFactory,
        ISnapshotProgress? progress, bool noSlot, CancellationToken cancellationToken)
    {
        var logger = loggerFactory.CreateLogger("Replicator.Snapshotter");
        var stopwatch = Stopwatch.StartNew();
        var tracker = new SnapshotProgressTracker();
        var timings = new PhaseTimings(stopwatch);
        ISnapshotProgress prog = new ProgressFanOut(progress is null ? [tracker, timings] : [tracker, timings, progress]);
        var jobs = Math.Max(1, options.Snapshot.Jobs);

        var report = await Preflight.RunAsync(options, source, target, noSlot, cancellationToken).ConfigureAwait(false);
        foreach (var note in report.Notes)
            logger.PreflightNote(note);
        if (!report.Ok)
            throw new PreflightException(report);
        if (report.AlreadyComplete)
        {
            logger.AlreadyComplete(options.SlotName);
            return new SnapshotResult(options.SlotName, default, default, false, true, [], 0, 0, 0, stopwatch.Elapsed);
        }

        var tools = report.Tools!;
        prog.Phase("preflight done");
        logger.PreflightPassed(report.SourceMajorVersion, tools.BinDirectory);
        ReplicatorMetrics.SnapshotRunning.Record(1);
        using var logLoop = new CancellationTokenSource();
        var logTask = progress is null ? LogProgressAsync(logger, tracker, logLoop.Token) : Task.CompletedTask;
        var workDirectory = Directory.CreateTempSubdirectory("replicator-snapshot-").FullName;
        try
        {
            // One connection string per server for every session of the run (COPY workers'
            // buffer sizes included): Npgsql loads a server's types once per connection string.
            // Tables that go as text COPY are printed by the source sessions: their output settings
            // are fixed (the source database may set others), and the target reads with matching ones.
            var sourceCs = CopyWorker.CopyConnectionString(source.ToCanonicalTextConnectionString());
            var targetCs = CopyWorker.CopyConnectionString(target.ToNpgsqlConnectionString());
            var slotName = noSlot ? null : options.SlotName;

            await using var tgt = new NpgsqlConnection(targetCs);
            await tgt.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var meta = new NpgsqlConnection(sourceCs);
            await meta.OpenAsync(cancellationToken).ConfigureAwait(false);
            var state = slotName is null ? null : new SnapshotState(tgt, slotName);
            if (state is not null)
            {
                await TargetState.EnsureAsync(tgt, cancellationToken).ConfigureAwait(false);
                await SnapshotState.EnsureAsync(tgt, cancellationToken).ConfigureAwait(false);
            }

            prog.Phase("snapshot");
            var tables = await TableCatalog.LoadAsync(meta, cancellationToken).ConfigureAwait(false);
            var run = report.Resume ? await SnapshotState.LoadRunAsync(tgt, options.SlotName, cancellationToken).ConfigureAwait(false) : null;
            ExportedSnapshot snapshot;
            NpgsqlLogSequenceNumber consistentPoint;
            if (run is not null)
            {
                var temporary = $"{options.SlotName}_resume_{Environment.ProcessId}";
                snapshot = await SnapshotSession.CreateSlotAsync(sourceCs, temporary[..Math.Min(63, temporary.Length)], temporary: true, cancellationToken).ConfigureAwait(false);
                consistentPoint = run.ConsistentLsn;
                logger.Resuming(options.SlotName, consistentPoint.ToString(), snapshot.Lsn.ToString());
            }
            else if (slotName is not null)
            {
                if (await SnapshotSession.EnsurePublicationAsync(meta, options.PublicationName, tables, cancellationToken).ConfigureAwait(false))
                    logger.PublicationCreated(options.PublicationName);
                snapshot = await SnapshotSession.CreateSlotAsync(sourceCs, slotName, temporary: false, cancellationToken).ConfigureAwait(false);
                consistentPoint = snapshot.Lsn;
                logger.SlotCreated(slotName, snapshot.Name, snapshot.Lsn.ToString());
            }
            else
            {
                snapshot = await SnapshotSession.ExportPlainAsync(sourceCs, cancellationToken).ConfigureAwait(false);
                consistentPoint = snapshot.Lsn;
            }

            int sequenceCount;
            List<TableCopyResult> results;
            NpgsqlLogSequenceNumber snapshotLsn;
            var leafTables = tables.Where(t => !t.IsPartitionedParent).ToList();
            await using var reader = new NpgsqlConnection(sourceCs);
            List<Chunk> plan;
            string preamble;
            List<PostDataEntry> postData;
            HashSet<uint> textTables;
            // Entries built before the data; when there are any, the copy goes in under replica role.
            var builtBeforeData = new HashSet<string>(StringComparer.Ordinal);
            var builtEarly = 0;
            await using (snapshot)
            {
                await reader.OpenAsync(cancellationToken).ConfigureAwait(false);
                await SnapshotSession.ImportAsync(reader, snapshot.Name, cancellationToken).ConfigureAwait(false);
                // The table list that counts is the one in the snapshot (the same as pg_dump's): a
                // table created or dropped just before the slot must not slip between the two.
                tables = await TableCatalog.LoadAsync(reader, cancellationToken).ConfigureAwait(false);
                leafTables = tables.Where(t => !t.IsPartitionedParent).ToList();
                textTables = await CopyWorker.TablesNeedingTextFormatAsync(reader, leafTables, cancellationToken).ConfigureAwait(false);
                if (textTables.Count > 0)
                    logger.TextFormatTables(string.Join(", ", leafTables.Where(t => textTables.Contains(t.Oid)).Select(t => t.DisplayName)));

                // 1. the chunk plan: new, or the interrupted run's with its progress
                List<ChunkState> chunks;
                if (run is null)
                {
                    plan = await ChunkPlanner.PlanAsync(reader, leafTables, jobs, options.Snapshot.ChunkRows, report.SourceMajorVersion, cancellationToken).ConfigureAwait(false);
                    if (state is not null)
                        await state.StartRunAsync(consistentPoint, plan, cancellationToken).ConfigureAwait(false);
                    chunks = plan.Select(c => new ChunkState(c, null, 0, 0)).ToList();
                }
                else
                {
                    chunks = await state!.LoadChunksAsync(leafTables.ToDictionary(t => t.TableName), cancellationToken).ConfigureAwait(false);
                    var planned = chunks.Select(c => c.Chunk.Table.TableName).ToHashSet();
                    if (leafTables.FirstOrDefault(t => !planned.Contains(t.TableName)) is { } added)
                        throw new SnapshotException($"table {added.DisplayName} appeared on the source after the interrupted snapshot started: start again on an empty target with a new slot");
                    chunks = await ResetUnresumableTablesAsync(state, chunks, tables, run.PreDataDone, logger, cancellationToken).ConfigureAwait(false);
                    plan = chunks.Select(c => c.Chunk).ToList();
                }

                // 2. schema before data
                prog.Phase("schema");
                var dumpFile = Path.Combine(workDirectory, "schema.dump");
                var schema = new SchemaCopy(tools, PgTools.LibpqEnvironment(source), PgTools.LibpqEnvironment(target), options.Snapshot.CopyOwnership);
                await schema.DumpAsync(snapshot.Name, dumpFile, cancellationToken).ConfigureAwait(false);
                // Post-data is only read from the dump file: let pg_restore print it while pre-data goes in.
                var postDataTask = schema.ReadPostDataAsync(dumpFile, cancellationToken);
                try
                {
                    if (run is not { PreDataDone: true })
                    {
                        await schema.RestorePreDataAsync(dumpFile, slotName, workDirectory, cancellationToken).ConfigureAwait(false);
                        logger.PreDataRestored();
                    }
                }
                finally
                {
                    await postDataTask.ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).ConfigureAwait(false);
                }

                (preamble, postData) = await postDataTask.ConfigureAwait(false);

                // 2b. foreign keys to small tables while the tables are empty (SchemaCopy.EarlyForeignKeysAsync);
                // the data then goes in without row-by-row checks, which needs session_replication_role.
                if (!options.Snapshot.ValidateForeignKeys)
                {
                    var early = await SchemaCopy.EarlyForeignKeysAsync(reader, leafTables, postData, cancellationToken).ConfigureAwait(false);
                    if (early.Count > 0 && await MaySetReplicaRoleAsync(tgt, cancellationToken).ConfigureAwait(false))
                    {
                        var already = state is null ? new HashSet<string>() : await state.LoadPostDataDoneAsync(cancellationToken).ConfigureAwait(false);
                        await SchemaCopy.BuildPostDataAsync(targetCs, preamble, early, already, slotName, jobs,
                            entry => prog.PostDataBuilt(entry.Key, already.Count + Interlocked.Increment(ref builtEarly), postData.Count), cancellationToken).ConfigureAwait(false);
                        builtBeforeData.UnionWith(early.Select(e => e.Key));
                        logger.ForeignKeysBeforeData(early.Count(e => e.Type == "FK CONSTRAINT"), builtEarly);
                    }
                }

                // 3. data, each chunk counted on both sides as it passes (see CopyWorker.CopyAsync)
                prog.Phase("copy");
                var copied = await CopyChunksAsync(chunks, textTables, sourceCs, targetCs, snapshot, slotName, jobs, replicaRole: builtBeforeData.Count > 0, prog, logger, cancellationToken).ConfigureAwait(false);

                // 4. sequences, as of the snapshot
                prog.Phase("sequences");
                var sequences = await Sequences.ReadAsync(reader, cancellationToken).ConfigureAwait(false);
                await Sequences.WriteAsync(tgt, sequences, cancellationToken).ConfigureAwait(false);
                sequenceCount = sequences.Count;
                logger.SequencesSet(sequenceCount);
                snapshotLsn = snapshot.Lsn;

                // 5. counts. Source: the rows each chunk read in its snapshot (the chunks of a table
                // cover it, so in one snapshot this is its count(*) there). Target: the rows each
                // chunk's transaction added (a chunk done in an earlier run was only marked done
                // when both agreed). A target without statistics was counted by scanning.
                results = leafTables.Select(t =>
                {
                    var own = copied.Chunks.Where(c => c.Chunk.Table == t).ToList();
                    var targetRows = copied.TargetCounts.TryGetValue(t.TableName, out var counted) ? counted : own.Sum(c => c.TargetRows ?? c.Rows);
                    var lsns = own.Select(c => c.DoneLsn ?? snapshotLsn).Distinct().ToList();
                    return new TableCopyResult(t.TableName, own.Sum(c => c.Rows), targetRows, own.Sum(c => c.Bytes), own.Count,
                        lsns.DefaultIfEmpty(snapshotLsn).Max(), lsns.Count > 1, textTables.Contains(t.Oid));
                }).ToList();
            }

            // The snapshot is no longer needed on the source: release it before the long post-data.
            await reader.CloseAsync().ConfigureAwait(false);
            var partial = new SnapshotResult(slotName, consistentPoint, snapshotLsn, run is not null, false, results, sequenceCount, postData.Count, 0, stopwatch.Elapsed);
            foreach (var m in partial.Mismatches)
                logger.CountMismatch(m.Table.ToString(), m.SourceRows, m.TargetRows);
            if (partial.Mismatches.Any())
                throw new SnapshotMismatchException(partial);

            // 6. post-data in parallel
            prog.Phase("post-data");
            var done = state is null ? new HashSet<string>() : await state.LoadPostDataDoneAsync(cancellationToken).ConfigureAwait(false);
            done.UnionWith(builtBeforeData);
            var total = postData.Count;
            var built = 0;
            await SchemaCopy.BuildPostDataAsync(targetCs, preamble, postData, done, slotName, jobs,
                entry => prog.PostDataBuilt(entry.Key, done.Count + Interlocked.Increment(ref built), total), cancellationToken).ConfigureAwait(false);
            logger.PostDataBuilt(built + builtEarly, total - built - builtEarly);

            // 6b. planner statistics (tables and top-level partitioned tables: ANALYZE of a
            // partitioned table covers its partitions)
            if (options.Snapshot.Analyze)
            {
                prog.Phase("analyze");
                var analyzeClock = Stopwatch.StartNew();
                var analyzed = await AnalyzeAsync(targetCs, tables.Where(t => t.Parent is null).ToList(), jobs, logger, cancellationToken).ConfigureAwait(false);
                logger.TablesAnalyzed(analyzed, analyzeClock.Elapsed.TotalSeconds);
            }

            var largeObjects = report.Notes.Any(n => n.Contains("large objects", StringComparison.Ordinal)) ? await CountLargeObjectsAsync(meta, cancellationToken).ConfigureAwait(false) : 0;
            var result = partial with { LargeObjects = largeObjects };

            // 7. hand-over: the position row says "snapshot done" to continuous replication
            if (state is not null)
                await state.CompleteAsync(consistentPoint, SyncLsns(tables, results, consistentPoint), cancellationToken).ConfigureAwait(false);
            prog.Phase("done");
            logger.Completed(results.Count, result.TotalRows, result.TotalBytes / 1048576.0, stopwatch.Elapsed.TotalSeconds, consistentPoint.ToString());
            logger.PhaseTimes(timings.Describe());
            return result with { Duration = stopwatch.Elapsed };
        }
        finally
        {
            await logLoop.CancelAsync().ConfigureAwait(false);
            await logTask.ConfigureAwait(false);
            ReplicatorMetrics.SnapshotRunning.Record(0);
            try
            {
                Directory.Delete(workDirectory, recursive: true);
            }
            catch (IOException)
            {
                // a leftover temp directory is harmless
            }
        }
    }

    /// <summary>
    /// ANALYZE of <paramref name="tables"/> on the target, up to <paramref name="jobs"/> at once,
    /// largest first. Statistics only help the planner: a table whose ANALYZE fails is logged with
    /// the command to run, and the snapshot goes on.
    /// </summary>
    /// <returns>How many tables were analyzed.</returns>
    private static async Task<int> AnalyzeAsync(string targetCs, IReadOnlyList<TableInfo> tables, int jobs, ILogger logger, CancellationToken cancellationToken)
    {
        var queue = new ConcurrentQueue<TableInfo>(tables.OrderByDescending(t => t.SizeBytes));
        var analyzed = 0;
        var workers = Enumerable.Range(0, Math.Max(1, Math.Min(jobs, queue.Count))).Select(async _ =>
        {
            await using var conn = new NpgsqlConnection(targetCs);
            await conn.OpenAsync(cancellationToken).ConfigureAwait(false);
            while (queue.TryDequeue(out var table))
            {
                await using var cmd = new NpgsqlCommand($"ANALYZE {table.QuotedName}", conn) { CommandTimeout = 0 };
                try
                {
                    await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    Interlocked.Increment(ref analyzed);
                }
                catch (PostgresException e)
                {
                    logger.AnalyzeFailed(table.QuotedName, e.MessageText);
                }
            }
        }).ToList();
        await Task.WhenAll(workers).ConfigureAwait(false);
        return analyzed;
    }

    /// <summary>
    /// <c>table_sync</c> rows: every copied table at the LSN of its (latest) snapshot, and every
    /// partitioned parent at the latest of its partitions' — pgoutput names the parent instead of
    /// the partition when a publication has <c>publish_via_partition_root</c>.
    /// </summary>
    internal static IEnumerable<(TableName Table, NpgsqlLogSequenceNumber SyncLsn)> SyncLsns(IReadOnlyList<TableInfo> tables, IReadOnlyList<TableCopyResult> results, NpgsqlLogSequenceNumber consistentPoint)
    {
        var parentOf = tables.Where(t => t.Parent is not null).ToDictionary(t => t.TableName, t => t.Parent!.Value);
        var parents = new Dictionary<TableName, NpgsqlLogSequenceNumber>();
        foreach (var parent in tables.Where(t => t.IsPartitionedParent))
            parents[parent.TableName] = consistentPoint;
        foreach (var r in results)
        {
            yield return (r.Table, r.SyncLsn);
            for (var t = r.Table; parentOf.TryGetValue(t, out var parent); t = parent)
            {
                if (parents.TryGetValue(parent, out var lsn) && r.SyncLsn > lsn)
                    parents[parent] = r.SyncLsn;
            }
        }

        foreach (var (parent, lsn) in parents)
            yield return (parent, lsn);
    }

    /// <summary>
    /// On resume, a table with unfinished chunks keeps its finished ones only when it is split by
    /// integer key ranges. Any other (no key, or ctid ranges) is emptied and copied whole again.
    /// Partitions of a partitioned table without a key end at one point: published via the root,
    /// their changes carry the root's name, the applier treats them by the root's (keyless) plan, and
    /// the root's sync position is the latest of its partitions', so a partition holding chunks of an
    /// older snapshot than a sibling copied now would have its changes between the two taken as
    /// copied and skipped. Such a partition is copied again whole.
    /// </summary>
    internal static async Task<List<ChunkState>> ResetUnresumableTablesAsync(SnapshotState state, List<ChunkState> chunks, IReadOnlyList<TableInfo> tables, bool preDataDone, ILogger logger, CancellationToken cancellationToken)
    {
        var byName = tables.ToDictionary(t => t.TableName);
        TableInfo? KeylessRootOf(TableInfo table)
        {
            var root = table;
            while (root.Parent is { } parent && byName.TryGetValue(parent, out var up))
                root = up;
            return root != table && root.KeyColumns.Count == 0 ? root : null;
        }

        var groups = chunks.GroupBy(c => c.Chunk.Table).ToList();
        // Keyless roots with a partition (partly or wholly) copied in this run, from the new snapshot.
        var rootsCopiedNow = groups.Where(g => g.Any(c => c.DoneLsn is null)).Select(g => KeylessRootOf(g.Key)).OfType<TableInfo>().ToHashSet();

        var result = new List<ChunkState>();
        foreach (var group in groups)
        {
            var table = group.Key;
            var someDone = group.Any(c => c.DoneLsn is not null);
            var unresumable = group.Any(c => c.DoneLsn is null) && someDone
                && !(group.All(c => c.Chunk.Kind == ChunkKind.KeyRange) && ChunkPlanner.HasIntegerKey(table));
            var olderThanASibling = someDone && KeylessRootOf(table) is { } root && rootsCopiedNow.Contains(root);
            if (preDataDone && (unresumable || olderThanASibling))
            {
                if (olderThanASibling)
                    logger.KeylessPartitionRecopied(table.DisplayName, KeylessRootOf(table)!.DisplayName);
                else
                    logger.TableRecopied(table.DisplayName);
                await state.ResetTableAsync(table, cancellationToken).ConfigureAwait(false);
                result.AddRange(group.Select(c => c with { DoneLsn = null, Rows = 0, Bytes = 0 }));
            }
            else
            {
                result.AddRange(group);
            }
        }

        return result;
    }

    /// <summary>Whether the target role may set <c>session_replication_role</c>; the session is left as it was.</summary>
    private static async Task<bool> MaySetReplicaRoleAsync(NpgsqlConnection target, CancellationToken cancellationToken)
    {
        if (!await TargetState.TrySetReplicaRoleAsync(target, cancellationToken).ConfigureAwait(false))
            return false;
        await using var reset = new NpgsqlCommand("RESET session_replication_role", target);
        await reset.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }

    private sealed record CopyOutcome(List<ChunkState> Chunks, ConcurrentDictionary<TableName, long> TargetCounts);

    private static async Task<CopyOutcome> CopyChunksAsync(List<ChunkState> chunks, HashSet<uint> textTables, string sourceCs, string targetCs,
        ExportedSnapshot snapshot, string? slotName, int jobs, bool replicaRole, ISnapshotProgress progress, ILogger logger, CancellationToken cancellationToken)
    {
        var byTable = chunks.GroupBy(c => c.Chunk.Table).ToList();
        progress.Planned(byTable.Select(g => new TablePlan(g.Key.TableName, g.Count(), g.Count(c => c.DoneLsn is not null),
            Math.Max(0, g.Key.EstimatedRows), g.Key.SizeBytes)).ToList());
        var pending = chunks.Where(c => c.DoneLsn is null)
            .OrderByDescending(c => c.Chunk.Table.SizeBytes / Math.Max(1, byTable.First(g => g.Key == c.Chunk.Table).Count()))
            .ThenBy(c => c.Chunk.Number)
            .Select(c => c.Chunk).ToList();
        var doneCount = chunks.Count - pending.Count;
        logger.Planned(byTable.Count, chunks.Count, doneCount, jobs);
        ReplicatorMetrics.SnapshotChunksTotal.Record(chunks.Count);
        ReplicatorMetrics.SnapshotChunksDone.Record(doneCount);

        var queue = new ConcurrentQueue<Chunk>(pending);
        var remaining = new ConcurrentDictionary<TableInfo, int>(pending.GroupBy(c => c.Table).Select(g => KeyValuePair.Create(g.Key, g.Count())));
        var counts = new ConcurrentDictionary<TableName, long>();
        var finished = new ConcurrentDictionary<Chunk, ChunkCopy>();
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var workers = Enumerable.Range(0, Math.Min(jobs, pending.Count)).Select(async _ =>
        {
            try
            {
                await using var worker = await CopyWorker.OpenAsync(sourceCs, targetCs, snapshot.Name, snapshot.Lsn, slotName, replicaRole, progress, failed.Token).ConfigureAwait(false);
                while (queue.TryDequeue(out var chunk))
                {
                    ChunkCopy copy;
                    try
                    {
                        copy = await worker.CopyAsync(chunk, textTables.Contains(chunk.Table.Oid), failed.Token).ConfigureAwait(false);
                    }
                    catch (PostgresException e)
                    {
                        throw new SnapshotException(
                            $"copying {chunk} failed: {e.MessageText} ({e.SqlState}{(e.Where is { } where ? "; " + where.ReplaceLineEndings(" ") : "")}). "
                            + "Nothing of this chunk was kept; finished chunks are. Remove the cause (on the target: a trigger, a constraint or a column type that differs from the source) and run the same command again: it resumes.", e);
                    }

                    finished[chunk] = copy;
                    if (copy.Committed)
                    {
                        progress.ChunkDone(chunk.Table.TableName);
                        ReplicatorMetrics.SnapshotChunksDone.Record(Interlocked.Increment(ref doneCount));
                    }

                    logger.ChunkCopied(chunk.ToString(), copy.Rows, copy.Bytes);
                    // Only a target without statistics needs the table scanned for its count.
                    if (remaining.AddOrUpdate(chunk.Table, 0, (_, n) => n - 1) == 0 && !worker.TargetTracksCounts)
                        counts[chunk.Table.TableName] = await worker.CountTargetAsync(chunk.Table, failed.Token).ConfigureAwait(false);
                }
            }
            catch
            {
                await failed.CancelAsync().ConfigureAwait(false);
                throw;
            }
        }).ToList();
        try
        {
            await Task.WhenAll(workers).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // one worker failed and cancelled the others: report the real failure
            throw workers.Select(w => w.Exception?.InnerException).First(e => e is not null and not OperationCanceledException)!;
        }

        return new CopyOutcome(chunks.Select(c => finished.TryGetValue(c.Chunk, out var f)
            ? new ChunkState(c.Chunk, f.Committed ? snapshot.Lsn : null, f.Rows, f.Bytes, f.TargetRows)
            : c).ToList(), counts);
    }

    private static async Task<long> CountLargeObjectsAsync(NpgsqlConnection source, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("SELECT count(*) FROM pg_largeobject_metadata", source);
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    private static async Task LogProgressAsync(ILogger logger, SnapshotProgressTracker tracker, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
                var p = tracker.Read();
                logger.Progress(p.Phase, p.TablesDone, p.Tables.Count, p.ChunksDone, p.Chunks, p.Rows, p.Bytes / 1048576.0, p.BytesPerSecond / 1048576.0,
                    p.Eta is { } eta ? eta.ToString(@"hh\:mm\:ss", System.Globalization.CultureInfo.InvariantCulture) : "unknown");
            }
        }
        catch (OperationCanceledException)
        {
            // the snapshot ended
        }
    }
}
