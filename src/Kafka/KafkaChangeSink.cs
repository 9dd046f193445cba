using System.Diagnostics.CodeAnalysis;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NpgsqlTypes;
using Replicator.Core.Changes;
using Replicator.Core.Metrics;
using Replicator.Kafka.Debezium;

namespace Replicator.Kafka;

/// <summary>Connection and tuning of the Kafka producer.</summary>
public sealed record KafkaSinkOptions
{
    public required string BootstrapServers { get; init; }

    public required DebeziumOptions Format { get; init; }

    public string? SaslUsername { get; init; }

    /// <summary>Never logged or put in errors (DESIGN invariant 7).</summary>
    public string? SaslPassword { get; init; }

    /// <summary>librdkafka's bound on records waiting for acknowledgement: the back-pressure point.</summary>
    public int MaxInFlightRecords { get; init; } = 100_000;

    public int LingerMs { get; init; } = 5;

    /// <summary>Extra librdkafka properties (e.g. <c>security.protocol</c>, <c>ssl.ca.location</c>).</summary>
    public IReadOnlyDictionary<string, string>? Extra { get; init; }
}

/// <summary>
/// Capture's Kafka buffer: produces the framed change stream as Debezium records (idempotent
/// producer, acks=all, lz4, Java-compatible murmur2 partitioning by key; the transaction topic
/// on partition 0 so BEGIN/END keep commit order) and reports <see cref="DurableLsn"/>: the end
/// LSN of the newest transaction such that it and every transaction before it are fully
/// acknowledged by Kafka. That, and nothing further, is what Capture may confirm to the slot
/// (DESIGN invariant 3).
/// <para>
/// Why <see cref="DurableLsn"/> cannot run ahead: every record is counted against its transaction
/// before it is handed to librdkafka; the count drops only in the delivery report of a successful
/// write (acks=all); transactions leave the tracking queue strictly from its head, and only after
/// their commit was seen and their count reached zero. A failed delivery stops the sink for good
/// (<see cref="WriteAsync"/> then throws): with an idempotent producer a failure means the
/// message timed out or was rejected, and producing later records would reorder the stream, so
/// Capture restarts from the slot, which still holds everything after <see cref="DurableLsn"/>.
/// </para>
/// <see cref="WriteAsync"/> is for one caller at a time; delivery reports arrive on librdkafka's
/// thread and only touch the tracker under its lock.
/// </summary>
public sealed class KafkaChangeSink : IDisposable
{
    private readonly IProducer<byte[]?, byte[]?> _producer;
    private readonly DebeziumSerializer _serializer;
    private readonly ILogger _logger;
    private readonly string _transactionTopic;
    private readonly Lock _lock = new();
    private readonly Queue<Tracked> _transactions = new();
    private Tracked? _open;
    private NpgsqlLogSequenceNumber? _durable;
    private Exception? _failure;
    private long _inFlight;

    public KafkaChangeSink(KafkaSinkOptions options, IPostgresTypeResolver? types = null, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        _serializer = new DebeziumSerializer(options.Format, types);
        _transactionTopic = options.Format.TransactionTopic;
        _producer = KafkaClientSecurity.Build(() => new ProducerBuilder<byte[]?, byte[]?>(ProducerConfigFor(options))
            .SetErrorHandler((_, e) => _logger.ClientError("producer", e.Reason))
            .Build());
    }

    /// <summary>The producer settings; exposed for tests and for <c>replicator config</c> to show (without secrets).</summary>
    public static ProducerConfig ProducerConfigFor(KafkaSinkOptions options)
    {
        var config = new ProducerConfig
        {
            BootstrapServers = options.BootstrapServers,
            ClientId = "replicator-capture",
            EnableIdempotence = true,
            Acks = Acks.All,
            CompressionType = CompressionType.Lz4,
            // Java's default partitioner for keyed records (murmur2); records without a key go anywhere.
            Partitioner = Partitioner.Murmur2Random,
            LingerMs = options.LingerMs,
            QueueBufferingMaxMessages = options.MaxInFlightRecords,
            MessageTimeoutMs = 300_000,
            // The delivery handler reads only the error: by default the client copies every record's
            // key and value back into new arrays for its report (3.6 KB per pgbench row event).
            DeliveryReportFields = "status",
        };
        KafkaClientSecurity.Apply(config, options.SaslUsername, options.SaslPassword, options.Extra);
        return config;
    }

