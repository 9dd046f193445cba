using NpgsqlTypes;
using Replicator.Core.Changes;

namespace Replicator.Kafka.Debezium;

/// <summary>A source transaction rebuilt from Kafka, framed like Capture's stream, with the Kafka positions to resume from.</summary>
/// <param name="ResumeOffsets">
/// Per (topic, partition) the next offset to read so that nothing not yet emitted is skipped:
/// store these with the applied transaction (replicator.position.kafka_offsets) in the same target
/// transaction. Records of already-applied transactions may be read again after a restart; the
/// applier skips them by commit LSN (DESIGN invariant 2).
/// </param>
public sealed record OrderedTransaction(
    TransactionBegin Begin,
    IReadOnlyList<ChangeEvent> Changes,
    TransactionCommit Commit,
    IReadOnlyDictionary<(string Topic, int Partition), long> ResumeOffsets) : OrderedItem
{
    /// <summary>The framed stream: begin, changes, commit.</summary>
    public IEnumerable<ChangeEvent> Events => Changes.Prepend(Begin).Append(Commit);
}

/// <summary>What the Kafka consumer hands on, in order: whole transactions and heartbeats.</summary>
public abstract record OrderedItem;

/// <summary>
/// The source was idle at <c>Heartbeat.WalEnd</c>, and every transaction that committed before it has
/// been handed on before this item: the applier may treat the stream as having reached that LSN.
/// </summary>
public sealed record OrderedHeartbeat(Heartbeat Heartbeat) : OrderedItem;

/// <summary>
/// Rebuilds source commit order across topics from Debezium's transaction metadata.
/// <para>
/// Why it cannot reorder or lose: Kafka orders records only within a partition. The transaction
/// topic (one partition) holds END markers in commit order; a transaction is released only when
/// (a) its END is the oldest unreleased END and (b) as many of its change events have arrived as
/// END's per-collection counts promise for the collections consumed. Events are released sorted by
/// their <c>total_order</c>. So transactions leave in commit order and each leaves whole.
/// </para>
/// <para>
/// Repeats: Capture resumes from the slot after a restart and writes again what Kafka may already
/// hold, so a transaction can arrive twice (or its first copy cut short). Events of one transaction
/// merge by <c>total_order</c>; a transaction already handed on is remembered (key, commit LSN,
/// time) so that a later copy's events are dropped as they arrive and its END is dropped at once,
/// without waiting for events that were already handed on with the first copy. An END at or below
/// the position the applier resumed from (<see cref="StartFrom"/>) is dropped the same way: its
/// events may lie before the offsets reading started from.
/// </para>
/// <para>
/// Without transaction metadata (an event with no <c>transaction</c> block) every event is released
/// as a transaction of its own: order then holds only per key (per partition), not across
/// tables or keys — documented in docs/kafka.md. Snapshot reads (<c>op: r</c>, never in a
/// transaction) are released the same way, flagged, at their snapshot's position. Such an event
/// never overtakes an earlier record of its own partition that still waits for its transaction:
/// it waits behind it (parked) and is released right after that transaction, before the next one.
/// A Debezium incremental snapshot interleaves its reads with the stream, so a row's read can
/// follow, in the same partition, the insert of a transaction still waiting for its END; released
/// first, the read would put the row there and the insert would then fail on its key.
/// </para>
/// <para>
/// Memory: events wait here until their transaction's END is at the head; the wait is bounded by
/// <see cref="MaxBufferedEvents"/> (exceeding it is an error that names the stuck transaction,
/// usually a topic that is not consumed).
/// </para>
/// Not thread-safe: one consumer loop feeds it.
/// </summary>
public sealed class TransactionOrderer
{
    private readonly Func<string, bool> _consumesCollection;
    private readonly Dictionary<string, Pending> _pending = new(StringComparer.Ordinal);
    private readonly Queue<DecodedTransactionMarker> _ends = new();
    private readonly Dictionary<(string, int), PartitionState> _partitions = [];

