using System.Runtime.CompilerServices;
using System.Text.Json;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Changes;
using Replicator.Core.Metrics;
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
/// The applier's side of the Kafka buffer: a consumer (read_committed; it commits only offsets the
/// applier stored) over the table topics and the transaction topic, feeding records through the
/// <see cref="DebeziumDeserializer"/> and the <see cref="TransactionOrderer"/>, yielding whole source
/// transactions in commit order together with the offsets to resume from. The applier stores those
/// offsets in <c>replicator.position.kafka_offsets</c> in the same target transaction as the changes
/// (DESIGN invariant 2) and passes them back as <c>startOffsets</c> after a restart; offsets
/// committed to Kafka under the group id (<see cref="CommitAdvisory"/>, once the target has the
/// changes) only serve monitoring.
/// <para>
/// Commit order needs every partition in one orderer, so the consumer assigns itself every
/// partition of the prefix's topics instead of joining a group: a group member would wait for the
/// broker's first rebalance (<c>group.initial.rebalance.delay.ms</c>, 3 s by default) at every
/// start and for another whenever a topic appeared mid-run, and a second member would take
/// partitions away and stall the orderer. Topics that appear later (a table's first change) are
/// found by a metadata look every second and assigned from their beginning. That one applier
/// applies a slot is the applier's target lock (<c>TargetState.LockApplierAsync</c>).
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
    private readonly IConsumer<byte[]?, ConsumedValue?> _consumer;
    private IReadOnlyDictionary<(string Topic, int Partition), long> _startOffsets = new Dictionary<(string, int), long>();

    public KafkaChangeSource(KafkaSourceOptions options, DebeziumDeserializer deserializer, TransactionOrderer? orderer = null, ILogger? logger = null)
    {
        _options = options;
        _deserializer = deserializer;
        _orderer = orderer ?? new TransactionOrderer();
        _logger = logger ?? NullLogger.Instance;
        _consumer = KafkaClientSecurity.Build(() => new ConsumerBuilder<byte[]?, ConsumedValue?>(ConsumerConfigFor(options))
            .SetErrorHandler((_, e) => _logger.ClientError("consumer", e.Reason))
            // Values are read from the client's buffer: a record whose schema text its topic had
            // before is kept as its payload only (DebeziumDeserializer.Take).
            .SetValueDeserializer(new TakeValue(deserializer))
            .Build());
    }

    public static ConsumerConfig ConsumerConfigFor(KafkaSourceOptions options)
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = options.BootstrapServers,
            // Only for the advisory offsets committed to Kafka: partitions are assigned, not balanced.
            GroupId = options.GroupId,
            ClientId = "replicator-apply",
            IsolationLevel = IsolationLevel.ReadCommitted,
            // Kafka's committed offsets are advisory (monitoring): only what CommitAdvisory stored,
            // once the target has it, is committed, in the background and at close.
            EnableAutoCommit = true,
            AutoCommitIntervalMs = 5000,
            EnableAutoOffsetStore = false,
            // A position Kafka no longer holds (records deleted by retention before they were applied)
            // is an error, never a silent jump to whatever is oldest: that would skip transactions.
            // Partitions without a stored position start at their beginning explicitly (AssignNew).
            AutoOffsetReset = AutoOffsetReset.Error,
            // Topic and headers are read; the timestamp is not (one marshalled field less per record).
            ConsumeResultFields = "topic,headers",
            // A broker holds a fetch that finds nothing new for up to this long. Kafka answers as soon
            // as data arrives, so this only sets how often an idle applier asks (10 times a second per
            // broker); librdkafka's mock cluster (dev-kafka) always waits it out, and with the default
            // 500 ms a caught-up applier stalled for a third of a catch-up (measured: 2.0-2.8 s of
            // empty-queue waits in 11-12 s; 0.5-0.6 s with 100 ms).
            FetchWaitMaxMs = 100,
            // Up to 8 MB per partition per fetch instead of librdkafka's 1 MB: a catch-up reads large
            // records (a pgbench event is 3.6 KB with its schema) from a few hot partitions, and the
            // consumer loop waited on an empty queue for 1.2-2 s of a 6 s catch-up. Six alternating
            // pairs of trials on two backlogs: faster in five (5 % on average), equal in one.
            // Prefetched records stay bounded by queued.max.messages.kbytes (64 MB).
            MaxPartitionFetchBytes = 8 << 20,
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

    /// <summary>
    /// What the target has applied (its <c>replicator.position.commit_lsn</c>); the default, 0/0, means
    /// nothing. Used to tell whether records that retention deleted from a partition before this applier
    /// first read it were needed (see <see cref="CheckRetention"/>).
    /// </summary>
    public NpgsqlTypes.NpgsqlLogSequenceNumber AppliedThrough { get; set; }

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
        _orderer.StartFrom(_startOffsets, AppliedThrough);
        // Nothing to read until Capture (or a connector) has created a topic of the prefix: looked
        // for soon (a capture started with this applier creates them within milliseconds), then less often.
        for (var wait = 50; ; wait = Math.Min(wait * 2, TopicLookupIntervalMs))
        {
            if (AssignNew(await MetadataAsync(cancellationToken).ConfigureAwait(false)) != 0)
                break;
            await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
        }
        Task<Metadata?>? lookup = null;
        var nextLookup = Environment.TickCount64 + StartLookupIntervalMs;
        var transactionPartition = new TopicPartition(TransactionTopic, new Partition(0));
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                WatchHead();
                // New topics (a table's first change): looked for off this thread, assigned here.
                if (lookup is null && Environment.TickCount64 >= nextLookup)
                    lookup = MetadataAsync(cancellationToken);
                if (lookup is { IsCompleted: true })
                {
                    AssignNew(await lookup.ConfigureAwait(false));
                    lookup = null;
                    // Until the transaction topic is there (Capture's first transaction creates it with
                    // its table topics), look more often: the whole stream waits for it.
                    nextLookup = Environment.TickCount64 + (WaitingForTransactions ? StartLookupIntervalMs : TopicLookupIntervalMs);
                }

                // Take what is already fetched without blocking; only an empty queue waits (off the
                // caller's thread, with a short timeout so cancellation stays prompt).
                ConsumeResult<byte[]?, ConsumedValue?>? result;
                try
                {
                    result = _consumer.Consume(TimeSpan.Zero);
                    if (result is null)
                    {
                        // Short waits while the transaction topic is awaited, so a finished look-up is acted on at once.
                        var wait = TimeSpan.FromMilliseconds(WaitingForTransactions ? StartLookupIntervalMs : 200);
                        result = await Task.Run(() => _consumer.Consume(wait), cancellationToken).ConfigureAwait(false);
                    }
                }
                catch (ConsumeException e) when (!e.Error.IsFatal && e.Error.Code == ErrorCode.UnknownTopicOrPart)
                {
                    // An assigned topic was deleted, or this broker does not know it yet: look again shortly.
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
                if (_fromBeginning.Count > 0 && _fromBeginning.Remove((position.Topic, position.Partition)) && position.Offset > 0)
                {
                    // The first record of a partition read from its beginning is not at offset 0: were records deleted?
                    var low = await LowWatermarkAsync(result.TopicPartition, cancellationToken).ConfigureAwait(false);
                    if (low > 0)
                        _truncated[(position.Topic, position.Partition)] = low;
                }
                List<KeyValuePair<string, byte[]>>? headers = null;
                if (result.Message.Headers is { Count: > 0 } messageHeaders)
                {
                    headers = new List<KeyValuePair<string, byte[]>>(messageHeaders.Count);
                    foreach (var header in messageHeaders)
                        headers.Add(new(header.Key, header.GetValueBytes()));
                }
                var decoded = _deserializer.Decode(position, result.Message.Key, result.Message.Value, headers);
                if (_truncated.Count > 0)
                    CheckRetention(decoded);
                foreach (var transaction in _orderer.Add(decoded))
                {
                    HandedOn(transaction);
                    yield return transaction;
                }
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
        finally
        {
            // A lookup uses the consumer's handle: none may outlive this method.
            if (lookup is not null)
                await ((Task)lookup).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private const int TopicLookupIntervalMs = 1000;

    /// <summary>
    /// How often topics are looked for while the transaction topic is not assigned yet. A start
    /// often finds only the heartbeat topic (Capture creates it at once); its first transaction
    /// creates the others moments later, and nothing can be applied until they are assigned. With
    /// 200 ms (and a 200 ms wait for records in between) a catch-up applied its first transaction
    /// 1.3-1.7 s after start; with 50 ms, 0.8-1.2 s (nine trials, sampled every 0.25 s).
    /// </summary>
    private const int StartLookupIntervalMs = 50;

    private bool WaitingForTransactions => !_assigned.Contains((TransactionTopic, 0));

    /// <summary>
    /// How long the transaction at the head of commit order may go without a new change event before
    /// a warning names it (a stuck head holds up everything after it, silently otherwise).
    /// </summary>
    public TimeSpan StallWarningAfter { get; init; } = TimeSpan.FromSeconds(60);

    private (KafkaPosition End, long Have, long Since, bool Warned) _head;
    private long _nextHeadCheck;

    /// <summary>Warns once about a head transaction that has made no progress for <see cref="StallWarningAfter"/> (checked every second).</summary>
    private void WatchHead()
    {
        var now = Environment.TickCount64;
        if (now < _nextHeadCheck)
            return;
        _nextHeadCheck = now + Math.Min(1000, (long)StallWarningAfter.TotalMilliseconds);
        var waiting = _orderer.Head;
        ReplicatorMetrics.OrdererWaitingSince(waiting?.End.Time);
        if (waiting is not { } head)
        {
            _head = default;
            return;
        }

        if (head.End.Position != _head.End || head.Have != _head.Have)
        {
            _head = (head.End.Position, head.Have, now, false);
            return;
        }

        if (!_head.Warned && now - _head.Since >= (long)StallWarningAfter.TotalMilliseconds)
        {
            _head.Warned = true;
            var collections = head.End.DataCollections is { } counts
                ? string.Join(", ", counts.Select(c => $"{c.Key}: {c.Value}"))
                : $"{head.End.EventCount ?? 0} in all";
            _logger.HeadStalled(head.End.TransactionKey, head.End.Position.ToString(), (now - _head.Since) / 1000, head.Have, head.Expected, collections, _orderer.BufferedEvents);
        }
    }

    private readonly HashSet<(string Topic, int Partition)> _assigned = [];

    /// <summary>
    /// Assigns the partitions of the prefix's topics (and of its heartbeat topic) not assigned yet:
    /// from the position stored with the last applied transaction, else from their beginning
    /// (Debezium topics are the full history since the snapshot). Returns how many are assigned in all.
    /// </summary>
    private int AssignNew(Metadata? metadata)
    {
        if (metadata is null)
            return _assigned.Count;
        var tablePrefix = _options.TopicPrefix + ".";
        var resume = _orderer.ResumeOffsets();
        var added = new List<TopicPartitionOffset>();
        foreach (var topic in metadata.Topics)
        {
            if (topic.Error.Code != ErrorCode.NoError || !(topic.Topic.StartsWith(tablePrefix, StringComparison.Ordinal) || topic.Topic == HeartbeatTopic))
                continue;
            foreach (var partition in topic.Partitions)
            {
                if (!_assigned.Add((topic.Topic, partition.PartitionId)))
                    continue;
                if (resume.TryGetValue((topic.Topic, partition.PartitionId), out var offset))
                {
                    added.Add(new TopicPartitionOffset(topic.Topic, new Partition(partition.PartitionId), new Offset(offset)));
                }
                else
                {
                    added.Add(new TopicPartitionOffset(topic.Topic, new Partition(partition.PartitionId), Offset.Beginning));
                    if (topic.Topic != HeartbeatTopic)
                        _fromBeginning.Add((topic.Topic, partition.PartitionId));
                }
            }
        }

        if (added.Count > 0)
        {
            // Before assigning: the start offset look-up needs the leaders (else 1.5 s to the first record, measured).
            TopicWarmUp.Warm(_consumer.Handle, added.Select(p => p.Topic).Distinct(), _logger, "consumer");
            _consumer.IncrementalAssign(added);
            _logger.PartitionsAssigned(string.Join(", ", added.Select(p => $"{p.Topic}[{p.Partition.Value}]@{p.Offset}")));
        }

        return _assigned.Count;
    }

    /// <summary>The cluster's topics; null (logged) when the broker did not answer in time: the next look follows.</summary>
    /// <remarks>
    /// The looks use an admin client of their own, not one over the consumer's handle: Confluent.Kafka
    /// 1.9.3 gives a dependent admin client a poll timeout of 0, so its thread spins for as long as
    /// it lives (half a core for a long-lived one; about 0.8 s of CPU in a catch-up with one per
    /// look, both measured). A client built from configuration polls with a 100 ms timeout.
    /// </remarks>
    private async Task<Metadata?> MetadataAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await Task.Run(Metadata? () =>
            {
                lock (_adminLock)
                {
                    if (_closed)
                        return null;
                    _admin ??= new AdminClientBuilder(AdminConfigFor(_options))
                        .SetErrorHandler((_, e) => _logger.ClientError("metadata", e.Reason))
                        .Build();
                    return _admin.GetMetadata(TimeSpan.FromSeconds(5));
                }
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (KafkaException e)
        {
            _logger.ClientError("consumer", e.Error.Reason);
            return null;
        }
    }

    private readonly Lock _adminLock = new();
    private IAdminClient? _admin;

    /// <summary>The metadata client's settings: the consumer's connection (and security), nothing of a consumer's own.</summary>
    public static AdminClientConfig AdminConfigFor(KafkaSourceOptions options)
    {
        var config = new AdminClientConfig { BootstrapServers = options.BootstrapServers, ClientId = "replicator-apply-metadata" };
        KafkaClientSecurity.Apply(config, options.SaslUsername, options.SaslPassword,
            options.Extra?.Where(p => !p.Key.StartsWith("dotnet.", StringComparison.Ordinal)).ToDictionary());
        return config;
    }

    /// <summary>Partitions read from their beginning whose first record has not come yet.</summary>
    private readonly HashSet<(string Topic, int Partition)> _fromBeginning = [];

    /// <summary>Partitions read from their beginning whose first records retention had deleted: the log start offset.</summary>
    private readonly Dictionary<(string Topic, int Partition), long> _truncated = [];

    /// <summary>
    /// A partition this applier has never read (no stored position) starts at its beginning; when
    /// retention had deleted records there, they were never applied. That loses nothing only if
    /// every deleted record belongs to a transaction the target already has. A partition holds its
    /// records in commit order, so the deleted ones belong to transactions that committed no later
    /// than the oldest record left; when that record's source LSN (a change's, or an END's commit
    /// LSN) is at or below <see cref="AppliedThrough"/>, they were applied. Otherwise, or when the
    /// record carries no LSN, the stream stops before anything of that partition is handed on.
    /// Records without data (BEGIN, tombstones) defer the decision to the partition's next record.
    /// (A transaction that started before the target's position and committed after it has its
    /// change LSNs below it: a deleted change of that partition is then missed here, but its END on
    /// the transaction topic counts it and the transaction is never released incomplete.)
    /// </summary>
    private void CheckRetention(DecodedRecord decoded)
    {
        var tp = (decoded.Position.Topic, decoded.Position.Partition);
        if (!_truncated.TryGetValue(tp, out var low))
            return;
        NpgsqlTypes.NpgsqlLogSequenceNumber? lsn;
        switch (decoded)
        {
            case DecodedChange change:
                lsn = change.Lsn == default ? null : change.Lsn;
                break;
            case DecodedTransactionMarker { IsEnd: true } end:
                lsn = end.CommitLsn ?? end.IdLsn;
                break;
            default:
                return;
        }

        if (lsn is { } at && at <= AppliedThrough)
        {
            _truncated.Remove(tp);
            return;
        }

        throw new Replicator.Core.Errors.ReplicationException(Replicator.Core.Errors.ReplicationErrorKind.Permanent,
            $"Kafka had deleted records {decoded.Position.Topic}[{decoded.Position.Partition}] offsets 0 to {low - 1} (retention) before this applier first read that partition, "
            + $"and the oldest record left (offset {decoded.Position.Offset}, source LSN {lsn?.ToString() ?? "unknown"}) is newer than what the target has applied ({AppliedThrough}): "
            + "the deleted records may hold changes the target does not have, so nothing from this partition is applied. "
            + "Give the topics a retention longer than the time between capture and apply (retention.ms, retention.bytes; the development broker keeps only 5 MB per partition, "
            + "so with it run capture and apply together, 'replicator run --buffer kafka', or keep 'replicator apply' running while capture does), "
            + "then start over with a new snapshot (a new --slot and an empty target) and a new --topic-prefix.");
    }

    /// <summary>The partition's log start offset (a broker that does not answer fails the stream like any consumer error: the pipeline retries).</summary>
    private async Task<long> LowWatermarkAsync(TopicPartition partition, CancellationToken cancellationToken)
    {
        var offsets = await Task.Run(() => _consumer.QueryWatermarkOffsets(partition, TimeSpan.FromSeconds(10)), cancellationToken).ConfigureAwait(false);
        return Math.Max(0, offsets.Low.Value);
    }

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

    /// <summary>Transactions handed on and not yet reported applied: commit LSN and the offsets to resume after it.</summary>
    private readonly System.Collections.Concurrent.ConcurrentQueue<(NpgsqlTypes.NpgsqlLogSequenceNumber CommitLsn, IReadOnlyDictionary<(string Topic, int Partition), long> Offsets)> _handedOn = new();

    private volatile bool _closed;

    /// <summary>
    /// The applier has made everything up to <paramref name="commitLsn"/> durable on the target: the
    /// offsets to resume after it are stored for the group's next automatic commit (every 5 s, and
    /// at close). Advisory, for lag monitoring with Kafka's tools (<c>kafka-consumer-groups
    /// --describe --group replicator-apply-&lt;slot&gt;</c>); what a restart resumes from is the
    /// target's <c>replicator.position.kafka_offsets</c>. Safe from any thread, also after the
    /// consumer has closed (then it does nothing).
    /// </summary>
    public void CommitAdvisory(NpgsqlTypes.NpgsqlLogSequenceNumber commitLsn)
    {
        IReadOnlyDictionary<(string Topic, int Partition), long>? offsets = null;
        while (_handedOn.TryPeek(out var head) && head.CommitLsn <= commitLsn && _handedOn.TryDequeue(out head))
            offsets = head.Offsets;
        if (offsets is null || _closed)
            return;
        foreach (var ((topic, partition), offset) in offsets)
        {
            try
            {
                _consumer.StoreOffset(new TopicPartitionOffset(topic, new Partition(partition), new Offset(offset)));
            }
            catch (Exception e) when (e is KafkaException or ObjectDisposedException or InvalidOperationException)
            {
                // Advisory only: a partition not assigned (its topic is gone), or the consumer closing meanwhile.
                if (!_advisoryFailureLogged)
                    _logger.ClientError("consumer", $"advisory offset for {topic}[{partition}] not stored (further such failures are not logged): {e.Message}");
                _advisoryFailureLogged = true;
            }
        }
    }

    private bool _advisoryFailureLogged;

    private void HandedOn(OrderedTransaction transaction)
    {
        _handedOn.Enqueue((transaction.Commit.CommitLsn, transaction.ResumeOffsets));
        // Bounded even when no applier reports back (a reader that only reads): the oldest go.
        while (_handedOn.Count > 100_000)
            _handedOn.TryDequeue(out _);
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
        var nested = JsonSerializer.Deserialize(json, Core.CoreJson.Default.DictionaryStringDictionaryStringInt64) ?? [];
        foreach (var (topic, partitions) in nested)
        {
            foreach (var (partition, offset) in partitions)
                result[(topic, int.Parse(partition, System.Globalization.CultureInfo.InvariantCulture))] = offset;
        }

        return result;
    }

    public void Dispose()
    {
        _closed = true;
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
        lock (_adminLock)
            _admin?.Dispose();
    }
}

/// <summary>Confluent's value deserializer over <see cref="DebeziumDeserializer.Take"/>; called on the thread that consumes, one record at a time.</summary>
file sealed class TakeValue(DebeziumDeserializer deserializer) : IDeserializer<ConsumedValue?>
{
    public ConsumedValue? Deserialize(ReadOnlySpan<byte> data, bool isNull, SerializationContext context) =>
        isNull ? null : deserializer.Take(context.Topic, data);
}
