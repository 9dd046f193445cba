namespace Replicator.Kafka;

/// <summary>
/// The Java Kafka client's default partitioner for keyed records:
/// <c>toPositive(murmur2(keyBytes)) % numPartitions</c>, so our records land on the partitions a
/// Debezium connector (a Java producer) would pick for the same key bytes. librdkafka's
/// <c>murmur2_random</c> partitioner computes the same; this copy lets us know the partition
/// before producing (and test it against Kafka's published vectors).
/// </summary>
public static class Murmur2Partitioner
{
    /// <summary>Kafka's <c>Utils.murmur2</c> (seed 0x9747b28c), as a signed 32-bit value like Java's.</summary>
    public static int Murmur2(ReadOnlySpan<byte> data)
    {
        const uint seed = 0x9747b28c;
        const uint m = 0x5bd1e995;
        const int r = 24;
        var length = data.Length;
        var h = seed ^ (uint)length;
        var length4 = length / 4;
        for (var i = 0; i < length4; i++)
        {
            var i4 = i * 4;
            var k = data[i4] | ((uint)data[i4 + 1] << 8) | ((uint)data[i4 + 2] << 16) | ((uint)data[i4 + 3] << 24);
            k *= m;
            k ^= k >> r;
            k *= m;
            h *= m;
            h ^= k;
        }

        var tail = length & ~3;
        switch (length % 4)
        {
            case 3:
                h ^= (uint)data[tail + 2] << 16;
                goto case 2;
            case 2:
                h ^= (uint)data[tail + 1] << 8;
                goto case 1;
            case 1:
                h ^= data[tail];
                h *= m;
                break;
        }

        h ^= h >> 13;
        h *= m;
        h ^= h >> 15;
        return unchecked((int)h);
    }

    /// <summary>The partition for <paramref name="key"/> among <paramref name="partitionCount"/>.</summary>
    public static int Partition(ReadOnlySpan<byte> key, int partitionCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(partitionCount, 1);
        return (Murmur2(key) & 0x7fffffff) % partitionCount;
    }
}