    /// <summary>Highest end LSN whose transaction and all before it are acknowledged by Kafka; null before the first.</summary>
    public NpgsqlLogSequenceNumber? DurableLsn
    {
        get
        {
            lock (_lock)
                return _durable;
        }
    }

    /// <summary>Records handed to librdkafka and not yet acknowledged.</summary>
    public long InFlight => Interlocked.Read(ref _inFlight);

    /// <summary>
    /// Serializes and produces one event. Waits (back-pressure) while librdkafka's queue is full;
    /// the WAL meanwhile stays on the source, held by the slot.
    /// </summary>
    /// <exception cref="KafkaException">An earlier delivery failed: the sink is stopped.</exception>
    public async ValueTask WriteAsync(ChangeEvent change, CancellationToken cancellationToken)
    {
        ThrowIfFailed();
        if (change is Heartbeat)
        {
            // A heartbeat promises its reader that every transaction before it is in Kafka: it is
            // produced only once everything produced before it is acknowledged. (The applier then
            // waits for the transaction topic's end offset as seen when it reads the heartbeat.)
            while (InFlight > 0)
            {
                await Task.Delay(1, cancellationToken).ConfigureAwait(false);
                ThrowIfFailed();
            }
        }

        Tracked tracked;
        lock (_lock)
        {
            switch (change)
            {
                case TransactionBegin:
                    _open = new Tracked();
                    _transactions.Enqueue(_open);
                    break;
                case Heartbeat:
                    _transactions.Enqueue(_open = new Tracked());
                    break;
            }

            tracked = _open ?? throw new InvalidOperationException($"{change.GetType().Name} outside a transaction: the change stream is not framed");
        }

        foreach (var record in _serializer.Serialize(change))
            await ProduceAsync(record, tracked, cancellationToken).ConfigureAwait(false);

        NpgsqlLogSequenceNumber? complete = change switch
        {
            TransactionCommit commit => commit.EndLsn,
            Heartbeat heartbeat => heartbeat.WalEnd,
            _ => null,
        };
        if (complete is not null)
        {
            lock (_lock)
            {
                tracked.EndLsn = complete;
                _open = null;
                Advance();
            }
        }
    }

    /// <summary>
    /// Produces one row of a snapshot as an <c>op: r</c> record (see
    /// <see cref="DebeziumSerializer.SerializeSnapshotRow"/>). Snapshot rows belong to no transaction
    /// and move no LSN: <see cref="DurableLsn"/> does not depend on them; <see cref="FlushAsync"/>
    /// waits for them like for any record.
    /// </summary>
    public ValueTask WriteSnapshotRowAsync(StreamRelation relation, IReadOnlyList<ColumnValue> row, SnapshotMarker marker, NpgsqlLogSequenceNumber snapshotLsn,
        DateTimeOffset snapshotTime, CancellationToken cancellationToken)
    {
        ThrowIfFailed();
        return ProduceAsync(_serializer.SerializeSnapshotRow(relation, row, marker, snapshotLsn, snapshotTime), _snapshotRows, cancellationToken);
    }

    private readonly Tracked _snapshotRows = new();
    private readonly HashSet<string> _knownTopics = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.BlockingCollection<string> _toWarm = new();
    private Thread? _warmer;
    private volatile bool _disposing;

    /// <summary>The Kafka message a record is produced as: key, value and headers.</summary>
    public static Message<byte[]?, byte[]?> MessageOf(DebeziumRecord record)
    {
        var message = new Message<byte[]?, byte[]?> { Key = record.Key, Value = record.Value };
        if (record.Headers is { Count: > 0 })
        {
            message.Headers = [];
            foreach (var (k, v) in record.Headers)
                message.Headers.Add(k, v);
        }

        return message;
    }

