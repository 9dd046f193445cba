using NpgsqlTypes;
using Replicator.Core.Changes;
using Replicator.Kafka.Debezium;
using static Replicator.Tests.Kafka.DebeziumTestData;

namespace Replicator.Tests.Kafka;

/// <summary>The producer's reused record arrays: never lent twice before they are returned, bounded, and the bytes unchanged.</summary>
public class RecordArraysTests
{
    [Fact]
    public void An_array_is_lent_again_only_after_ReturnAll()
    {
        var arrays = new RecordArrays.Reused();
        var a = arrays.Hold("abc"u8);
        var b = arrays.Hold("xyz"u8); // same length, same event: must not share a's array
        Assert.NotSame(a, b);
        Assert.Equal("abc"u8.ToArray(), a);
        Assert.Equal("xyz"u8.ToArray(), b);

        arrays.ReturnAll();
        Assert.Equal(2, arrays.Kept);
        var c = arrays.Hold("123"u8);
        Assert.True(ReferenceEquals(c, a) || ReferenceEquals(c, b));
        Assert.Equal("123"u8.ToArray(), c);
        var d = arrays.Hold("1234"u8); // another length: a new array, exactly as long
        Assert.Equal(4, d.Length);
        Assert.Equal(1, arrays.Kept);
    }

    [Fact]
    public void Keeps_at_most_MaxKeptPerLength_arrays_of_one_length()
    {
        var arrays = new RecordArrays.Reused();
        for (var i = 0; i < RecordArrays.Reused.MaxKeptPerLength + 5; i++)
            arrays.Hold("abc"u8);
        arrays.ReturnAll();
        Assert.Equal(RecordArrays.Reused.MaxKeptPerLength, arrays.Kept);
    }

    [Fact]
    public void Keeps_at_most_MaxKeptBytes_in_all()
    {
        var arrays = new RecordArrays.Reused();
        var big = new byte[1 << 20];
        for (var i = 0; i < 20; i++)
            arrays.Hold(big.AsSpan(0, big.Length - i)); // 20 distinct lengths of about 1 MB
        arrays.ReturnAll();
        Assert.Equal((int)(RecordArrays.Reused.MaxKeptBytes / (1 << 20)), arrays.Kept);
    }

    [Fact]
    public void A_serializer_on_reused_arrays_writes_the_same_records_as_one_on_new_arrays()
    {
        var options = new DebeziumOptions { TopicPrefix = "dbserver1", DatabaseName = "inventory" };
        var reused = new RecordArrays.Reused();
        var plain = new DebeziumSerializer(options, clock: () => CommitTime);
        var pooled = new DebeziumSerializer(options, clock: () => CommitTime, arrays: reused);
        ChangeEvent[] events =
        [
            Begin(7, 2000), Insert(Customers, 1900, "1", "Anne"), Insert(Customers, 1910, "2", "Bert"),
            new RowChange(Customers, ChangeKind.Delete, new NpgsqlLogSequenceNumber(1920), [V("1"), ColumnValue.Null], true, null),
            Commit(7, 2000, 2010),
            Begin(8, 3000), Insert(Customers, 2900, "3", "Cleo"), Commit(8, 3000, 3010),
        ];
        foreach (var e in events)
        {
            var expected = plain.Serialize(e);
            var actual = pooled.Serialize(e);
            Assert.Equal(expected.Count, actual.Count);
            for (var i = 0; i < expected.Count; i++)
            {
                Assert.Equal(expected[i].Topic, actual[i].Topic);
                Assert.Equal(expected[i].Key, actual[i].Key);
                Assert.Equal(expected[i].Value, actual[i].Value);
            }

            reused.ReturnAll(); // as the sink does once the event's records are produced
        }

        Assert.True(reused.Kept > 0);
    }
}
