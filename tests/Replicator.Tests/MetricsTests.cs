using System.Diagnostics.Metrics;
using System.Net;
using Replicator.Core.Hosting;
using Replicator.Core.Metrics;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests;

public class MetricsTests
{
    private static string Meter(string suffix) => $"{ReplicatorMetrics.MeterName}.Tests.{suffix}.{Guid.NewGuid():N}";

    [Fact]
    public async Task The_metrics_page_passes_promtool_with_counters_gauges_histograms_and_escaped_labels()
    {
        using var meter = new Meter(Meter("promtool"));
        using var exporter = new PrometheusExporter(m => m == meter);
        var rows = meter.CreateCounter<long>("replicator_test_rows_total", description: "Rows copied.\nSecond line with a \\ backslash.");
        var lag = meter.CreateObservableGauge("replicator_test_lag_bytes", () => new Measurement<long>(4096, new KeyValuePair<string, object?>("slot", "s1")), description: "Lag in bytes.");
        var batch = meter.CreateHistogram<double>("replicator_test_batch_seconds", unit: "s", description: "Batch latency.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.1, 1] });
        var weird = "sch\"ema\\with\nnewline.Tä ble";
        rows.Add(10, new KeyValuePair<string, object?>("table", weird));
        rows.Add(5, new KeyValuePair<string, object?>("table", weird));
        rows.Add(1, new KeyValuePair<string, object?>("table", "plain"));
        batch.Record(0.05);
        batch.Record(0.5);
        batch.Record(5);

        var page = exporter.Render();

        Assert.Contains("replicator_test_rows_total{table=\"sch\\\"ema\\\\with\\nnewline.Tä ble\"} 15\n", page, StringComparison.Ordinal);
        Assert.Contains("replicator_test_rows_total{table=\"plain\"} 1\n", page, StringComparison.Ordinal);
        Assert.Contains("# TYPE replicator_test_lag_bytes gauge\nreplicator_test_lag_bytes{slot=\"s1\"} 4096\n", page, StringComparison.Ordinal);
        Assert.Contains("replicator_test_batch_seconds_bucket{le=\"0.1\"} 1\n", page, StringComparison.Ordinal);
        Assert.Contains("replicator_test_batch_seconds_bucket{le=\"1\"} 2\n", page, StringComparison.Ordinal);
        Assert.Contains("replicator_test_batch_seconds_bucket{le=\"+Inf\"} 3\n", page, StringComparison.Ordinal);
        Assert.Contains("replicator_test_batch_seconds_sum 5.55\n", page, StringComparison.Ordinal);
        Assert.Contains("replicator_test_batch_seconds_count 3\n", page, StringComparison.Ordinal);
        Assert.Contains("# HELP replicator_test_rows_total Rows copied.\\nSecond line with a \\\\ backslash.\n", page, StringComparison.Ordinal);

        await PromtoolCheckAsync(page);
        GC.KeepAlive(lag);
    }

    [Fact]
    public void The_lag_counts_from_the_older_of_what_the_applier_and_the_Kafka_consumer_hold_back()
    {
        var now = new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero).UtcTicks;
        long Ago(int seconds) => now - TimeSpan.FromSeconds(seconds).Ticks;
        Assert.Equal(0, Replicator.Core.Metrics.ReplicatorMetrics.LagSeconds(0, 0, now)); // nothing held back
        Assert.Equal(5, Replicator.Core.Metrics.ReplicatorMetrics.LagSeconds(Ago(5), 0, now));
        Assert.Equal(30, Replicator.Core.Metrics.ReplicatorMetrics.LagSeconds(Ago(5), Ago(30), now)); // a Kafka transaction waiting for its events
        Assert.Equal(30, Replicator.Core.Metrics.ReplicatorMetrics.LagSeconds(0, Ago(30), now));
        Assert.Equal(0, Replicator.Core.Metrics.ReplicatorMetrics.LagSeconds(now + TimeSpan.FromSeconds(2).Ticks, 0, now)); // source clock ahead
    }

