using System.Diagnostics;
using Replicator.Kafka;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Replicator.Tests.Fixtures;

/// <summary>
/// A Kafka-protocol broker for tests: librdkafka's mock cluster (3 brokers on loopback), alive for
/// as long as this fixture holds the client that created it.
/// </summary>
public sealed class KafkaFixture : IDisposable
{
    public KafkaFixture(IMessageSink sink)
    {
        var stopwatch = Stopwatch.StartNew();
        Cluster = DevKafkaCluster.Start(3);
        sink.OnMessage(new DiagnosticMessage($"Kafka fixture: mock cluster at {Cluster.BootstrapServers} started in {stopwatch.Elapsed.TotalSeconds:F1} s"));
    }

    public DevKafkaCluster Cluster { get; }

    public string BootstrapServers => Cluster.BootstrapServers;

    public void Dispose() => Cluster.Dispose();
}