    /// <summary>Every partition seen, in order of appearance; replaced, never changed, when one is added (snapshots share it).</summary>
    private PartitionState[] _partitionList = [];
    private readonly Dictionary<string, (NpgsqlLogSequenceNumber Commit, DateTimeOffset Time)> _handedOn = new(StringComparer.Ordinal);
    private readonly Queue<string> _handedOnOrder = new();
    private readonly Dictionary<(string, int), Queue<DecodedChange>> _parked = [];
    private NpgsqlLogSequenceNumber _lastCommitLsn;
    private NpgsqlLogSequenceNumber _appliedThrough;
    private int _buffered;

    /// <summary>How many handed-on transactions are remembered to recognise their repeats (a repeat arrives within the consumer's read-ahead).</summary>
    internal const int RememberedTransactions = 100_000;

    /// <param name="consumesCollection">Whether a data collection (<c>schema.table</c>) is consumed; END counts for others are not waited for. Null: all.</param>
    public TransactionOrderer(Func<string, bool>? consumesCollection = null, int maxBufferedEvents = 1_000_000)
    {
        _consumesCollection = consumesCollection ?? (_ => true);
        MaxBufferedEvents = maxBufferedEvents;
    }

    public int MaxBufferedEvents { get; }

    private readonly Queue<(Heartbeat Heartbeat, (string, int) Partition, long Through)> _heartbeats = new();

    /// <summary>
    /// The offsets reading starts from (those stored with the last applied transaction). Partitions
    /// not read again since keep them in <see cref="ResumeOffsets"/>, so storing the next position
    /// never forgets a partition (which would send it back to its beginning after another restart,
    /// to events whose END was consumed long ago). <paramref name="appliedThrough"/> is the target's
    /// position: an END with an exact commit LSN at or below it is dropped without waiting for its events.
    /// Positions made up for events without one (no transaction metadata, bare transaction ids) start
    /// above it: what follows the stored offsets is not applied yet, whatever LSN its events carry (a
    /// transaction that committed after the last applied one can hold lower change LSNs), and the
    /// applier skips anything at or below its position.
    /// </summary>
    public void StartFrom(IReadOnlyDictionary<(string Topic, int Partition), long> offsets, NpgsqlLogSequenceNumber appliedThrough = default)
    {
        foreach (var (tp, offset) in offsets)
            Advance(tp, offset - 1);
        _appliedThrough = appliedThrough;
        if (appliedThrough > _lastCommitLsn)
            _lastCommitLsn = appliedThrough;
    }

    /// <summary>
    /// A heartbeat to hand on once every record before offset <paramref name="through"/> of
    /// <paramref name="partition"/> (the transaction topic) is done with: its transactions
    /// released, nothing of them still held (see <see cref="TakeHeartbeat"/>).
    /// </summary>
    public void AddHeartbeat(Heartbeat heartbeat, (string Topic, int Partition) partition, long through) =>
        _heartbeats.Enqueue((heartbeat, partition, through));

    /// <summary>
    /// The newest pending heartbeat whose transactions have all been released (older ones are
    /// dropped: the newest says more); null when none is ready. Call after the transactions
    /// returned by <see cref="Add"/> have been handed on.
    /// </summary>
    public Heartbeat? TakeHeartbeat()
    {
        Heartbeat? ready = null;
        while (_heartbeats.Count > 0 && ResumeOffset(_heartbeats.Peek().Partition) >= _heartbeats.Peek().Through)
            ready = _heartbeats.Dequeue().Heartbeat;
        return ready;
    }

    /// <summary>Heartbeats waiting for their transactions.</summary>
    public int PendingHeartbeats => _heartbeats.Count;

    private long ResumeOffset((string, int) tp) =>
        _partitions.TryGetValue(tp, out var state) ? state.Resume : 0;

    /// <summary>Events waiting for their transaction to complete or reach the head.</summary>
    public int BufferedEvents => _buffered;

