using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Core.Metrics;

namespace Replicator.Verifier;

/// <summary>
/// One verifier pass: consistent cut → schema check → chunk plan → chunk hashes on both sides in
/// parallel → bisection of differing chunks to rows → report (→ repair). The entry point for the
/// CLI, for <see cref="ContinuousVerifier"/> and for tests that verify during live replication.
/// </summary>
public static class Verification
{
    /// <summary>
    /// Runs one pass and returns its report; throws <see cref="VerifyException"/> (or an
    /// <see cref="NpgsqlException"/>) when the pass cannot run. Updates the <c>replicator_verify_*</c> metrics.
    /// </summary>
    public static async Task<VerifyReport> RunPassAsync(
        VerifyRequest request, ConnectionInfo source, ConnectionInfo target, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        request.Validate();
        var logger = loggerFactory.CreateLogger(typeof(Verification).FullName!);
        var report = new VerifyReport { StartedAt = DateTimeOffset.UtcNow, Source = source.ToString(), Target = target.ToString() };
        try
        {
            // Read before the cut: a fingerprint may then only under-state what the cut holds (see TableFingerprints).
            var fingerprints = await VerificationHistory.ReadFingerprintsAsync(request, source, target, cancellationToken).ConfigureAwait(false);
            var outcomes = await CompareAsync(request, source, target, report, logger, cancellationToken).ConfigureAwait(false);
            if (request.Repair && outcomes.Any(o => o.Keys.Count > 0 || o.Hashes.Count > 0))
                report.Repair = await Repair.RunAsync(request, source, target, outcomes, logger, cancellationToken).ConfigureAwait(false);
            report.FinishedAt = DateTimeOffset.UtcNow;
            var clean = report.Identical;
            ReplicatorMetrics.VerifyPasses.Add(1, new KeyValuePair<string, object?>("result", clean ? "clean" : "differences"));
            if (clean && request.Tables.Count == 0)
                ReplicatorMetrics.VerifyLastCleanPass.Record(report.FinishedAt.ToUnixTimeMilliseconds() / 1000.0);
            LogMessages.PassFinished(logger, report.Identical ? "identical" : "different", report.RowsChecked, report.RowDifferences, report.SchemaDifferences, report.Seconds);
            if (fingerprints is { } taken)
                await VerificationHistory.WriteAsync(request, target, report, taken, cancellationToken).ConfigureAwait(false);
            return report;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            ReplicatorMetrics.VerifyPasses.Add(1, new KeyValuePair<string, object?>("result", "error"));
            throw;
        }
    }

    /// <summary>Per table: what was compared and which keys (or row hashes) differ, for the report and for repair.</summary>
    internal sealed class TableOutcome(TableMatch match, TableReport report)
    {
        public TableMatch Match { get; } = match;

        public TableReport Report { get; } = report;

        public IReadOnlyList<ChunkRange> Ranges { get; set; } = [];

        public DifferenceCollector Collector { get; } = new();

        public IReadOnlyList<DifferenceCollector.KeyState> Keys { get; set; } = [];

        public IReadOnlyList<MultisetComparer.HashCount> Hashes { get; set; } = [];

        public int ChunksLeft;

        /// <summary>The whole table's count and hash sum per side (guarded by locking the outcome).</summary>
        public ChunkHash SourceTotal { get; set; }

        public ChunkHash TargetTotal { get; set; }

        /// <summary>Block slices per side, for a table hashed by buckets; null otherwise.</summary>
        public List<BlockSlice>? SourceSlices { get; set; }

        public List<BlockSlice>? TargetSlices { get; set; }

        /// <summary>Per-bucket sums gathered from the slices (guarded by locking the outcome).</summary>
        public Dictionary<int, ChunkHash> SourceBuckets { get; } = [];

        public Dictionary<int, ChunkHash> TargetBuckets { get; } = [];
    }