    private async ValueTask ProduceAsync(DebeziumRecord record, Tracked tracked, CancellationToken cancellationToken)
    {
        var message = MessageOf(record);
        var topic = record.Topic;
        if (_knownTopics.Add(topic))
            Warm(topic);

        lock (_lock)
            tracked.Outstanding++;
        Interlocked.Increment(ref _inFlight);
        void Report(DeliveryReport<byte[]?, byte[]?> report) => OnDelivery(report, tracked, topic);
        while (true)
        {
            try
            {
                // The transaction topic must keep BEGIN/END in commit order: one partition.
                if (record.Topic == _transactionTopic)
                    _producer.Produce(new TopicPartition(record.Topic, new Partition(0)), message, Report);
                else
                    _producer.Produce(record.Topic, message, Report);
                return;
            }
            catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                _logger.ProducerBackPressure(InFlight);
                ThrowIfFailed();
                await Task.Delay(10, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                lock (_lock)
                    tracked.Outstanding--;
                Interlocked.Decrement(ref _inFlight);
                throw;
            }
        }
    }

    private void OnDelivery(DeliveryReport<byte[]?, byte[]?> report, Tracked tracked, string topic)
    {
        Interlocked.Decrement(ref _inFlight);
        if (report.Error.IsError)
        {
            lock (_lock)
                _failure ??= new KafkaException(report.Error);
            _logger.DeliveryFailed(topic, report.Error.Reason, DurableLsn?.ToString() ?? "(none)");
            return;
        }

        ReplicatorMetrics.KafkaProduced.Add(1, new KeyValuePair<string, object?>("topic", topic));
        lock (_lock)
        {
            tracked.Outstanding--;
            Advance();
        }
    }

    /// <summary>Pops complete transactions from the head only: the durable position never passes an unacknowledged record.</summary>
    private void Advance()
    {
        if (_failure is not null)
            return;
        while (_transactions.Count > 0 && _transactions.Peek() is { EndLsn: { } end, Outstanding: 0 })
        {
            _transactions.Dequeue();
            _durable = end;
        }

        ReplicatorMetrics.BufferedEvents.Record(Interlocked.Read(ref _inFlight));
    }

    private void ThrowIfFailed()
    {
        Exception? failure;
        lock (_lock)
            failure = _failure;
        if (failure is not null)
            throw new KafkaException(new Error(ErrorCode.Local_Fail, $"an earlier Kafka delivery failed ({failure.Message}); capture must restart from the slot's confirmed position"), failure);
    }

    /// <summary>Waits until everything produced so far is acknowledged (or <paramref name="timeout"/> passes).</summary>
    public Task FlushAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        Task.Run(() =>
        {
            var deadline = DateTime.UtcNow + timeout;
            while (InFlight > 0 && DateTime.UtcNow < deadline)
            {
                cancellationToken.ThrowIfCancellationRequested();
                _producer.Flush(TimeSpan.FromMilliseconds(100));
            }

            ThrowIfFailed();
        }, cancellationToken);

    /// <summary>
    /// Has the producer learn a new topic at once (<see cref="TopicWarmUp"/>), on a thread of its own:
    /// a look-up waits up to seconds for a broker that is down, which must stall neither the capture
    /// nor the thread pool; one topic after another, as they come.
    /// </summary>
    private void Warm(string topic)
    {
        _toWarm.Add(topic);
        if (_warmer is not null)
            return;
        _warmer = new Thread(() =>
        {
            foreach (var next in _toWarm.GetConsumingEnumerable())
            {
                if (!_disposing)
                    TopicWarmUp.Warm(_producer.Handle, [next], _logger, "producer");
            }
        })
        { IsBackground = true, Name = "replicator-topic-warm-up" };
        _warmer.Start();
    }

    public void Dispose()
    {
        if (_disposing)
            return;
        // A look-up still running uses the producer's handle: it ends within its timeout.
        _disposing = true;
        _toWarm.CompleteAdding();
        _warmer?.Join(TimeSpan.FromSeconds(10));
        _producer.Dispose();
        _toWarm.Dispose();
    }

    [SuppressMessage("Design", "CA1812", Justification = "instantiated above")]
    private sealed class Tracked
    {
        public int Outstanding;
        public NpgsqlLogSequenceNumber? EndLsn;
    }
}