    /// <summary>Takes one decoded record; returns the transactions it completes, in commit order.</summary>
    public IReadOnlyList<OrderedTransaction> Add(DecodedRecord record)
    {
        var tp = (record.Position.Topic, record.Position.Partition);
        switch (record)
        {
            case DecodedChange change when change.TransactionKey is null:
                if (!_partitions.TryGetValue(tp, out var here) || here.Held is not { Count: > 0 })
                {
                    Consumed(tp, record.Position.Offset);
                    return [Single(change)];
                }

                // Earlier records of this partition wait for their transaction (or earlier parked
                // events do): this one waits behind them (ReleaseParked).
                Hold(tp, record.Position.Offset);
                if (!_parked.TryGetValue(tp, out var parked))
                    _parked[tp] = parked = new Queue<DecodedChange>();
                parked.Enqueue(change);
                CountBuffered();
                return [];
            case DecodedChange { TransactionKey: { } txKey } change
                when _handedOn.TryGetValue(txKey, out var done) && change.Lsn <= done.Commit:
                // Another copy of a transaction already handed on (or dropped as a replay): nothing to wait for.
                Consumed(tp, record.Position.Offset);
                break;
            case DecodedChange { TransactionKey: { } txKey } change:
                if (!_pending.TryGetValue(txKey, out var pending))
                    _pending[txKey] = pending = new Pending();
                pending.Positions.Add((Hold(tp, record.Position.Offset), record.Position.Offset));
                // A producer restart (Capture resumes from the slot) writes a transaction again:
                // the same event has the same total_order, so a repeat is not added.
                if (!pending.TryAdd(change))
                    break;
                CountBuffered();
                break;
            case DecodedTransactionMarker { IsEnd: true } end:
                _ends.Enqueue(end);
                Hold(tp, record.Position.Offset);
                break;
            default:
                // BEGIN markers, tombstones and heartbeat records (see AddHeartbeat) carry nothing to hold.
                Consumed(tp, record.Position.Offset);
                break;
        }

        var released = new List<OrderedTransaction>();
        while (_ends.Count > 0 && TryRelease(_ends.Peek(), out var transaction))
        {
            _ends.Dequeue();
            if (transaction is not null)
                released.Add(transaction);
            if (_parked.Count > 0)
                ReleaseParked(released);
        }

        return released;
    }

    private void CountBuffered()
    {
        if (++_buffered > MaxBufferedEvents)
        {
            var head = _ends.Count > 0 ? $"transaction {_ends.Peek().TransactionKey} (END at {_ends.Peek().Position})" : "no END received yet";
            throw new InvalidOperationException($"more than {MaxBufferedEvents} change events wait for their transaction to complete; waiting on {head}: check that every table topic named in END's data_collections is consumed");
        }
    }

    /// <summary>
    /// Hands on the parked events (no transaction of their own) that nothing earlier in their
    /// partition holds back any more, in partition order, right after the transaction that held them.
    /// </summary>
    private void ReleaseParked(List<OrderedTransaction> released)
    {
        List<(string, int)>? emptied = null;
        foreach (var (tp, parked) in _parked)
        {
            var held = _partitions[tp].Held!;
            while (parked.Count > 0 && held.Min == parked.Peek().Position.Offset)
            {
                var change = parked.Dequeue();
                Release(tp, change.Position.Offset);
                _buffered--;
                released.Add(Single(change));
            }

            if (parked.Count == 0)
                (emptied ??= []).Add(tp);
        }

        foreach (var tp in emptied ?? [])
            _parked.Remove(tp);
    }