    private static async Task<List<TableOutcome>> CompareAsync(
        VerifyRequest request, ConnectionInfo source, ConnectionInfo target, VerifyReport report, ILogger logger, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        // One pair more than --jobs while the schema check runs beside the data comparison, so the
        // hashing keeps all its pairs.
        await using var cut = await ConsistentCut.OpenAsync(source, target, request, request.Jobs + (request.SchemaCheck ? 1 : 0), logger, null, cancellationToken).ConfigureAwait(false);
        LogMessages.Phase(logger, "cut", clock.Elapsed.TotalSeconds);
        report.CutLsn = cut.SourceLsn.ToString();
        report.CutKind = cut.Kind;
        report.AppliedLsn = cut.TargetAppliedLsn?.ToString();
        report.ApplierPauseMilliseconds = cut.ApplierPause.TotalMilliseconds;

        var sourceTablesTask = CanonicalRow.WithCatalogNamesAsync(cut.First.Source, () => TableCatalog.LoadAsync(cut.First.Source, cancellationToken), cancellationToken);
        var targetTablesTask = CanonicalRow.WithCatalogNamesAsync(cut.First.Target, () => TableCatalog.LoadAsync(cut.First.Target, cancellationToken), cancellationToken);
        var sourceTables = await sourceTablesTask.ConfigureAwait(false);
        var targetTables = await targetTablesTask.ConfigureAwait(false);

        LogMessages.Phase(logger, "catalog", clock.Elapsed.TotalSeconds);
        var selected = Select(request, sourceTables, targetTables);
        var outcomes = new List<TableOutcome>();
        // The schema check runs beside the data comparison, on the extra pair.
        var schemaCheck = request.SchemaCheck ? CheckSchemaAsync(cut, sourceTables, targetTables, cancellationToken) : Task.FromResult(new List<SchemaDifference>());
        try
        {
            await CompareDataAsync(request, cut, selected, targetTables, report, outcomes, logger, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            // Let the schema check stop using its connections before the cut closes them.
            await Task.WhenAny(schemaCheck).ConfigureAwait(false);
            throw;
        }

        report.Schema.AddRange(await schemaCheck.ConfigureAwait(false));
        return outcomes;
    }

    private static async Task CompareDataAsync(
        VerifyRequest request, ConsistentCut cut, List<TableInfo> selected, IReadOnlyList<TableInfo> targetTables, VerifyReport report,
        List<TableOutcome> outcomes, ILogger logger, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var targetByName = targetTables.ToDictionary(t => t.DisplayName, StringComparer.Ordinal);
        // hash_record_extended: PostgreSQL 14+, on both sides (the two must hash alike).
        var typedHash = cut.First.Source.PostgreSqlVersion.Major >= 14 && cut.First.Target.PostgreSqlVersion.Major >= 14;
        foreach (var table in selected)
        {
            if (!targetByName.TryGetValue(table.DisplayName, out var targetTable))
            {
                long rows;
                using (var lease = await cut.RentAsync(cancellationToken).ConfigureAwait(false))
                    rows = await CountAsync(lease.Pair.Source, table, cancellationToken).ConfigureAwait(false);
                report.Tables.Add(new TableReport { Table = table.DisplayName, Method = "none", SourceRows = rows, Differences = rows, Problem = "table missing on target: create it (replicator snapshot copies the schema)" });
                continue;
            }

            var match = new TableMatch(table, targetTable, typedHash);
            var tableReport = new TableReport
            {
                Table = table.DisplayName,
                Method = match.Source.HasKey ? "key ranges" : "multiset",
                KeyColumns = match.Source.Keys.Select(k => k.Name).ToList(),
                // The schema check may be off (cutover, `replicator run`): the data comparison must not
                // call a table identical while a source column is not on the target at all.
                Problem = match.MissingOnTarget.Count switch
                {
                    0 => null,
                    1 => $"column {match.MissingOnTarget[0]} missing on the target: its values are not compared; add it to the target",
                    _ => $"columns {string.Join(", ", match.MissingOnTarget)} missing on the target: their values are not compared; add them to the target",
                },
            };
            report.Tables.Add(tableReport);
            outcomes.Add(new TableOutcome(match, tableReport));
        }

        var totalTables = Math.Max(1, outcomes.Count);
        ReplicatorMetrics.VerifyCoverage.Record(0);
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = request.Jobs, CancellationToken = cancellationToken };

        // Plan each table (sampling the source's keys; a bucketed table's block slices on each side,
        // by its own physical size) and hash its chunks as soon as it is planned: the largest table
        // is planned first, and its hashing starts while the others are still being planned.
        var work = Channel.CreateUnbounded<WorkItem>();
        using var stopPlanning = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var planningOptions = new ParallelOptions { MaxDegreeOfParallelism = request.Jobs, CancellationToken = stopPlanning.Token };
        var planning = Task.Run(async () =>
        {
            try
            {
                await Parallel.ForEachAsync(outcomes.OrderByDescending(o => o.Match.SourceTable.SizeBytes), planningOptions, async (o, ct) =>
                {
                    var planned = Stopwatch.StartNew();
                    using (var lease = await cut.RentAsync(ct).ConfigureAwait(false))
                    {
                        LogMessages.PlanStep(logger, o.Match.SourceTable.DisplayName, "pair rented", planned.Elapsed.TotalMilliseconds);
                        o.Ranges = await ChunkPlanner.PlanAsync(lease.Pair.Source, o.Match.Source, o.Match.SourceTable.EstimatedRows, o.Match.SourceTable.SizeBytes, request.ChunkRows, request.BisectRows, ct).ConfigureAwait(false);
                        o.Report.Chunks = o.Ranges.Count;
                        o.ChunksLeft = o.Ranges.Count;
                        if (o.Ranges is [{ Buckets: not null }])
                        {
                            var estimated = Math.Max(o.Match.SourceTable.EstimatedRows, o.Match.TargetTable.EstimatedRows);
                            var count = (int)Math.Clamp((estimated + request.ChunkRows - 1) / request.ChunkRows, 1, 10_000);
                            var s = BlockSlicesAsync(lease.Pair.Source, o.Match.SourceTable, count, ct);
                            var t = BlockSlicesAsync(lease.Pair.Target, o.Match.TargetTable, count, ct);
                            (o.SourceSlices, o.TargetSlices) = (await s.ConfigureAwait(false), await t.ConfigureAwait(false));
                            o.ChunksLeft = Math.Max(o.SourceSlices.Count, o.TargetSlices.Count);
                        }

                        LogMessages.PlanStep(logger, o.Match.SourceTable.DisplayName, $"planned ({o.Ranges.Count} range(s))", planned.Elapsed.TotalMilliseconds);
                    }

                    if (o.SourceSlices is not null && o.TargetSlices is not null)
                    {
                        for (var i = 0; i < Math.Max(o.SourceSlices.Count, o.TargetSlices.Count); i++)
                            work.Writer.TryWrite(new WorkItem(o, o.Ranges[0], i < o.SourceSlices.Count ? o.SourceSlices[i] : null, i < o.TargetSlices.Count ? o.TargetSlices[i] : null, Sliced: true));
                    }
                    else
                    {
                        foreach (var r in o.Ranges)
                            work.Writer.TryWrite(new WorkItem(o, r, null, null, Sliced: false));
                    }
                }).ConfigureAwait(false);
                LogMessages.Phase(logger, "plan", clock.Elapsed.TotalSeconds);
                work.Writer.Complete();
            }
            catch (Exception e)
            {
                work.Writer.Complete(e);
                throw;
            }
        }, CancellationToken.None);

        var differing = new ConcurrentBag<(TableOutcome Outcome, ChunkRange Range, ChunkHashes Source, ChunkHashes Target)>();
        var tablesDone = 0;
        var chunks = 0;
        var hashing = Stopwatch.StartNew();
        var hashingDone = Parallel.ForEachAsync(work.Reader.ReadAllAsync(cancellationToken), parallel, async (item, ct) =>
        {
            using var lease = await cut.RentAsync(ct).ConfigureAwait(false);
            Interlocked.Increment(ref chunks);
            var o = item.Outcome;
            var tag = new KeyValuePair<string, object?>("table", o.Report.Table);
            if (item.Sliced)
            {
                var sourceTask = item.SourceSlice is { } ss ? ChunkHasher.HashAsync(lease.Pair.Source, o.Match.Source, item.Range, ct, ss) : null;
                var targetTask = item.TargetSlice is { } ts ? ChunkHasher.HashAsync(lease.Pair.Target, o.Match.Target, item.Range, ct, ts) : null;
                var sh = sourceTask is null ? null : await sourceTask.ConfigureAwait(false);
                var th = targetTask is null ? null : await targetTask.ConfigureAwait(false);
                ReplicatorMetrics.VerifyRows.Add(Math.Max(sh?.Total.Rows ?? 0, th?.Total.Rows ?? 0), tag);
                lock (o)
                {
                    Merge(o.SourceBuckets, sh);
                    Merge(o.TargetBuckets, th);
                }

                if (Interlocked.Decrement(ref o.ChunksLeft) == 0)
                {
                    // Last slice of this table: compare its buckets.
                    var source = Totals(o.SourceBuckets);
                    var target = Totals(o.TargetBuckets);
                    o.Report.SourceRows = source.Total.Rows;
                    o.Report.TargetRows = target.Total.Rows;
                    (o.SourceTotal, o.TargetTotal) = (source.Total, target.Total);
                    o.Report.Chunks = item.Range.Buckets!.Count + 1;
                    o.Report.ChunksDiffering = ChunkHashes.DifferingBuckets(source, target).Count();
                    if (o.Report.ChunksDiffering > 0)
                        differing.Add((o, item.Range, source, target));
                    ReplicatorMetrics.VerifyCoverage.Record((double)Interlocked.Increment(ref tablesDone) / totalTables);
                }

                return;
            }

            var (shr, thr) = await ChunkHasher.HashBothAsync(lease.Pair, o.Match, item.Range, ct).ConfigureAwait(false);
            var (s, t) = (shr.Total, thr.Total);
            ReplicatorMetrics.VerifyRows.Add(Math.Max(s.Rows, t.Rows), tag);
            lock (o)
            {
                o.Report.SourceRows += s.Rows;
                o.Report.TargetRows += t.Rows;
                o.SourceTotal += s;
                o.TargetTotal += t;
                if (s != t)
                    o.Report.ChunksDiffering++;
            }

            if (s != t)
                differing.Add((o, item.Range, shr, thr));
            if (Interlocked.Decrement(ref o.ChunksLeft) == 0)
                ReplicatorMetrics.VerifyCoverage.Record((double)Interlocked.Increment(ref tablesDone) / totalTables);
        });
        try
        {
            await hashingDone.ConfigureAwait(false);
        }
        catch
        {
            // Planning must stop using the cut's connections before the cut closes.
            await stopPlanning.CancelAsync().ConfigureAwait(false);
            await Task.WhenAny(planning).ConfigureAwait(false);
            throw;
        }

        await planning.ConfigureAwait(false);
        LogMessages.ChunksHashed(logger, chunks, differing.Count, hashing.Elapsed.TotalSeconds);

        // Narrow differing chunks to rows (keyed) or to row hashes (multiset); each differing bucket on its own.
        var narrowing = differing.SelectMany(d => d.Source.Buckets is not null && d.Target.Buckets is not null
            ? ChunkHashes.DifferingBuckets(d.Source, d.Target).Select(b => (d.Outcome, d.Range, d.Source, d.Target, Bucket: (int?)b))
            : [(d.Outcome, d.Range, d.Source, d.Target, Bucket: (int?)null)]).ToList();
        await Parallel.ForEachAsync(narrowing, parallel, async (item, ct) =>
        {
            using var lease = await cut.RentAsync(ct).ConfigureAwait(false);
            if (item.Bucket is { } bucket)
                await Bisector.CompareBucketAsync(lease.Pair, item.Outcome.Match, item.Range, bucket, item.Outcome.Collector, ct).ConfigureAwait(false);
            else if (item.Outcome.Match.Source.HasKey)
                await Bisector.BisectAsync(lease.Pair, item.Outcome.Match, item.Range, item.Source.Total, item.Target.Total, request.BisectRows, item.Outcome.Collector, ct).ConfigureAwait(false);
            else
                item.Outcome.Hashes = await MultisetComparer.DifferingHashesAsync(lease.Pair, item.Outcome.Match, ct).ConfigureAwait(false);
        }).ConfigureAwait(false);

        // Describe the differences: which keys, which columns.
        await Parallel.ForEachAsync(outcomes.Where(o => o.Report.ChunksDiffering > 0), parallel, async (o, ct) =>
        {
            using var lease = await cut.RentAsync(ct).ConfigureAwait(false);
            if (o.Match.Source.HasKey)
            {
                o.Keys = o.Collector.Differences();
                o.Report.Differences = o.Keys.Sum(k => k.Count);
                var listed = o.Keys.Take(request.MaxListedDifferences).ToList();
                o.Report.Rows.AddRange(await RowDetails.DescribeAsync(lease.Pair, o.Match, listed, ct).ConfigureAwait(false));
                // Differing chunks whose rows all matched are keys sorted into other ranges on the
                // target (another collation) when the table's totals agree. When the totals differ,
                // rows exist that no range comparison saw: never let that pass as identical.
                if (o.Keys.Count == 0 && o.SourceTotal != o.TargetTotal)
                    o.Report.Problem = (o.Report.Problem is null ? "" : o.Report.Problem + "; ") + $"{o.Report.ChunksDiffering} chunk(s) differ (source {o.SourceTotal.Rows} rows, target {o.TargetTotal.Rows}) but no differing row was located by key: " +
                        "the target may hold rows whose key does not sort or compare like the source's; compare the table by hand";
            }
            else
            {
                o.Report.Differences = o.Hashes.Sum(h => h.Missing + h.Extra);
                var listed = o.Hashes.Take(request.MaxListedDifferences).ToList();
                o.Report.Rows.AddRange(await MultisetComparer.DescribeAsync(lease.Pair, o.Match, listed, ct).ConfigureAwait(false));
            }

            LogMessages.TableDiffers(logger, o.Report.Table, o.Report.Differences);
        }).ConfigureAwait(false);

        foreach (var o in outcomes)
            ReplicatorMetrics.VerifyDifferences.Record(o.Report.Differences, new KeyValuePair<string, object?>("table", o.Report.Table));
        ReplicatorMetrics.VerifyCoverage.Record(1);
    }

