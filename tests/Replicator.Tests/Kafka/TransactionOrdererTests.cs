using NpgsqlTypes;
using Replicator.Core.Changes;
using Replicator.Kafka.Debezium;
using static Replicator.Tests.Kafka.DebeziumTestData;

namespace Replicator.Tests.Kafka;

public class TransactionOrdererTests
{
    private static readonly StreamRelation Orders = Customers with { RelationId = 2, Name = "orders" };

    private static DecodedChange Change(string topic, int partition, long offset, string txKey, long totalOrder, ulong lsn, string id, StreamRelation? relation = null) =>
        new(new KafkaPosition(topic, partition, offset), Insert(relation ?? Customers, lsn, id, "x"), uint.Parse(txKey), txKey, totalOrder, new NpgsqlLogSequenceNumber(lsn), CommitTime);

    private static DecodedTransactionMarker End(long offset, string txKey, ulong idLsn, params (string Collection, long Count)[] counts) =>
        new(new KafkaPosition("p.transaction", 0, offset), true, txKey, counts.Sum(c => c.Count), counts.ToDictionary(c => c.Collection, c => c.Count), CommitTime,
            new NpgsqlLogSequenceNumber(idLsn), null, null);

    private static string Ids(OrderedTransaction t) => string.Join(",", t.Changes.Cast<RowChange>().Select(c => c.New![0].Text));

