using System.Diagnostics.Metrics;

namespace Replicator.Core.Metrics;

/// <summary>
/// Every instrument Replicator exports, in one place, so the Grafana dashboard and the alert
/// rules in deploy/k8s can name them exactly (a test scrapes /metrics and checks every name they
/// use). Instrument names are already Prometheus names: base units, <c>_total</c> on counters.
/// Label conventions: <c>table</c> is <c>schema.table</c> unquoted; <c>slot</c> is the slot name.
/// </summary>
public static class ReplicatorMetrics
{
    public const string MeterName = "Replicator";

    public static readonly Meter Meter = new(MeterName, typeof(ReplicatorMetrics).Assembly.GetName().Version?.ToString());

    private static readonly double ProcessStart = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    private static readonly double[] SecondsBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private static readonly long[] CountBuckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];

    // ---- process ----

    public static readonly ObservableGauge<double> StartTime = Meter.CreateObservableGauge(
        "replicator_start_time_seconds", () => ProcessStart, unit: "s",
        description: "Start time of the replicator process since the Unix epoch, in seconds.");

    public static readonly ObservableGauge<int> BuildInfo = Meter.CreateObservableGauge(
        "replicator_build_info", () => new Measurement<int>(1, new KeyValuePair<string, object?>("version", Version)),
        description: "Replicator build information; the value is always 1.");

    // ---- snapshot ----

    /// <summary>Rows copied, label <c>table</c>.</summary>
    public static readonly Counter<long> SnapshotRows = Meter.CreateCounter<long>(
        "replicator_snapshot_rows_total", description: "Rows copied by the snapshot, per table.");

    /// <summary>Bytes of COPY data moved, label <c>table</c>.</summary>
    public static readonly Counter<long> SnapshotBytes = Meter.CreateCounter<long>(
        "replicator_snapshot_bytes_total", unit: "By", description: "Bytes of COPY data moved by the snapshot, per table.");

    public static readonly Gauge<long> SnapshotChunksDone = Meter.CreateGauge<long>(
        "replicator_snapshot_chunks_done", description: "Snapshot chunks (tables or key ranges) finished.");

    public static readonly Gauge<long> SnapshotChunksTotal = Meter.CreateGauge<long>(
        "replicator_snapshot_chunks", description: "Snapshot chunks (tables or key ranges) planned.");

    /// <summary>Unix time of the last snapshot progress (a row batch, a chunk, an index); the stall alert watches it.</summary>
    public static readonly Gauge<double> SnapshotLastProgress = Meter.CreateGauge<double>(
        "replicator_snapshot_last_progress_timestamp_seconds", unit: "s", description: "Unix time of the last snapshot progress.");

    /// <summary>1 while a snapshot runs, 0 otherwise.</summary>
    public static readonly Gauge<int> SnapshotRunning = Meter.CreateGauge<int>(
        "replicator_snapshot_running", description: "1 while a snapshot is running.");

    // ---- capture ----

    /// <summary>pgoutput messages received, label <c>type</c> (insert, update, delete, begin, commit, relation, …).</summary>
    public static readonly Counter<long> CaptureMessages = Meter.CreateCounter<long>(
        "replicator_capture_messages_total", description: "Logical replication messages received from the source, per type.");

    /// <summary>Last WAL position received from the source, as a number (label <c>slot</c>).</summary>
    public static readonly Gauge<double> CaptureReceivedLsn = Meter.CreateGauge<double>(
        "replicator_capture_received_lsn", description: "Last WAL position received from the source, as a number.");

    /// <summary>Position acknowledged to the slot (confirmed_flush_lsn), as a number (label <c>slot</c>).</summary>
    public static readonly Gauge<double> CaptureConfirmedLsn = Meter.CreateGauge<double>(
        "replicator_capture_confirmed_lsn", description: "WAL position acknowledged to the slot (confirmed_flush_lsn), as a number.");

    /// <summary>WAL the source keeps for the slot (pg_current_wal_lsn − restart_lsn), label <c>slot</c>.</summary>
    public static readonly Gauge<double> SlotRetainedWal = Meter.CreateGauge<double>(
        "replicator_slot_retained_wal_bytes", unit: "By", description: "WAL retained on the source by the replication slot, in bytes.");

    // ---- buffer ----

    /// <summary>Change events waiting between capture and apply (embedded buffer) or not yet acknowledged by Kafka.</summary>
    public static readonly Gauge<long> BufferedEvents = Meter.CreateGauge<long>(
        "replicator_buffer_events", description: "Change events in the buffer between capture and apply.");

    /// <summary>Events produced to Kafka, label <c>topic</c>.</summary>
    public static readonly Counter<long> KafkaProduced = Meter.CreateCounter<long>(
        "replicator_kafka_produced_total", description: "Change events acknowledged by Kafka, per topic.");

    // ---- apply ----

    public static readonly Counter<long> ApplyTransactions = Meter.CreateCounter<long>(
        "replicator_apply_transactions_total", description: "Source transactions applied on the target.");

    /// <summary>Rows applied, labels <c>table</c> and <c>op</c> (insert, update, delete, truncate).</summary>
    public static readonly Counter<long> ApplyRows = Meter.CreateCounter<long>(
        "replicator_apply_rows_total", description: "Row changes applied on the target, per table and operation.");

    public static readonly Histogram<double> ApplyBatchDuration = Meter.CreateHistogram<double>(
        "replicator_apply_batch_seconds", unit: "s", description: "Time to apply and commit one target transaction (batch).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });

    public static readonly Histogram<long> ApplyBatchTransactions = Meter.CreateHistogram<long>(
        "replicator_apply_batch_transactions", description: "Source transactions grouped into one target transaction.",
        advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = CountBuckets });

    /// <summary>Apply failures, label <c>kind</c> (transient, permanent, schema).</summary>
    public static readonly Counter<long> ApplyErrors = Meter.CreateCounter<long>(
        "replicator_apply_errors_total", description: "Apply failures, per kind (transient: retried; permanent or schema: replication stopped).");

    // Source commit times (UTC ticks; 0: none) of the oldest transaction not yet applied, as the
    // applier sees it (received, in a batch not yet committed) and as the Kafka consumer sees it
    // (waiting in the orderer for its events).
    private static long _applierWaitingSince;
    private static long _ordererWaitingSince;

    /// <summary>
    /// Now minus the source commit time of the oldest transaction not yet applied, read when
    /// scraped: it keeps growing while the applier is stuck (a lock on the target, a transaction
    /// whose Kafka events never arrive, a retry loop), where a value set at each commit would
    /// stay at its last, small value. 0 when everything received is applied.
    /// </summary>
    public static readonly ObservableGauge<double> ApplyLagSeconds = Meter.CreateObservableGauge(
        "replicator_apply_lag_seconds", LagSeconds, unit: "s",
        description: "Replication lag: now minus the source commit time of the oldest transaction not yet applied; 0 when caught up.");

    /// <summary>The applier holds transactions not yet committed on the target, the oldest committed on the source at <paramref name="commitTime"/>; null: none.</summary>
    public static void ApplierWaitingSince(DateTimeOffset? commitTime) => Volatile.Write(ref _applierWaitingSince, commitTime?.UtcTicks ?? 0);

    /// <summary>The Kafka consumer holds back a transaction (its END waits for events), committed on the source at <paramref name="commitTime"/>; null: none.</summary>
    public static void OrdererWaitingSince(DateTimeOffset? commitTime) => Volatile.Write(ref _ordererWaitingSince, commitTime?.UtcTicks ?? 0);

    private static double LagSeconds() =>
        LagSeconds(Volatile.Read(ref _applierWaitingSince), Volatile.Read(ref _ordererWaitingSince), DateTimeOffset.UtcNow.UtcTicks);

    /// <summary>Seconds from the older of two commit times (UTC ticks, 0: none) to <paramref name="now"/>; 0 when neither is set.</summary>
    internal static double LagSeconds(long applierWaitingSince, long ordererWaitingSince, long now)
    {
        var oldest = Math.Min(Nonzero(applierWaitingSince), Nonzero(ordererWaitingSince));
        return oldest == long.MaxValue ? 0 : Math.Max(0, TimeSpan.FromTicks(now - oldest).TotalSeconds);

        static long Nonzero(long ticks) => ticks == 0 ? long.MaxValue : ticks;
    }

    /// <summary>Source WAL position received minus position applied, in bytes.</summary>
    public static readonly Gauge<double> ApplyLagBytes = Meter.CreateGauge<double>(
        "replicator_apply_lag_bytes", unit: "By", description: "Replication lag in bytes: source WAL end minus the position applied on the target.");

    public static readonly Gauge<double> ApplyAppliedLsn = Meter.CreateGauge<double>(
        "replicator_apply_applied_lsn", description: "Commit LSN of the last transaction applied on the target, as a number.");

    // ---- verifier ----

    public static readonly Counter<long> VerifyRows = Meter.CreateCounter<long>(
        "replicator_verify_rows_total", description: "Rows compared by the verifier (both sides counted once).");

    /// <summary>Differences found by the last pass, label <c>table</c>.</summary>
    public static readonly Gauge<long> VerifyDifferences = Meter.CreateGauge<long>(
        "replicator_verify_differences", description: "Rows that differ between source and target in the last verifier pass, per table.");

    /// <summary>Passes, label <c>result</c> (clean, differences, error).</summary>
    public static readonly Counter<long> VerifyPasses = Meter.CreateCounter<long>(
        "replicator_verify_passes_total", description: "Verifier passes, per result (clean, differences, error).");

    public static readonly Gauge<double> VerifyLastCleanPass = Meter.CreateGauge<double>(
        "replicator_verify_last_clean_pass_timestamp_seconds", unit: "s", description: "Unix time the last clean full verifier pass finished.");

    public static readonly Gauge<double> VerifyCoverage = Meter.CreateGauge<double>(
        "replicator_verify_coverage_ratio", description: "Share of tables (0..1) covered by the current or last verifier pass.");

    // ---- cutover ----

    public static readonly Gauge<double> CutoverWriteOutage = Meter.CreateGauge<double>(
        "replicator_cutover_write_outage_seconds", unit: "s", description: "Measured write outage of the last cutover, from fence to writable target.");

    /// <summary>Creates the instruments (a static class is initialised only when touched).</summary>
    public static void EnsureCreated() => GC.KeepAlive(Meter);

    public static string Version { get; } =
        typeof(ReplicatorMetrics).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>An LSN as a gauge value (exact up to 2^53 bytes of WAL, i.e. 8 PiB).</summary>
    public static double LsnValue(ulong lsn) => lsn;
}