    private sealed record WorkItem(TableOutcome Outcome, ChunkRange Range, BlockSlice? SourceSlice, BlockSlice? TargetSlice, bool Sliced);

    private static void Merge(Dictionary<int, ChunkHash> into, ChunkHashes? part)
    {
        foreach (var (bucket, hash) in part?.Buckets ?? new Dictionary<int, ChunkHash>())
            into[bucket] = into.TryGetValue(bucket, out var sum) ? new ChunkHash(sum.Rows + hash.Rows, sum.Sum + hash.Sum) : hash;
    }

    private static ChunkHashes Totals(Dictionary<int, ChunkHash> buckets) =>
        new(new ChunkHash(buckets.Values.Sum(b => b.Rows), buckets.Values.Aggregate(System.Numerics.BigInteger.Zero, (sum, b) => sum + b.Sum)), buckets);

    /// <summary>
    /// Block slices of one side's table. TID range scans need PostgreSQL 14; an older server scans
    /// the table in one piece (a ctid condition would not limit what it reads).
    /// </summary>
    private static async Task<List<BlockSlice>> BlockSlicesAsync(NpgsqlConnection conn, TableInfo table, int count, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT pg_relation_size($1::oid::regclass) / current_setting('block_size')::bigint, current_setting('server_version_num')::int", conn);
        cmd.Parameters.Add(new NpgsqlParameter { Value = table.Oid, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Oid });
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        var pages = reader.GetInt64(0);
        return reader.GetInt32(1) >= 140000 ? BlockSlice.Split(pages, count) : [new BlockSlice(0, null)];
    }