    [Fact]
    public void Transactions_are_released_in_END_order_with_events_sorted_by_total_order_whatever_the_arrival_order()
    {
        var orderer = new TransactionOrderer();
        var released = new List<OrderedTransaction>();
        // Transaction 10 (committed first) touches both tables; 11 touches customers only. Arrival is scrambled
        // across partitions; 11's events arrive before 10's, and END markers arrive before some events.
        released.AddRange(orderer.Add(Change("p.public.customers", 1, 0, "11", 1, 300, "c")));
        released.AddRange(orderer.Add(End(0, "10", 250, ("public.customers", 1), ("public.orders", 1))));
        released.AddRange(orderer.Add(End(1, "11", 350, ("public.customers", 1))));
        Assert.Empty(released);
        released.AddRange(orderer.Add(Change("p.public.orders", 0, 0, "10", 2, 200, "b", Orders)));
        Assert.Empty(released);
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 0, "10", 1, 100, "a")));

        Assert.Equal(2, released.Count);
        Assert.Equal("a,b", Ids(released[0]));
        Assert.Equal("c", Ids(released[1]));
        Assert.Equal(250UL, (ulong)released[0].Commit.CommitLsn);
        Assert.Equal(350UL, (ulong)released[1].Commit.CommitLsn);
        Assert.Equal(10u, released[0].Begin.Xid);
        Assert.Equal([typeof(TransactionBegin), typeof(RowChange), typeof(RowChange), typeof(TransactionCommit)], released[0].Events.Select(e => e.GetType()));
        Assert.Equal(0, orderer.BufferedEvents);
    }

    [Fact]
    public void A_transaction_waits_until_every_event_its_END_counts_has_arrived()
    {
        var orderer = new TransactionOrderer();
        Assert.Empty(orderer.Add(End(0, "7", 90, ("public.customers", 2))));
        Assert.Empty(orderer.Add(Change("p.public.customers", 0, 0, "7", 2, 80, "b")));
        var released = Assert.Single(orderer.Add(Change("p.public.customers", 0, 1, "7", 1, 70, "a")));
        Assert.Equal("a,b", Ids(released));
    }

    [Fact]
    public void The_head_says_which_END_everything_waits_behind_and_how_many_of_its_events_have_arrived()
    {
        var orderer = new TransactionOrderer(c => c != "public.audit");
        Assert.Null(orderer.Head);
        orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 70, "a"));
        Assert.Null(orderer.Head); // events alone: nothing waits at the head yet
        orderer.Add(End(0, "7", 90, ("public.customers", 2), ("public.orders", 1), ("public.audit", 4)));
        orderer.Add(End(1, "8", 190, ("public.customers", 1)));
        var head = orderer.Head!.Value;
        Assert.Equal(("7", 1L, 3L), (head.End.TransactionKey, head.Have, head.Expected));
        orderer.Add(Change("p.public.customers", 0, 1, "7", 2, 71, "b"));
        orderer.Add(Change("p.public.orders", 0, 0, "7", 3, 72, "c", Orders));
        Assert.Equal(("8", 0L, 1L), (orderer.Head!.Value.End.TransactionKey, orderer.Head!.Value.Have, orderer.Head!.Value.Expected));
    }

    [Fact]
    public void Counts_of_collections_that_are_not_consumed_are_not_waited_for()
    {
        var orderer = new TransactionOrderer(c => c == "public.customers");
        Assert.Empty(orderer.Add(End(0, "7", 90, ("public.customers", 1), ("public.audit", 5))));
        Assert.Single(orderer.Add(Change("p.public.customers", 0, 0, "7", 3, 70, "a")));
    }

    [Fact]
    public void Without_transaction_metadata_each_event_is_released_at_once_in_arrival_order()
    {
        var orderer = new TransactionOrderer();
        var single = new DecodedChange(new KafkaPosition("p.public.customers", 0, 5), Insert(Customers, 70, "a", "x"), 3, null, 0, new NpgsqlLogSequenceNumber(70), CommitTime);
        var released = Assert.Single(orderer.Add(single));
        Assert.Equal("a", Ids(released));
        Assert.Equal(6, released.ResumeOffsets[("p.public.customers", 0)]);
    }

    [Fact]
    public void Snapshot_reads_share_their_snapshot_position_and_never_push_later_commits_aside()
    {
        // A Debezium connector's initial snapshot: op r records without a transaction block, all at the
        // snapshot's LSN (1000), then the first streamed transaction, committed just after (1040).
        var orderer = new TransactionOrderer();
        var reads = Enumerable.Range(0, 100).SelectMany(i => orderer.Add(new DecodedChange(new KafkaPosition("p.public.customers", 0, i),
            Insert(Customers, 1000, "r" + i, "x"), 0, null, 0, new NpgsqlLogSequenceNumber(1000), CommitTime, SnapshotRead: true))).ToList();
        Assert.Equal(100, reads.Count);
        Assert.All(reads, r => Assert.True(r.Begin.SnapshotRead));
        Assert.All(reads, r => Assert.Equal(1000UL, (ulong)r.Commit.CommitLsn)); // not made up positions 1000, 1001, … 1099
        Assert.Equal(100, reads[^1].ResumeOffsets[("p.public.customers", 0)]);

        orderer.Add(End(0, "7", 1040, ("public.customers", 1)));
        var streamed = Assert.Single(orderer.Add(Change("p.public.customers", 0, 100, "7", 1, 1030, "s")));
        Assert.False(streamed.Begin.SnapshotRead);
        Assert.Equal(1040UL, (ulong)streamed.Commit.CommitLsn);
    }

    [Fact]
    public void A_read_behind_a_waiting_transactions_record_in_its_partition_waits_and_is_released_right_after_that_transaction()
    {
        // A Debezium incremental snapshot reads chunks while streaming: transaction 7 inserted row k
        // (customers partition 0, offset 0) and touched orders; a chunk read later carries k too
        // (offset 1). Released first, the read would write k and 7's insert would then hit k's key.
        static DecodedChange Read(int partition, long offset, string id) =>
            new(new KafkaPosition("p.public.customers", partition, offset), Insert(Customers, 500, id, "read"), 0, null, 0, new NpgsqlLogSequenceNumber(500), CommitTime, SnapshotRead: true);
        var orderer = new TransactionOrderer();
        Assert.Empty(orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 100, "k")));
        Assert.Empty(orderer.Add(Read(0, 1, "k")));
        Assert.Empty(orderer.Add(Read(0, 2, "m"))); // behind the parked read
        Assert.Equal("z", Ids(Assert.Single(orderer.Add(Read(1, 0, "z"))))); // nothing waits in partition 1
        Assert.Equal(3, orderer.BufferedEvents);
        Assert.Equal(0, orderer.ResumeOffsets()[("p.public.customers", 0)]);

        Assert.Empty(orderer.Add(Change("p.public.customers", 0, 3, "8", 1, 520, "after")));
        Assert.Empty(orderer.Add(End(0, "7", 150, ("public.customers", 1), ("public.orders", 1))));
        Assert.Empty(orderer.Add(End(1, "8", 600, ("public.customers", 1))));
        var released = orderer.Add(Change("p.public.orders", 0, 0, "7", 2, 110, "o", Orders));

        Assert.Equal(["k,o", "k", "m", "after"], released.Select(Ids));
        Assert.Equal([false, true, true, false], released.Select(t => t.Begin.SnapshotRead));
        Assert.Equal(2, released[1].ResumeOffsets[("p.public.customers", 0)]); // m not applied yet
        Assert.Equal(3, released[2].ResumeOffsets[("p.public.customers", 0)]);
        Assert.Equal(4, released[3].ResumeOffsets[("p.public.customers", 0)]);
        Assert.Equal(0, orderer.BufferedEvents);

        // Nothing waits any more: the next read goes out at once.
        Assert.Single(orderer.Add(Read(0, 4, "n")));
    }

    [Fact]
    public void Parked_events_count_toward_the_buffer_bound()
    {
        var orderer = new TransactionOrderer(maxBufferedEvents: 2);
        orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 100, "k"));
        orderer.Add(new DecodedChange(new KafkaPosition("p.public.customers", 0, 1), Insert(Customers, 120, "a", "x"), 3, null, 0, new NpgsqlLogSequenceNumber(120), CommitTime));
        var e = Assert.Throws<InvalidOperationException>(() => orderer.Add(
            new DecodedChange(new KafkaPosition("p.public.customers", 0, 2), Insert(Customers, 130, "b", "x"), 4, null, 0, new NpgsqlLogSequenceNumber(130), CommitTime)));
        Assert.Contains("more than 2 change events wait", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void After_a_restart_made_up_positions_start_above_the_applied_one_so_the_applier_does_not_skip_what_follows_the_stored_offsets()
    {
        // The last run applied up to a made-up 200 (an event's LSN, forced to grow). What follows the stored
        // offsets is not applied, though its events may carry lower LSNs (their transactions began earlier).
        var orderer = new TransactionOrderer();
        orderer.StartFrom(new Dictionary<(string, int), long> { [("p.public.customers", 0)] = 5 }, new NpgsqlLogSequenceNumber(200));
        var single = new DecodedChange(new KafkaPosition("p.public.customers", 0, 5), Insert(Customers, 100, "a", "x"), 3, null, 0, new NpgsqlLogSequenceNumber(100), CommitTime);
        Assert.Equal(201UL, (ulong)Assert.Single(orderer.Add(single)).Commit.CommitLsn);

        // A bare transaction id (no LSN in END): the highest event LSN, also above the applied position.
        orderer.Add(new DecodedTransactionMarker(new KafkaPosition("p.transaction", 0, 0), true, "9", 1, null, CommitTime, null, null, null));
        var bare = Assert.Single(orderer.Add(Change("p.public.customers", 0, 6, "9", 1, 150, "b")));
        Assert.Equal(202UL, (ulong)bare.Commit.CommitLsn);
    }

    [Fact]
    public void A_delete_followed_by_a_create_with_an_unchanged_toast_placeholder_is_joined_back_into_the_key_changing_update()
    {
        var orderer = new TransactionOrderer();
        var old = new[] { ColumnValue.Of("1"), ColumnValue.Null };
        var delete = new DecodedChange(new KafkaPosition("p.public.customers", 0, 0), new RowChange(Customers, ChangeKind.Delete, new NpgsqlLogSequenceNumber(100), old, true, null),
            7, "7", 1, new NpgsqlLogSequenceNumber(100), CommitTime);
        var create = new DecodedChange(new KafkaPosition("p.public.customers", 0, 2), new RowChange(Customers, ChangeKind.Insert, new NpgsqlLogSequenceNumber(100), null, false,
            [ColumnValue.Of("10"), ColumnValue.UnchangedToast]), 7, "7", 2, new NpgsqlLogSequenceNumber(100), CommitTime);
        var plain = Change("p.public.customers", 0, 3, "7", 3, 110, "11");
        orderer.Add(End(0, "7", 150, ("public.customers", 3)));
        orderer.Add(delete);
        orderer.Add(create);
        var released = Assert.Single(orderer.Add(plain));

        Assert.Equal(2, released.Changes.Count);
        var moved = Assert.IsType<RowChange>(released.Changes[0]);
        Assert.Equal(ChangeKind.Update, moved.Kind);
        Assert.Equal("1", moved.Old![0].Text);
        Assert.Equal("10", moved.New![0].Text);
        Assert.Equal(ValueKind.UnchangedToast, moved.New[1].Kind);
        Assert.Equal(ChangeKind.Insert, Assert.IsType<RowChange>(released.Changes[1]).Kind); // a plain create stays one
    }

    [Fact]
    public void Logical_decoding_messages_counted_by_END_are_not_waited_for()
    {
        // Debezium counts a transaction's pg_logical_emit_message under LOGICAL_DECODING_MESSAGE; the op m
        // record goes to its own topic and carries nothing to apply.
        var orderer = new TransactionOrderer();
        orderer.Add(End(0, "7", 150, ("public.customers", 1), ("LOGICAL_DECODING_MESSAGE", 1)));
        Assert.Single(orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 100, "a")));
    }

    [Fact]
    public void Resume_offsets_never_pass_a_record_that_is_still_waiting()
    {
        var orderer = new TransactionOrderer();
        orderer.Add(Change("p.public.customers", 0, 10, "8", 1, 100, "waiting"));
        orderer.Add(End(4, "7", 90, ("public.customers", 1)));
        var released = Assert.Single(orderer.Add(Change("p.public.customers", 0, 11, "7", 1, 80, "done")));
        // Transaction 7 is out, but offset 10 (transaction 8) is not applied: a restart must read from 10.
        Assert.Equal(10, released.ResumeOffsets[("p.public.customers", 0)]);
        Assert.Equal(5, released.ResumeOffsets[("p.transaction", 0)]);
    }

    [Fact]
    public void Commit_positions_only_grow_so_the_applier_can_skip_at_or_below_its_stored_position()
    {
        var orderer = new TransactionOrderer();
        // A Debezium 1.x-style bare id: no LSN in END, position falls back to the events' LSNs.
        var end = new DecodedTransactionMarker(new KafkaPosition("p.transaction", 0, 0), true, "5", 1, null, CommitTime, null, null, null);
        orderer.Add(end);
        var first = Assert.Single(orderer.Add(Change("p.public.customers", 0, 0, "5", 1, 500, "a")));
        // Transaction 6 committed later but its change has a lower LSN (transactions interleave in the WAL).
        orderer.Add(end with { Position = new KafkaPosition("p.transaction", 0, 1), TransactionKey = "6" });
        var second = Assert.Single(orderer.Add(Change("p.public.customers", 0, 1, "6", 1, 300, "b")));
        Assert.True(second.Commit.CommitLsn > first.Commit.CommitLsn);
    }

    [Fact]
    public void A_producer_restart_that_writes_transactions_again_yields_each_transaction_once()
    {
        var orderer = new TransactionOrderer();
        var released = new List<OrderedTransaction>();
        // First attempt: transaction 4 complete, transaction 5 cut off after one event (no END).
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 0, "4", 1, 100, "a")));
        released.AddRange(orderer.Add(End(0, "4", 150, ("public.customers", 1))));
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 1, "5", 1, 200, "b")));
        // Capture restarts from the slot (behind its Kafka acknowledgements) and writes 4 and 5 again.
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 2, "4", 1, 100, "a")));
        released.AddRange(orderer.Add(End(1, "4", 150, ("public.customers", 1))));
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 3, "5", 1, 200, "b")));
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 4, "5", 2, 210, "c")));
        released.AddRange(orderer.Add(End(2, "5", 250, ("public.customers", 2))));

        Assert.Equal(["a", "b,c"], released.Select(Ids));
        Assert.Equal(0, orderer.BufferedEvents);
        Assert.Equal(5, orderer.ResumeOffsets()[("p.public.customers", 0)]);
        Assert.Equal(3, orderer.ResumeOffsets()[("p.transaction", 0)]);
    }

    [Fact]
    public void More_events_than_END_counts_is_an_error_naming_the_transaction()
    {
        var orderer = new TransactionOrderer();
        orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 70, "a"));
        orderer.Add(Change("p.public.customers", 0, 1, "7", 2, 71, "b"));
        var e = Assert.Throws<InvalidOperationException>(() => orderer.Add(End(0, "7", 90, ("public.customers", 1))));
        Assert.Contains("transaction 7", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Buffering_beyond_the_bound_is_an_error_that_points_at_the_stuck_transaction()
    {
        var orderer = new TransactionOrderer(maxBufferedEvents: 2);
        orderer.Add(End(0, "7", 90, ("public.customers", 1), ("public.orders", 1)));
        orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 70, "a"));
        orderer.Add(Change("p.public.customers", 0, 1, "8", 1, 100, "b"));
        var e = Assert.Throws<InvalidOperationException>(() => orderer.Add(Change("p.public.customers", 0, 2, "8", 2, 101, "c")));
        Assert.Contains("waiting on transaction 7", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_heartbeat_is_handed_on_only_after_every_transaction_below_the_transaction_topic_offset_it_waits_for()
    {
        var orderer = new TransactionOrderer();
        Assert.Empty(orderer.Add(End(0, "7", 90, ("public.customers", 1))));
        // Read when the transaction topic ended at offset 2: END of 7 (offset 0) and END of 8 (offset 1) must pass first.
        orderer.AddHeartbeat(new Heartbeat(new NpgsqlLogSequenceNumber(500), CommitTime), ("p.transaction", 0), 2);
        Assert.Null(orderer.TakeHeartbeat());
        Assert.Single(orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 70, "a")));
        Assert.Null(orderer.TakeHeartbeat()); // 8's END not read yet
        Assert.Empty(orderer.Add(End(1, "8", 190, ("public.customers", 1))));
        Assert.Null(orderer.TakeHeartbeat()); // 8's event not read yet
        orderer.AddHeartbeat(new Heartbeat(new NpgsqlLogSequenceNumber(600), CommitTime), ("p.transaction", 0), 2);
        Assert.Single(orderer.Add(Change("p.public.customers", 1, 0, "8", 1, 170, "b")));

        // Both are ready now; the newer one says more, the older is dropped.
        Assert.Equal(600UL, (ulong)orderer.TakeHeartbeat()!.WalEnd);
        Assert.Null(orderer.TakeHeartbeat());
        Assert.Equal(0, orderer.PendingHeartbeats);
    }

    [Fact]
    public void Offsets_reading_started_from_stay_in_the_resume_offsets_until_their_partition_moves()
    {
        var orderer = new TransactionOrderer();
        orderer.StartFrom(new Dictionary<(string, int), long> { [("p.public.orders", 0)] = 40, [("p.transaction", 0)] = 12 });
        // A heartbeat waiting for nothing beyond where the transaction topic starts is ready at once.
        orderer.AddHeartbeat(new Heartbeat(new NpgsqlLogSequenceNumber(500), CommitTime), ("p.transaction", 0), 12);
        Assert.NotNull(orderer.TakeHeartbeat());
        orderer.Add(Change("p.public.customers", 0, 5, "30", 1, 3000, "a"));
        var released = Assert.Single(orderer.Add(End(12, "30", 3050, ("public.customers", 1))));

        Assert.Equal(40, released.ResumeOffsets[("p.public.orders", 0)]); // not read since the start: not forgotten
        Assert.Equal(13, released.ResumeOffsets[("p.transaction", 0)]);
        Assert.Equal(6, released.ResumeOffsets[("p.public.customers", 0)]);
    }

    [Fact]
    public void Resume_offsets_point_at_the_oldest_record_of_a_transaction_not_yet_released()
    {
        var orderer = new TransactionOrderer();
        var released = new List<OrderedTransaction>();
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 0, "7", 1, 70, "a")));
        released.AddRange(orderer.Add(End(0, "7", 90, ("public.customers", 1))));
        // Transaction 8: its END and one of its two events are read; the other is still to come.
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 1, "8", 1, 170, "b")));
        released.AddRange(orderer.Add(End(1, "8", 190, ("public.customers", 1), ("public.orders", 1))));
        Assert.Equal("a", Ids(Assert.Single(released)));

        // What a partition assigned now, or a restart, would resume from: 8's records, not past them.
        var resume = orderer.ResumeOffsets();
        Assert.Equal(1, resume[("p.public.customers", 0)]);
        Assert.Equal(1, resume[("p.transaction", 0)]);
        Assert.Equal(1, orderer.BufferedEvents);

        released.AddRange(orderer.Add(Change("p.public.orders", 0, 0, "8", 2, 180, "c", Orders)));
        Assert.Equal(["a", "b,c"], released.Select(Ids));
        Assert.Equal(2, released[1].ResumeOffsets[("p.public.customers", 0)]);
        Assert.Equal(2, released[1].ResumeOffsets[("p.transaction", 0)]);
        Assert.Equal(1, released[1].ResumeOffsets[("p.public.orders", 0)]);
        Assert.Equal(0, orderer.BufferedEvents);
    }

    [Fact]
    public void Resume_offsets_follow_releases_in_any_order_and_a_partition_read_again_from_an_older_offset()
    {
        var orderer = new TransactionOrderer();
        // Three transactions' events on one partition (offsets 0, 1, 2); their ENDs arrive 2, 0, 1:
        // only the head END (transaction 20) may go first, so nothing is released until it is read.
        orderer.Add(Change("p.public.customers", 0, 0, "20", 1, 200, "a"));
        orderer.Add(Change("p.public.customers", 0, 1, "21", 1, 210, "b"));
        orderer.Add(Change("p.public.customers", 0, 2, "22", 1, 220, "c"));
        Assert.Equal(0, orderer.ResumeOffsets()[("p.public.customers", 0)]);
        var first = orderer.Add(End(0, "20", 205, ("public.customers", 1)));
        Assert.Equal(1, Assert.Single(first).ResumeOffsets[("p.public.customers", 0)]);

        // The partition is read again from offset 0 (a rewind): the repeat of 20, already handed
        // on, is not held (nothing waits for it), and the repeat's END is dropped as a replay.
        orderer.Add(Change("p.public.customers", 0, 0, "20", 1, 200, "a"));
        Assert.Equal(1, orderer.ResumeOffsets()[("p.public.customers", 0)]);
        var rest = new List<OrderedTransaction>();
        rest.AddRange(orderer.Add(End(1, "21", 215, ("public.customers", 1))));
        Assert.Equal(2, Assert.Single(rest).ResumeOffsets[("p.public.customers", 0)]);
        rest.AddRange(orderer.Add(End(2, "22", 225, ("public.customers", 1))));
        Assert.Equal(["b", "c"], rest.Select(Ids));
        Assert.Empty(orderer.Add(End(3, "20", 205, ("public.customers", 1))));
        Assert.Equal(3, orderer.ResumeOffsets()[("p.public.customers", 0)]);
        Assert.Equal(4, orderer.ResumeOffsets()[("p.transaction", 0)]);
        Assert.Equal(0, orderer.BufferedEvents);
    }

    [Fact]
    public void A_repeat_whose_events_were_taken_by_the_first_copy_does_not_hold_up_the_transactions_after_it()
    {
        // Capture wrote transaction 4 (events on two topics, then END at 0), was killed before the
        // slot heard of it, and wrote 4 again (END at 1), then 5. The table topics are read ahead of
        // the transaction topic: both copies of 4's customers event arrive before either END, and the
        // repeat's orders event only after both.
        var orderer = new TransactionOrderer();
        var released = new List<OrderedTransaction>();
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 0, "4", 1, 100, "a")));
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 1, "4", 1, 100, "a")));
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 2, "5", 1, 200, "c")));
        released.AddRange(orderer.Add(Change("p.public.orders", 0, 0, "4", 2, 110, "b", Orders)));
        released.AddRange(orderer.Add(End(0, "4", 150, ("public.customers", 1), ("public.orders", 1))));
        Assert.Equal(["a,b"], released.Select(Ids));

        // The repeat's END has nothing left to wait for (its customers event went out with the
        // first copy): it is dropped at once and 5 follows.
        released.AddRange(orderer.Add(End(1, "4", 150, ("public.customers", 1), ("public.orders", 1))));
        released.AddRange(orderer.Add(End(2, "5", 250, ("public.customers", 1))));
        Assert.Equal(["a,b", "c"], released.Select(Ids));

        // The repeat's last event arrives late: dropped, not held.
        Assert.Empty(orderer.Add(Change("p.public.orders", 0, 1, "4", 2, 110, "b", Orders)));
        Assert.Equal(0, orderer.BufferedEvents);
        var resume = orderer.ResumeOffsets();
        Assert.Equal(3, resume[("p.public.customers", 0)]);
        Assert.Equal(2, resume[("p.public.orders", 0)]);
        Assert.Equal(3, resume[("p.transaction", 0)]);
    }

    [Fact]
    public void After_a_restart_a_repeat_at_or_below_the_applied_position_is_dropped_though_its_events_lie_before_the_start()
    {
        // The applier resumes at offsets stored with transaction 4 (commit 150). A repeat of 4 written
        // by a restarted Capture has its END after the stored transaction-topic offset, but its
        // events were read (and went out with the first copy) before the stored table offset.
        var orderer = new TransactionOrderer();
        orderer.StartFrom(new Dictionary<(string, int), long> { [("p.public.customers", 0)] = 5, [("p.transaction", 0)] = 1 },
            new NpgsqlLogSequenceNumber(150));
        var released = new List<OrderedTransaction>();
        released.AddRange(orderer.Add(End(1, "4", 150, ("public.customers", 1))));
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 5, "5", 1, 200, "c")));
        released.AddRange(orderer.Add(End(2, "5", 250, ("public.customers", 1))));
        Assert.Equal(["c"], released.Select(Ids));

        // An event of the repeat still to come is dropped too.
        Assert.Empty(orderer.Add(Change("p.public.customers", 0, 6, "4", 1, 100, "a")));
        Assert.Equal(0, orderer.BufferedEvents);
        Assert.Equal(7, orderer.ResumeOffsets()[("p.public.customers", 0)]);
    }

    [Fact]
    public void Without_an_exact_commit_position_a_repeat_is_known_by_its_id_and_commit_time_and_a_reused_id_is_not_taken_for_one()
    {
        // Debezium 1.x-style bare ids: no LSN in END.
        var orderer = new TransactionOrderer();
        var end = new DecodedTransactionMarker(new KafkaPosition("p.transaction", 0, 0), true, "9", 1, null, CommitTime, null, null, null);
        var released = new List<OrderedTransaction>();
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 0, "9", 1, 100, "a")));
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 1, "9", 1, 100, "a")));
        released.AddRange(orderer.Add(end));
        released.AddRange(orderer.Add(end with { Position = new KafkaPosition("p.transaction", 0, 1) }));
        Assert.Equal(["a"], released.Select(Ids));

        // The same xid much later (wraparound): another commit time, a higher LSN — a transaction of its own.
        released.AddRange(orderer.Add(Change("p.public.customers", 0, 2, "9", 1, 900, "z")));
        released.AddRange(orderer.Add(end with { Position = new KafkaPosition("p.transaction", 0, 2), Time = CommitTime.AddDays(30) }));
        Assert.Equal(["a", "z"], released.Select(Ids));
        Assert.Equal(CommitTime.AddDays(30), released[1].Commit.CommitTime); // released by its own END
        Assert.Equal(0, orderer.BufferedEvents);
        Assert.Equal(3, orderer.ResumeOffsets()[("p.transaction", 0)]); // no END left waiting
    }
}
