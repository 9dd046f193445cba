using System.Runtime.CompilerServices;
using System.Text.Json;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Changes;
using Replicator.Kafka.Debezium;

namespace Replicator.Kafka;

/// <summary>Connection of the applier's consumer.</summary>
public sealed record KafkaSourceOptions
{
    public required string BootstrapServers { get; init; }

    /// <summary>Debezium's <c>topic.prefix</c>: the consumer subscribes to <c>^prefix\.</c> (table topics and the transaction topic).</summary>
    public required string TopicPrefix { get; init; }

    public string GroupId { get; init; } = "replicator-apply";

    public string? SaslUsername { get; init; }

    /// <summary>Never logged or put in errors (DESIGN invariant 7).</summary>
    public string? SaslPassword { get; init; }

    public IReadOnlyDictionary<string, string>? Extra { get; init; }
}

/// <summary>
/// The applier's side of the Kafka buffer: a consumer (group, read_committed, no auto-commit)
/// over the table topics and the transaction topic, feeding records through the
/// <see cref="DebeziumDeserializer"/> and the <see cref="TransactionOrderer"/>, yielding whole source
/// transactions in commit order together with the offsets to resume from. The applier stores those
/// offsets in <c>replicator.position.kafka_offsets</c> in the same target transaction as the changes
/// (DESIGN invariant 2) and passes them back as <c>startOffsets</c> after a restart; Kafka's own
/// committed offsets (<see cref="CommitAdvisory"/>) only serve monitoring.
/// <para>
/// Commit order needs every partition in one orderer, so one applier consumes a prefix: a second
/// member of the same group would take partitions away and stall the orderer (it waits, it does not
/// reorder). Run one applier per target; a standby may wait in the group.
/// </para>
/// A record that cannot be read stops the stream with <see cref="DebeziumFormatException"/> naming
/// its topic, partition and offset (a poison message is never skipped silently).
/// </summary>
public sealed class KafkaChangeSource : IDisposable
{
    private readonly KafkaSourceOptions _options;
    private readonly DebeziumDeserializer _deserializer;
    private readonly TransactionOrderer _orderer;
    private readonly ILogger _logger;
    private readonly IConsumer<byte[]?, byte[]?> _consumer;
    private IReadOnlyDictionary<(string Topic, int Partition), long> _startOffsets = new Dictionary<(string, int), long>();

    public KafkaChangeSource(KafkaSourceOptions options, DebeziumDeserializer deserializer, TransactionOrderer? orderer = null, ILogger? logger = null)
    {
        _options = options;
        _deserializer = deserializer;
        _orderer = orderer ?? new TransactionOrderer();
        _logger = logger ?? NullLogger.Instance;
        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(ConsumerConfigFor(options))
            .SetErrorHandler((_, e) => _logger.ClientError("consumer", e.Reason))
            .SetPartitionsAssignedHandler((_, partitions) =>
            {
                _logger.PartitionsAssigned(string.Join(", ", partitions.Select(p => $"{p.Topic}[{p.Partition.Value}]")));
                // Our position wins over the group's committed offsets: at the start the stored one
                // (the orderer was seeded with it), after a rebalance where the orderer stands (what it
                // had not released yet is read again). Partitions never stored start at the beginning
                // (Debezium topics are the full history since the snapshot).
                var resume = _orderer.Rewind();
                return partitions.Select(p => new TopicPartitionOffset(p,
                    resume.TryGetValue((p.Topic, p.Partition.Value), out var o) ? new Offset(o) : Offset.Beginning));
            })
            .Build();
    }

