using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Replicator.Core.Metrics;

/// <summary>
/// Collects every instrument of the Replicator meters through a <see cref="MeterListener"/> and
/// renders the Prometheus text exposition format (version 0.0.4).
/// </summary>
/// <remarks>
/// Safety: measurements arrive on any thread; each series is updated under its instrument's lock,
/// and a scrape renders under the same locks, so a scrape never sees half an update of a
/// histogram (count, sum and buckets agree). Observable instruments are polled at scrape time.
/// </remarks>
public sealed class PrometheusExporter : IDisposable
{
    /// <summary>Buckets for histograms created without advice: seconds from 1 ms to 60 s.</summary>
    public static readonly double[] DefaultBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly MeterListener _listener;
    private readonly ConcurrentDictionary<Instrument, InstrumentState> _states = new();
    private readonly Func<Meter, bool> _include;

    /// <summary>The .NET runtime's own meter (CPU, GC, JIT, thread pool, memory), exported with Replicator's by default.</summary>
    public const string RuntimeMeterName = "System.Runtime";

    /// <param name="include">Which meters to export; by default those named <c>Replicator*</c> and the runtime's (<see cref="RuntimeMeterName"/>).</param>
    public PrometheusExporter(Func<Meter, bool>? include = null)
    {
        _include = include ?? (m => m.Name.StartsWith(ReplicatorMetrics.MeterName, StringComparison.Ordinal) || m.Name == RuntimeMeterName);
        ReplicatorMetrics.EnsureCreated();
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                // The runtime's gauges named "*.count" (assemblies, CPUs, timers) are left out:
                // Prometheus reserves the _count suffix for histograms and summaries.
                var countGauge = instrument.Meter.Name == RuntimeMeterName && instrument.Name.EndsWith(".count", StringComparison.Ordinal) && !IsCounter(instrument);
                if (_include(instrument.Meter) && !countGauge)
                {
                    _states.TryAdd(instrument, new InstrumentState(instrument));
                    listener.EnableMeasurementEvents(instrument);
                }
            },
            MeasurementsCompleted = (instrument, _) => _states.TryRemove(instrument, out InstrumentState? _),
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<float>((i, v, tags, _) => Record(i, v, tags));
        _listener.Start();
    }

    /// <summary>The content type of <see cref="Render"/>'s output.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (_states.TryGetValue(instrument, out var state))
            state.Record(value, tags);
    }

    /// <summary>Polls observable instruments and renders every series.</summary>
    public string Render()
    {
        foreach (var state in _states.Values)
        {
            if (state.IsObservable)
                state.BeginObservation();
        }

        _listener.RecordObservableInstruments();
        var sb = new StringBuilder();
        foreach (var group in _states.Values.GroupBy(s => s.Name).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var first = group.First();
            sb.Append("# HELP ").Append(group.Key).Append(' ').Append(EscapeHelp(first.Help)).Append('\n');
            sb.Append("# TYPE ").Append(group.Key).Append(' ').Append(first.Type).Append('\n');
            foreach (var state in group)
                state.Render(sb);
        }

        return sb.ToString();
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>Makes <paramref name="name"/> a valid Prometheus metric or label name.</summary>
    public static string SanitizeName(string name, bool label = false)
    {
        var sb = new StringBuilder(name.Length);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            var ok = c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or '_' || (!label && c == ':') || (i > 0 && c is >= '0' and <= '9');
            sb.Append(ok ? c : '_');
        }

        return sb.ToString();
    }

    /// <summary>
    /// The Prometheus name of an OpenTelemetry-style instrument: dots become underscores, then the
    /// unit's suffix (<c>s</c> → <c>_seconds</c>, <c>By</c> → <c>_bytes</c>; annotations such as
    /// <c>{collection}</c> add nothing) and, for counters, <c>_total</c>.
    /// </summary>
    public static string OpenTelemetryName(string name, string? unit, bool counter)
    {
        var result = SanitizeName(name);
        var suffix = unit switch
        {
            "s" => "_seconds",
            "ms" => "_milliseconds",
            "By" => "_bytes",
            "1" when !counter => "_ratio",
            _ => "",
        };
        if (suffix.Length > 0 && !result.EndsWith(suffix, StringComparison.Ordinal))
            result += suffix;
        if (counter && !result.EndsWith("_total", StringComparison.Ordinal))
            result += "_total";
        return result;
    }

    private static bool IsCounter(Instrument instrument) =>
        instrument.GetType().GetGenericTypeDefinition() is var kind && (kind == typeof(Counter<>) || kind == typeof(ObservableCounter<>));

    /// <summary>Escapes a label value: backslash, double quote and line feed.</summary>
    public static string EscapeLabelValue(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string EscapeHelp(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    internal static string FormatValue(double value) => value switch
    {
        double.PositiveInfinity => "+Inf",
        double.NegativeInfinity => "-Inf",
        double.NaN => "NaN",
        _ => value.ToString("R", CultureInfo.InvariantCulture),
    };

    private sealed class InstrumentState
    {
        private readonly object _lock = new();
        private readonly Dictionary<string, Series> _series = new(StringComparer.Ordinal);
        private readonly double[] _buckets = [];
        private readonly bool _isHistogram;
        private readonly bool _setsValue; // observations and Gauge<T> report the value itself, not an increment

        public InstrumentState(Instrument instrument)
        {
            Help = string.IsNullOrEmpty(instrument.Description) ? instrument.Name : instrument.Description;
            var kind = instrument.GetType().GetGenericTypeDefinition();
            IsObservable = instrument.IsObservable;
            _isHistogram = kind == typeof(Histogram<>);
            _setsValue = IsObservable || kind == typeof(Gauge<>);
            Type = _isHistogram ? "histogram" : IsCounter(instrument) ? "counter" : "gauge";
            // Replicator's own names are Prometheus names already; others (the runtime's
            // "dotnet.gc.pause.time", unit "s") get the unit and _total suffixes the OpenTelemetry
            // Prometheus exporter gives them: dotnet_gc_pause_time_seconds_total.
            Name = instrument.Meter.Name.StartsWith(ReplicatorMetrics.MeterName, StringComparison.Ordinal)
                ? SanitizeName(instrument.Name)
                : OpenTelemetryName(instrument.Name, instrument.Unit, Type == "counter");
            if (_isHistogram)
                _buckets = HistogramBuckets(instrument) ?? DefaultBuckets;
        }

        public string Name { get; }

        public string Help { get; }

        public string Type { get; }

        public bool IsObservable { get; }

        public void BeginObservation()
        {
            lock (_lock)
                _series.Clear();
        }

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            lock (_lock)
            {
                var labels = LabelsOf(tags);
                if (!_series.TryGetValue(labels, out var s))
                    _series[labels] = s = new Series(_buckets.Length);
                if (_isHistogram)
                {
                    s.Count++;
                    s.Sum += value;
                    for (var i = 0; i < _buckets.Length; i++)
                    {
                        if (value <= _buckets[i])
                            s.BucketCounts[i]++;
                    }
                }
                else if (_setsValue)
                {
                    s.Sum = value;
                }
                else
                {
                    s.Sum += value;
                }
            }
        }

        public void Render(StringBuilder sb)
        {
            lock (_lock)
            {
                foreach (var (labels, s) in _series.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    if (!_isHistogram)
                    {
                        sb.Append(Name).Append(Braces(labels)).Append(' ').Append(FormatValue(s.Sum)).Append('\n');
                        continue;
                    }

                    for (var i = 0; i < _buckets.Length; i++)
                        sb.Append(Name).Append("_bucket").Append(Braces(Join(labels, $"le=\"{FormatValue(_buckets[i])}\""))).Append(' ').Append(s.BucketCounts[i]).Append('\n');
                    sb.Append(Name).Append("_bucket").Append(Braces(Join(labels, "le=\"+Inf\""))).Append(' ').Append(s.Count).Append('\n');
                    sb.Append(Name).Append("_sum").Append(Braces(labels)).Append(' ').Append(FormatValue(s.Sum)).Append('\n');
                    sb.Append(Name).Append("_count").Append(Braces(labels)).Append(' ').Append(s.Count).Append('\n');
                }
            }
        }

        private static double[]? HistogramBuckets(Instrument instrument) => instrument switch
        {
            // Instrument<T>.Advice carries the bucket boundaries given at creation.
            Instrument<double> d => d.Advice?.HistogramBucketBoundaries?.ToArray(),
            Instrument<long> l => l.Advice?.HistogramBucketBoundaries?.Select(x => (double)x).ToArray(),
            Instrument<int> n => n.Advice?.HistogramBucketBoundaries?.Select(x => (double)x).ToArray(),
            _ => null,
        };

        // Recording runs per event on hot paths (a Kafka delivery report per record): the label text
        // of a one-tag series is looked up, not formatted again each time. Bounded by the series count.
        private readonly Dictionary<(string Key, string Value), string> _singleTagLabels = [];

        private string LabelsOf(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length != 1 || tags[0].Value is not string value)
                return FormatLabels(tags);
            if (!_singleTagLabels.TryGetValue((tags[0].Key, value), out var labels))
                _singleTagLabels[(tags[0].Key, value)] = labels = FormatLabels(tags);
            return labels;
        }

        private static string FormatLabels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length == 0)
                return "";
            var pairs = new List<string>(tags.Length);
            foreach (var tag in tags)
            {
                var value = Convert.ToString(tag.Value, CultureInfo.InvariantCulture) ?? "";
                pairs.Add($"{SanitizeName(tag.Key, label: true)}=\"{EscapeLabelValue(value)}\"");
            }

            pairs.Sort(StringComparer.Ordinal);
            return string.Join(',', pairs);
        }

        private static string Join(string labels, string extra) => labels.Length == 0 ? extra : labels + "," + extra;

        private static string Braces(string labels) => labels.Length == 0 ? "" : "{" + labels + "}";
    }

    private sealed class Series(int buckets)
    {
        public long Count;
        public double Sum;
        public readonly long[] BucketCounts = new long[buckets];
    }
}
