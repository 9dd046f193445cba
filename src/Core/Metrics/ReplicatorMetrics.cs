using System.Diagnostics.Metrics;

namespace Replicator.Core.Metrics;

/// <summary>
/// The one meter every component reports to. Instrument names are already Prometheus names
/// (base units, <c>_total</c> on counters), so the dashboard and alert rules in deploy/k8s can
/// name them exactly.
/// </summary>
public static class ReplicatorMetrics
{
    public const string MeterName = "Replicator";

    public static readonly Meter Meter = new(MeterName, typeof(ReplicatorMetrics).Assembly.GetName().Version?.ToString());

    /// <summary>Process start, as a Unix time gauge (lets dashboards see restarts).</summary>
    public static readonly ObservableGauge<double> StartTime = Meter.CreateObservableGauge(
        "replicator_start_time_seconds",
        () => ProcessStart,
        unit: "s",
        description: "Start time of the replicator process since the Unix epoch, in seconds.");

    /// <summary>Information about the running build, value always 1.</summary>
    public static readonly ObservableGauge<int> BuildInfo = Meter.CreateObservableGauge(
        "replicator_build_info",
        () => new Measurement<int>(1, new KeyValuePair<string, object?>("version", Version)),
        description: "Replicator build information; the value is always 1.");

    private static readonly double ProcessStart = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    /// <summary>Creates the process-wide instruments (a static class is initialised only when touched).</summary>
    public static void EnsureCreated() => GC.KeepAlive(Meter);

    public static string Version { get; } =
        typeof(ReplicatorMetrics).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
}
