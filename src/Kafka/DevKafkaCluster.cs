using Confluent.Kafka;

namespace Replicator.Kafka;

/// <summary>
/// A Kafka-protocol broker for development and tests only: librdkafka's built-in mock cluster,
/// which speaks the Kafka protocol over TCP on loopback and keeps everything in memory. It lives
/// exactly as long as this object (the client that created it). Never use it for real data.
/// </summary>
public sealed class DevKafkaCluster : IDisposable
{
    private readonly IProducer<byte[], byte[]> _owner;

    private DevKafkaCluster(IProducer<byte[], byte[]> owner, string bootstrapServers, int brokers)
    {
        _owner = owner;
        BootstrapServers = bootstrapServers;
        Brokers = brokers;
    }

    /// <summary><c>127.0.0.1:PORT,…</c> — point every other client at this.</summary>
    public string BootstrapServers { get; }

    public int Brokers { get; }

    /// <summary>Starts a mock cluster of <paramref name="brokers"/> brokers.</summary>
    public static DevKafkaCluster Start(int brokers = 3)
    {
        var config = new ProducerConfig { BootstrapServers = "", ClientId = "replicator-dev-kafka" };
        config.Set("test.mock.num.brokers", brokers.ToString(System.Globalization.CultureInfo.InvariantCulture));
        IProducer<byte[], byte[]> owner;
        NativeHeap.TuneForKafka(); // the mock brokers' buffers are librdkafka's too
        try
        {
            owner = new ProducerBuilder<byte[], byte[]>(config).Build();
        }
        catch (DllNotFoundException e)
        {
            throw new InvalidOperationException("librdkafka is not installed: run 'apt-get install librdkafka-dev' (Debian) and try again", e);
        }

        try
        {
            using var admin = new DependentAdminClientBuilder(owner.Handle).Build();
            var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
            var bootstrap = string.Join(',', metadata.Brokers.OrderBy(b => b.BrokerId).Select(b => $"{b.Host}:{b.Port}"));
            if (bootstrap.Length == 0)
                throw new InvalidOperationException("librdkafka's mock cluster reported no brokers");
            return new DevKafkaCluster(owner, bootstrap, metadata.Brokers.Count);
        }
        catch
        {
            owner.Dispose();
            throw;
        }
    }

    public void Dispose() => _owner.Dispose();
}