    /// <returns>True when the head END is done with; <paramref name="transaction"/> is null when it was a replay and dropped.</returns>
    private bool TryRelease(DecodedTransactionMarker end, out OrderedTransaction? transaction)
    {
        transaction = null!;
        // Commit position: our producer's header; else Debezium 3.x's END id LSN (the commit's).
        // An exact position at or below the last released one (or the applier's) is a replay of a
        // transaction already handed on (the producer restarted behind its acknowledgements):
        // dropped at once, as the applier would skip it. Its events need not arrive: the first
        // copy may have taken them (same total_order), or they lie before where reading started.
        var exact = end.CommitLsn ?? end.IdLsn;
        if (exact is { } replayed ? replayed <= _lastCommitLsn || replayed <= _appliedThrough
            : _handedOn.TryGetValue(end.TransactionKey, out var before) && before.Time == end.Time)
        {
            Discharge(end);
            Remember(end.TransactionKey, exact ?? _handedOn[end.TransactionKey].Commit, end.Time);
            return true;
        }

        var expected = Expected(end);
        _pending.TryGetValue(end.TransactionKey, out var pending);
        var have = pending?.Events.Count ?? 0;
        if (have < expected)
            return false;
        if (have > expected)
            throw new InvalidOperationException($"transaction {end.TransactionKey}: {have} distinct change events arrived but its END at {end.Position} counts {expected}: records from another producer or a corrupted topic?");

        Discharge(end);
        var events = pending?.Events ?? [];

        // Without an exact position, the highest change LSN, forced to grow so the applier's
        // skip-at-or-below stays correct.
        var commitLsn = exact ?? (events.Count > 0 ? events.Max(e => e.Lsn) : _lastCommitLsn);
        if (exact is null && commitLsn <= _lastCommitLsn)
            commitLsn = new NpgsqlLogSequenceNumber((ulong)_lastCommitLsn + 1);
        var endLsn = end.EndLsn ?? commitLsn;
        _lastCommitLsn = commitLsn;
        Remember(end.TransactionKey, commitLsn, end.Time);
        var xid = events.Count > 0 ? events[0].Xid : uint.TryParse(end.TransactionKey, out var parsed) ? parsed : 0;

        var changes = new ChangeEvent[events.Count];
        for (var i = 0; i < changes.Length; i++)
            changes[i] = events[i].Change;
        changes = JoinKeyMoves(changes);
        transaction = new OrderedTransaction(
            new TransactionBegin(xid, commitLsn, end.Time),
            changes,
            new TransactionCommit(xid, commitLsn, endLsn, end.Time),
            ResumeOffsets());
        return true;
    }

    /// <summary>
    /// A key-changing update is written as a delete of the old key (and its tombstone) followed by a
    /// create of the new one; when the row has a TOASTed column the update left unchanged, the create
    /// carries Debezium's placeholder instead of its value, which neither record holds. Such a pair
    /// becomes the update it was, so the applier moves the row in place and the target keeps the value.
    /// </summary>
    internal static ChangeEvent[] JoinKeyMoves(ChangeEvent[] changes)
    {
        List<ChangeEvent>? joined = null; // made only when a pair is found: most transactions have none
        for (var i = 0; i < changes.Length; i++)
        {
            if (i + 1 < changes.Length && changes[i] is RowChange { Kind: ChangeKind.Delete } delete
                && changes[i + 1] is RowChange { Kind: ChangeKind.Insert } insert && insert.Relation == delete.Relation && ColumnValue.AnyUnchangedToast(insert.New!))
            {
                joined ??= [.. changes.AsSpan(0, i)];
                joined.Add(new RowChange(insert.Relation, ChangeKind.Update, insert.Lsn, delete.Old, delete.OldIsKeyOnly, insert.New));
                i++;
                continue;
            }

            joined?.Add(changes[i]);
        }

        return joined is null ? changes : [.. joined];
    }

    private OrderedTransaction Single(DecodedChange change)
    {
        NpgsqlLogSequenceNumber lsn;
        if (change.SnapshotRead)
        {
            // Every row of a snapshot carries the snapshot's position: made-up growing positions
            // (one per row) would pass the first streamed commits, which would then be dropped as
            // replays here and skipped as applied by the applier.
            lsn = change.Lsn;
        }
        else
        {
            lsn = change.Lsn > _lastCommitLsn ? change.Lsn : new NpgsqlLogSequenceNumber((ulong)_lastCommitLsn + 1);
            _lastCommitLsn = lsn;
        }

        return new OrderedTransaction(
            new TransactionBegin(change.Xid, lsn, change.SourceTime) { SnapshotRead = change.SnapshotRead },
            [change.Change],
            new TransactionCommit(change.Xid, lsn, lsn, change.SourceTime),
            ResumeOffsets());
    }