    private static async Task<List<SchemaDifference>> CheckSchemaAsync(
        ConsistentCut cut, IReadOnlyList<TableInfo> sourceTables, IReadOnlyList<TableInfo> targetTables, CancellationToken cancellationToken)
    {
        using var lease = await cut.RentAsync(cancellationToken).ConfigureAwait(false);
        var pair = lease.Pair;
        return await CanonicalRow.WithCatalogNamesAsync(pair.Source, () => CanonicalRow.WithCatalogNamesAsync(pair.Target,
            () => SchemaCompare.CompareAsync(pair, sourceTables, targetTables, cancellationToken), cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    private static List<TableInfo> Select(VerifyRequest request, IReadOnlyList<TableInfo> sourceTables, IReadOnlyList<TableInfo> targetTables)
    {
        // A partitioned parent holds no rows: its partitions are verified one by one.
        var tables = sourceTables.Where(t => !t.IsPartitionedParent).ToList();
        if (request.Tables.Count == 0)
            return tables;
        var byName = tables.ToDictionary(t => t.DisplayName, StringComparer.Ordinal);
        var allByName = sourceTables.ToDictionary(t => t.DisplayName, StringComparer.Ordinal);
        var selected = new List<TableInfo>();
        foreach (var name in request.Tables)
        {
            if (byName.TryGetValue(name, out var table))
                selected.Add(table);
            else if (sourceTables.Any(t => t.DisplayName == name && t.IsPartitionedParent))
                selected.AddRange(tables.Where(t => UnderParent(t, name, allByName)));
            else
                throw new VerifyException(
                    $"table '{name}' not found on the source{(targetTables.Any(t => t.DisplayName == name) ? " (it exists only on the target)" : "")}; " +
                    "name tables as schema.table, unquoted and case-sensitive (e.g. --table public.orders)");
        }

        return selected.DistinctBy(t => t.DisplayName).ToList();
    }

    /// <summary>Whether <paramref name="table"/> is a partition of <paramref name="parent"/> at any depth (sub-partitioned parents are partitions too).</summary>
    private static bool UnderParent(TableInfo table, string parent, Dictionary<string, TableInfo> byName)
    {
        for (var up = table.Parent?.ToString(); up is not null; up = byName.GetValueOrDefault(up)?.Parent?.ToString())
        {
            if (up == parent)
                return true;
        }

        return false;
    }

    private static async Task<long> CountAsync(NpgsqlConnection conn, TableInfo table, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand($"SELECT count(*) FROM ONLY {table.QuotedName}", conn);
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }
}