    [Theory]
    [InlineData("dotnet.gc.pause.time", "s", true, "dotnet_gc_pause_time_seconds_total")]
    [InlineData("dotnet.gc.collections", "{collection}", true, "dotnet_gc_collections_total")]
    [InlineData("dotnet.process.memory.working_set", "By", false, "dotnet_process_memory_working_set_bytes")]
    [InlineData("dotnet.thread_pool.queue.length", "{work_item}", false, "dotnet_thread_pool_queue_length")]
    [InlineData("http.server.request.duration_seconds", "s", false, "http_server_request_duration_seconds")]
    [InlineData("jobs_total", null, true, "jobs_total")]
    public void Other_meters_instruments_get_OpenTelemetrys_Prometheus_names(string name, string? unit, bool counter, string expected) =>
        Assert.Equal(expected, PrometheusExporter.OpenTelemetryName(name, unit, counter));

    [Fact]
    public async Task Promtool_rejects_a_malformed_page_so_the_check_above_can_fail()
    {
        var result = await ProcessRunner.RunAsync(Promtool(), ["check", "metrics"], stdin: "# TYPE x counter\nx{a=\"unterminated} 1\n");
        Assert.NotEqual(0, result.ExitCode);
    }

    [Fact]
    public async Task The_monitoring_server_serves_metrics_health_and_readiness()
    {
        var health = new HealthState();
        await using var server = await MonitoringServer.StartAsync("127.0.0.1:0", health, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = server.Address };

        var metrics = await http.GetAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        Assert.StartsWith("text/plain", metrics.Content.Headers.ContentType?.ToString(), StringComparison.Ordinal);
        var page = await metrics.Content.ReadAsStringAsync();
        Assert.Contains("replicator_build_info{version=", page, StringComparison.Ordinal);
        // The runtime's own meter: CPU, GC and JIT, named as the OpenTelemetry Prometheus exporter names them.
        Assert.Matches(@"\ndotnet_process_cpu_time_seconds_total\{cpu_mode=""user""\} [0-9.e+-]+\n", page);
        Assert.Matches(@"\n# TYPE dotnet_gc_collections_total counter\ndotnet_gc_collections_total\{gc_heap_generation=""gen0""\} \d+\n", page);
        Assert.Contains("\ndotnet_jit_compilation_time_seconds_total ", page, StringComparison.Ordinal);
        Assert.Contains("\ndotnet_process_memory_working_set_bytes ", page, StringComparison.Ordinal);
        Assert.Contains("\ndotnet_thread_pool_thread_count_total ", page, StringComparison.Ordinal);
        await PromtoolCheckAsync(page);

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/healthz", UriKind.Relative))).StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync(new Uri("/readyz", UriKind.Relative))).StatusCode);
        health.Set("applier", ready: true);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/readyz", UriKind.Relative))).StatusCode);
        health.Set("applier", ready: false, "target unreachable", live: false);
        var broken = await http.GetAsync(new Uri("/healthz", UriKind.Relative));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, broken.StatusCode);
        Assert.Contains("applier: broken (target unreachable)", await broken.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Bad input: answered or dropped, and the server goes on serving.
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri("/nothing?x=1", UriKind.Relative))).StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await http.PostAsync(new Uri("/metrics", UriKind.Relative), new StringContent("x"))).StatusCode);
        using (var garbage = new System.Net.Sockets.TcpClient())
        {
            await garbage.ConnectAsync(server.Address.Host, server.Address.Port);
            await garbage.GetStream().WriteAsync("not http at all\r\n\r\n"u8.ToArray());
            Assert.Equal(0, await garbage.GetStream().ReadAsync(new byte[64]));
        }

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("/metrics?scrape=1", UriKind.Relative))).StatusCode);
    }

    internal static async Task PromtoolCheckAsync(string page)
    {
        var result = await ProcessRunner.RunAsync(Promtool(), ["check", "metrics"], stdin: page);
        Assert.True(result.ExitCode == 0, $"promtool check metrics failed:\n{result.Output}\n--- page ---\n{page}");
    }

    private static string Promtool() =>
        File.Exists("/usr/bin/promtool")
            ? "/usr/bin/promtool"
            : throw new InvalidOperationException("promtool not found: install it with 'apt-get install -y prometheus' (scripts/test.sh does this)");
}