    /// <summary>
    /// Done with <paramref name="end"/>'s transaction (released or dropped): its events leave the
    /// buffer, and their offsets and the END's no longer hold the resume offsets back.
    /// </summary>
    private void Discharge(DecodedTransactionMarker end)
    {
        if (_pending.Remove(end.TransactionKey, out var pending))
        {
            _buffered -= pending.Events.Count;
            foreach (var (partition, offset) in pending.Positions)
                partition.Held!.Remove(offset);
        }

        Release((end.Position.Topic, end.Position.Partition), end.Position.Offset);
    }

    /// <summary>The data collection under which Debezium's END counts logical decoding messages.</summary>
    internal const string LogicalDecodingMessages = "LOGICAL_DECODING_MESSAGE";

    /// <summary>How many change events an END promises for the collections consumed.</summary>
    private long Expected(DecodedTransactionMarker end)
    {
        // Asked again for every record while a transaction waits at the head: computed once per END.
        if (ReferenceEquals(end, _expectedFor))
            return _expected;
        _expectedFor = end;
        return _expected = CountExpected(end);
    }

    private DecodedTransactionMarker? _expectedFor;
    private long _expected;

    private long CountExpected(DecodedTransactionMarker end)
    {
        if (end.DataCollections is null)
            return end.EventCount ?? 0;
        long expected = 0;
        foreach (var (collection, count) in end.DataCollections)
        {
            // Debezium counts a transaction's logical decoding messages (pg_logical_emit_message,
            // op m, on their own topic) under this name: nothing to apply, never waited for.
            if (_consumesCollection(collection) && collection != LogicalDecodingMessages)
                expected += count;
        }

        return expected;
    }

    /// <summary>
    /// The oldest unreleased END, which every later transaction waits behind, with how many of the
    /// change events it counts have arrived; null when no END waits.
    /// </summary>
    public (DecodedTransactionMarker End, long Have, long Expected)? Head
    {
        get
        {
            if (_ends.Count == 0)
                return null;
            var end = _ends.Peek();
            return (end, _pending.TryGetValue(end.TransactionKey, out var pending) ? pending.Events.Count : 0, Expected(end));
        }
    }

    /// <summary>Notes a transaction handed on (or dropped as a replay) so that its repeats are recognised; the oldest are forgotten.</summary>
    private void Remember(string key, NpgsqlLogSequenceNumber commit, DateTimeOffset time)
    {
        if (_handedOn.TryAdd(key, (commit, time)))
        {
            _handedOnOrder.Enqueue(key);
            if (_handedOnOrder.Count > RememberedTransactions)
                _handedOn.Remove(_handedOnOrder.Dequeue());
        }
        else if (commit > _handedOn[key].Commit)
        {
            _handedOn[key] = (commit, time); // the same xid again after wraparound: the newer one counts
        }
    }

    private PartitionState Hold((string, int) tp, long offset)
    {
        var state = Advance(tp, offset);
        (state.Held ??= []).Add(offset);
        return state;
    }

    private void Release((string, int) tp, long offset) => _partitions[tp].Held!.Remove(offset);

    private void Consumed((string, int) tp, long offset) => Advance(tp, offset);

    private PartitionState Advance((string, int) tp, long offset)
    {
        if (!_partitions.TryGetValue(tp, out var state))
        {
            _partitions[tp] = state = new PartitionState(tp) { Next = offset + 1 };
            _partitionList = [.. _partitionList, state];
        }
        else if (offset + 1 > state.Next)
        {
            state.Next = offset + 1;
        }

        return state;
    }

