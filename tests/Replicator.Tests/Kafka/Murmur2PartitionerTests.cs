using System.Text;
using Replicator.Kafka;

namespace Replicator.Tests.Kafka;

public class Murmur2PartitionerTests
{
    // Vectors from Apache Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2)
    // and the Java values other clients check against ("1"…"12345").
    [Theory]
    [InlineData("21", -973932308)]
    [InlineData("foobar", -790332482)]
    [InlineData("a-little-bit-long-string", -985981536)]
    [InlineData("a-little-bit-longer-string", -1486304829)]
    [InlineData("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971)]
    [InlineData("abc", 479470107)]
    [InlineData("1", -1993445489)]
    [InlineData("12", 126087238)]
    [InlineData("123", -267702483)]
    [InlineData("1234", -1614185708)]
    [InlineData("12345", -1188365604)]
    public void Murmur2_matches_the_Java_client_for_Kafkas_published_vectors(string input, int expected)
    {
        Assert.Equal(expected, Murmur2Partitioner.Murmur2(Encoding.UTF8.GetBytes(input)));
    }

    [Fact]
    public void Partition_is_the_positive_hash_modulo_the_partition_count_as_Java_computes_it()
    {
        // toPositive(-973932308) = -973932308 & 0x7fffffff = 1173551340; % 6 = 0, % 7 = 6.
        var key = Encoding.UTF8.GetBytes("21");
        Assert.Equal(1173551340 % 6, Murmur2Partitioner.Partition(key, 6));
        Assert.Equal(1173551340 % 7, Murmur2Partitioner.Partition(key, 7));
        Assert.Equal(0, Murmur2Partitioner.Partition(key, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Murmur2Partitioner.Partition(key, 0));
    }
}