    public static ConsumerConfig ConsumerConfigFor(KafkaSourceOptions options)
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = options.BootstrapServers,
            GroupId = options.GroupId,
            ClientId = "replicator-apply",
            IsolationLevel = IsolationLevel.ReadCommitted,
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            // A position Kafka no longer holds (records deleted by retention before they were applied)
            // is an error, never a silent jump to whatever is oldest: that would skip transactions.
            // Partitions without a stored position start at their beginning explicitly (assign handler).
            AutoOffsetReset = AutoOffsetReset.Error,
            TopicMetadataRefreshIntervalMs = 5000,
            // A restarted applier (pod rescheduled, process killed) gets the partitions only once the
            // group evicts its dead predecessor: 10 s instead of the 45 s default.
            SessionTimeoutMs = 10_000,
            HeartbeatIntervalMs = 3_000,
        };
        KafkaClientSecurity.Apply(config, options.SaslUsername, options.SaslPassword, options.Extra);
        return config;
    }

    /// <summary>
    /// Reads transactions in commit order until cancelled (heartbeats left out; see <see cref="ReadStreamAsync"/>).
    /// <paramref name="startOffsets"/> are the offsets stored with the last applied transaction (null on a first start).
    /// </summary>
    public async IAsyncEnumerable<OrderedTransaction> ReadAsync(IReadOnlyDictionary<(string Topic, int Partition), long>? startOffsets,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var item in ReadStreamAsync(startOffsets, cancellationToken).ConfigureAwait(false))
        {
            if (item is OrderedTransaction transaction)
                yield return transaction;
        }
    }

    /// <summary>The transaction topic: BEGIN/END in commit order, always on partition 0.</summary>
    public string TransactionTopic => _options.TopicPrefix + ".transaction";

    /// <summary>Our producer's heartbeats (Debezium's heartbeat topic naming).</summary>
    public string HeartbeatTopic => DebeziumDeserializer.HeartbeatTopicPrefix + _options.TopicPrefix;

    /// <summary>
    /// Reads transactions in commit order, and heartbeats, until cancelled. A heartbeat record says
    /// the source was idle at its WAL end and that every transaction before it had been acknowledged
    /// by Kafka when it was produced; so when it is read, every such transaction is below the
    /// transaction topic's high watermark. The heartbeat is handed on once the orderer has released
    /// everything below that watermark: then every transaction that committed before its WAL end has
    /// been handed on before it, from every topic.
    /// </summary>
    public async IAsyncEnumerable<OrderedItem> ReadStreamAsync(IReadOnlyDictionary<(string Topic, int Partition), long>? startOffsets,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        _startOffsets = startOffsets ?? new Dictionary<(string, int), long>();
        _orderer.StartFrom(_startOffsets);
        await WaitForTopicsAsync(cancellationToken).ConfigureAwait(false);
        _consumer.Subscribe(["^" + EscapeRegex(_options.TopicPrefix) + "\\..*", "^" + EscapeRegex(HeartbeatTopic) + "$"]);
        var transactionPartition = new TopicPartition(TransactionTopic, new Partition(0));
        while (!cancellationToken.IsCancellationRequested)
        {
            // Take what is already fetched without blocking; only an empty queue waits (off the
            // caller's thread, with a short timeout so cancellation stays prompt).
            ConsumeResult<byte[]?, byte[]?>? result;
            try
            {
                result = _consumer.Consume(TimeSpan.Zero)
                    ?? await Task.Run(() => _consumer.Consume(TimeSpan.FromMilliseconds(200)), cancellationToken).ConfigureAwait(false);
            }
            catch (ConsumeException e) when (!e.Error.IsFatal && e.Error.Code == ErrorCode.UnknownTopicOrPart)
            {
                // The regex subscription names no topic yet: the capture has not produced anything.
                await Task.Delay(200, cancellationToken).ConfigureAwait(false);
                continue;
            }
            catch (ConsumeException e) when (e.Error.Code == ErrorCode.Local_AutoOffsetReset)
            {
                throw new Replicator.Core.Errors.ReplicationException(Replicator.Core.Errors.ReplicationErrorKind.Permanent,
                    $"Kafka no longer holds records this applier has not applied yet ({e.ConsumerRecord?.TopicPartitionOffset.ToString() ?? "topic unknown"}: {e.Error.Reason}). "
                    + "They were deleted by the topic's retention (or by the development broker's limit of 5 MB per partition) before they were applied, and the source's slot released their WAL once Kafka had them: "
                    + "nothing after them is applied. Give the topics a retention longer than the applier's longest stop (retention.ms, retention.bytes), then start over with a new snapshot (a new --slot and an empty target).", e);
            }

            if (result is null || result.IsPartitionEOF)
                continue;
            var position = new KafkaPosition(result.Topic, result.Partition.Value, result.Offset.Value);
            List<KeyValuePair<string, byte[]>>? headers = null;
            if (result.Message.Headers is { Count: > 0 })
                headers = result.Message.Headers.Select(h => new KeyValuePair<string, byte[]>(h.Key, h.GetValueBytes())).ToList();
            var decoded = _deserializer.Decode(position, result.Message.Key, result.Message.Value, headers);
            foreach (var transaction in _orderer.Add(decoded))
                yield return transaction;
            if (decoded is DecodedHeartbeat heartbeat)
            {
                var watermark = await TransactionWatermarkAsync(transactionPartition, cancellationToken).ConfigureAwait(false);
                if (watermark is { } through)
                    _orderer.AddHeartbeat(new Heartbeat(heartbeat.WalEnd, heartbeat.Time), (transactionPartition.Topic, 0), through);
            }

            if (_orderer.PendingHeartbeats > 0 && _orderer.TakeHeartbeat() is { } ready)
                yield return new OrderedHeartbeat(ready);
        }
    }

    /// <summary>
    /// Joining a consumer group costs a rebalance (a broker waits group.initial.rebalance.delay.ms,
    /// 3 s by default, before answering the first member), and a regex subscription discovers new
    /// topics only at the next metadata refresh, which costs another. Subscribing before Capture has
    /// created any topic paid both at every start; so the subscription waits until the prefix's
    /// topics exist (one metadata request every 200 ms until then).
    /// </summary>
    private async Task WaitForTopicsAsync(CancellationToken cancellationToken)
    {
        using var admin = new DependentAdminClientBuilder(_consumer.Handle).Build();
        var tablePrefix = _options.TopicPrefix + ".";
        var seen = false;
        while (true)
        {
            try
            {
                var metadata = await Task.Run(() => admin.GetMetadata(TimeSpan.FromSeconds(5)), cancellationToken).ConfigureAwait(false);
                var present = metadata.Topics.Count(t => t.Error.Code == ErrorCode.NoError && (t.Topic.StartsWith(tablePrefix, StringComparison.Ordinal) || t.Topic == HeartbeatTopic));
                if (present > 0 && seen)
                    return;
                // Capture creates the transaction topic and a transaction's table topics together: one
                // more look a moment later catches the table topics created with it.
                seen = present > 0;
            }
            catch (KafkaException e)
            {
                _logger.ClientError("consumer", e.Error.Reason);
            }

            await Task.Delay(200, cancellationToken).ConfigureAwait(false);
        }
    }

    private static string EscapeRegex(string text) => System.Text.RegularExpressions.Regex.Escape(text);

    /// <summary>The transaction topic's high watermark (0 when it does not exist yet); null when the broker did not answer (that heartbeat is dropped, the next one comes).</summary>
    private async Task<long?> TransactionWatermarkAsync(TopicPartition partition, CancellationToken cancellationToken)
    {
        try
        {
            var offsets = await Task.Run(() => _consumer.QueryWatermarkOffsets(partition, TimeSpan.FromSeconds(5)), cancellationToken).ConfigureAwait(false);
            return offsets.High.Value < 0 ? 0 : offsets.High.Value;
        }
        catch (KafkaException e) when (e.Error.Code == ErrorCode.UnknownTopicOrPart)
        {
            return 0;
        }
        catch (KafkaException e)
        {
            _logger.ClientError("consumer", $"heartbeat dropped: the transaction topic's end offset could not be read ({e.Error.Reason})");
            return null;
        }
    }

    /// <summary>Commits the resume offsets to the group (advisory: lag monitoring; the target's table is authoritative).</summary>
    public void CommitAdvisory(OrderedTransaction transaction)
    {
        _consumer.Commit(transaction.ResumeOffsets.Select(p => new TopicPartitionOffset(p.Key.Topic, new Partition(p.Key.Partition), new Offset(p.Value))));
    }

    /// <summary>The offsets as <c>replicator.position.kafka_offsets</c> stores them: <c>{"topic": {"partition": offset}}</c>, topics and partitions in order.</summary>
    public static string OffsetsToJson(IReadOnlyDictionary<(string Topic, int Partition), long> offsets)
    {
        // Once per applied transaction: written directly rather than through LINQ groupings and the serializer.
        var entries = new KeyValuePair<(string Topic, int Partition), long>[offsets.Count];
        var n = 0;
        foreach (var entry in offsets)
            entries[n++] = entry;
        Array.Sort(entries, static (a, b) =>
        {
            var byTopic = string.CompareOrdinal(a.Key.Topic, b.Key.Topic);
            return byTopic != 0 ? byTopic : a.Key.Partition.CompareTo(b.Key.Partition);
        });
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(64 + (entries.Length * 48));
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            string? topic = null;
            Span<char> partition = stackalloc char[11];
            foreach (var ((t, p), offset) in entries)
            {
                if (!string.Equals(t, topic, StringComparison.Ordinal))
                {
                    if (topic is not null)
                        w.WriteEndObject();
                    w.WriteStartObject(t);
                    topic = t;
                }

                p.TryFormat(partition, out var written, default, System.Globalization.CultureInfo.InvariantCulture);
                w.WriteNumber(partition[..written], offset);
            }

            if (topic is not null)
                w.WriteEndObject();
            w.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    public static IReadOnlyDictionary<(string Topic, int Partition), long> OffsetsFromJson(string? json)
    {
        var result = new Dictionary<(string, int), long>();
        if (string.IsNullOrEmpty(json))
            return result;
        var nested = JsonSerializer.Deserialize<Dictionary<string, Dictionary<string, long>>>(json) ?? [];
        foreach (var (topic, partitions) in nested)
        {
            foreach (var (partition, offset) in partitions)
                result[(topic, int.Parse(partition, System.Globalization.CultureInfo.InvariantCulture))] = offset;
        }

        return result;
    }

    public void Dispose()
    {
        try
        {
            _consumer.Close();
        }
        catch (KafkaException e)
        {
            // Leaving the group is a courtesy; the broker times the member out anyway.
            _logger.ClientError("consumer", e.Error.Reason);
        }

        _consumer.Dispose();
    }
}