    /// <summary>What the orderer knows of one partition.</summary>
    private sealed class PartitionState((string Topic, int Partition) key)
    {
        public (string Topic, int Partition) Key { get; } = key;

        /// <summary>One past the newest offset seen.</summary>
        public long Next;

        /// <summary>Offsets of records still waiting for their transaction (or behind one that waits).</summary>
        public SortedSet<long>? Held;

        /// <summary>The oldest record still held, else one past the newest seen.</summary>
        public long Resume => Held is { Count: > 0 } held ? held.Min : Next;
    }

    private sealed class Pending
    {
        /// <summary>The transaction's change events, ascending by total_order, each total_order once.</summary>
        public List<DecodedChange> Events { get; } = [];

        /// <summary>Where they were read (repeats included): released together with the transaction.</summary>
        public List<(PartitionState Partition, long Offset)> Positions { get; } = [];

        /// <summary>Adds <paramref name="change"/> in total_order; false for a repeat of one already here.</summary>
        public bool TryAdd(DecodedChange change)
        {
            // A transaction's events come from several partitions, so not always in order: a short
            // sorted list (a binary search for the rest), no tree nodes per event.
            var order = change.TotalOrder;
            if (Events.Count == 0 || Events[^1].TotalOrder < order)
            {
                Events.Add(change);
                return true;
            }

            int lo = 0, hi = Events.Count - 1;
            while (lo <= hi)
            {
                var mid = (lo + hi) >>> 1;
                var at = Events[mid].TotalOrder;
                if (at == order)
                    return false;
                if (at < order)
                    lo = mid + 1;
                else
                    hi = mid - 1;
            }

            Events.Insert(lo, change);
            return true;
        }
    }

    /// <summary>
    /// Per partition: the oldest record still held, else one past the newest seen. A snapshot, taken
    /// for every transaction handed on and kept until the target has it: an array of offsets over
    /// the shared partition list, not a dictionary of its own (that was a tenth of the consumer
    /// loop's time with 24 partitions, and most of what the hand-over kept alive).
    /// </summary>
    public IReadOnlyDictionary<(string Topic, int Partition), long> ResumeOffsets()
    {
        var partitions = _partitionList;
        var offsets = new long[partitions.Length];
        for (var i = 0; i < partitions.Length; i++)
            offsets[i] = partitions[i].Resume;
        return new OffsetSnapshot(partitions, offsets);
    }

    /// <summary>Resume offsets as of one moment: read-only, looked up by a scan (a dictionary is built for many partitions).</summary>
    private sealed class OffsetSnapshot(PartitionState[] partitions, long[] offsets) : IReadOnlyDictionary<(string Topic, int Partition), long>
    {
        private Dictionary<(string, int), long>? _index;

        public long this[(string Topic, int Partition) key] => TryGetValue(key, out var offset) ? offset : throw new KeyNotFoundException($"no offset for {key.Topic}[{key.Partition}]");

        public IEnumerable<(string Topic, int Partition)> Keys => partitions.Select(p => p.Key);

        public IEnumerable<long> Values => offsets;

        public int Count => offsets.Length;

        public bool ContainsKey((string Topic, int Partition) key) => TryGetValue(key, out _);

        public bool TryGetValue((string Topic, int Partition) key, out long value)
        {
            if (offsets.Length > 16)
            {
                _index ??= partitions.Select((p, i) => (p.Key, i)).ToDictionary(e => e.Key, e => offsets[e.i]);
                return _index.TryGetValue(key, out value);
            }

            for (var i = 0; i < partitions.Length; i++)
            {
                if (partitions[i].Key.Partition == key.Partition && string.Equals(partitions[i].Key.Topic, key.Topic, StringComparison.Ordinal))
                {
                    value = offsets[i];
                    return true;
                }
            }

            value = 0;
            return false;
        }

        public IEnumerator<KeyValuePair<(string Topic, int Partition), long>> GetEnumerator()
        {
            for (var i = 0; i < partitions.Length; i++)
                yield return new(partitions[i].Key, offsets[i]);
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
