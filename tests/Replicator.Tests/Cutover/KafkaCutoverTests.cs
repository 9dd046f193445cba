using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;
using Replicator.Cutover;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Cutover;

/// <summary>A whole cutover while replication runs through Kafka (<c>run --buffer kafka</c>), over the Kafka protocol.</summary>
public class KafkaCutoverTests(PostgresFixture fixture, KafkaFixture kafka) : IClassFixture<PostgresFixture>, IClassFixture<KafkaFixture>
{
    [Fact]
    public async Task Cutover_through_the_kafka_buffer_under_a_live_writer_loses_no_acknowledged_write()
    {
        await using var db = await fixture.CreateDatabasesAsync("cutover_kafka");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, CutoverTests.Schema);
        var logs = new CapturingLoggerProvider();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Information));
        replication.StartThroughKafka(kafka.BootstrapServers, loggers);
        // The slot moves when Kafka has the changes; the target has them once the applier read them back.
        await replication.CatchUpAsync();
        await Fixtures.Replication.WaitForTargetAsync(db, replication.Running, "SELECT count(*)::text FROM product", "2000");
        await CutoverTests.VerifyCleanAsync(db, replication.Slot, loggers);

        await CutoverTests.SwitchUnderALiveWriterAsync(db, replication, loggers, () => "\n" + logs.Text);
    }

    [Fact]
    public async Task In_the_split_deployment_the_cutover_ends_the_applier_and_the_capture_says_its_slot_went_with_the_cutover()
    {
        await using var db = await fixture.CreateDatabasesAsync("cutover_kafka_split");
        await using var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE product (id int PRIMARY KEY, name text);");
        var logs = new CapturingLoggerProvider();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Information));
        // Two processes in production (replicator capture, replicator apply): two pipelines here.
        var capture = Fixtures.Replication.KafkaPipeline(db, replication.Slot, replication.Slot, kafka.BootstrapServers, Applier.PipelineRole.Capture, loggers);
        var apply = Fixtures.Replication.KafkaPipeline(db, replication.Slot, replication.Slot, kafka.BootstrapServers, Applier.PipelineRole.Apply, loggers);
        using var stop = new CancellationTokenSource();
        var captureRunning = Task.Run(() => capture.RunAsync(stop.Token));
        var applyRunning = Task.Run(() => apply.RunAsync(stop.Token));
        try
        {
            await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO product SELECT g, 'product ' || g FROM generate_series(1, 100) g");
            await Fixtures.Replication.WaitForTargetAsync(db, Task.WhenAny(captureRunning, applyRunning), "SELECT count(*)::text FROM product", "100");
            await CutoverTests.VerifyCleanAsync(db, replication.Slot, loggers);
            var options = new CutoverOptions { Slot = replication.Slot, SwitchCommand = "true", MaxLagBytes = 512L << 20 };
            var report = await new CutoverRunner(options, ConnectionInfo.Parse(db.SourceUri, "source"), ConnectionInfo.Parse(db.TargetUri, "target"), "cutover", loggers)
                .RunAsync(CancellationToken.None);
            Assert.True(report.Outcome == "switched", report.ToText() + "\n" + logs.Text);
            Assert.True(report.SlotDropped, report.ToText() + "\n" + logs.Text);

            await applyRunning.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(apply.Switched, logs.Text);
            var e = await Assert.ThrowsAsync<Core.Errors.ReplicationException>(() => captureRunning.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains($"replication slot \"{replication.Slot}\" was dropped", e.Message, StringComparison.Ordinal);
            Assert.Contains("a cutover switched the application away from this source, and replication from it is over. Stop this process (scale the capture deployment to 0)", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(captureRunning, applyRunning).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }
}
