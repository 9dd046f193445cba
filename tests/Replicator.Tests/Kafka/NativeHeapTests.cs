using System.Runtime.InteropServices;
using Replicator.Kafka;

namespace Replicator.Tests.Kafka;

/// <summary>glibc's malloc set up for librdkafka's buffers (the test machines run Debian: glibc).</summary>
public class NativeHeapTests
{
    [Fact]
    public void Buffers_below_32_MB_come_from_the_heap_once_a_Kafka_client_set_it_up()
    {
        Assert.Equal("tuned", NativeHeap.TuneForKafka());
        // glibc's default maps anything above 128 KB (rising only with what was freed) on its own,
        // and unmaps it when freed: a 4 MB buffer would add 4 MB of mapped blocks.
        var before = MappedBytes();
        var small = Marshal.AllocHGlobal(4 << 20);
        var withSmall = MappedBytes();
        var large = Marshal.AllocHGlobal(40 << 20);
        var withLarge = MappedBytes();
        Marshal.FreeHGlobal(small);
        Marshal.FreeHGlobal(large);

        Assert.True(withSmall - before < 4 << 20, $"a 4 MB buffer was mapped on its own ({withSmall - before} bytes more mapped)");
        // Above the threshold glibc still maps: the measurement itself sees mapped blocks.
        Assert.True(withLarge - withSmall >= 40 << 20, $"a 40 MB buffer added only {withLarge - withSmall} mapped bytes");
    }

    [Theory]
    [InlineData("MALLOC_MMAP_THRESHOLD_", "1048576", true)]
    [InlineData("MALLOC_TRIM_THRESHOLD_", "0", true)]
    [InlineData("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1", true)]
    [InlineData("GLIBC_TUNABLES", "glibc.rtld.nns=2", false)]
    [InlineData("MALLOC_ARENA_MAX", "2", false)]
    public void Malloc_settings_the_operator_made_are_left_alone(string name, string value, bool left)
    {
        var environment = new Dictionary<string, string> { [name] = value };
        Assert.Equal(left, NativeHeap.OperatorChose(n => environment.GetValueOrDefault(n)));
    }

    private static long MappedBytes() => (long)mallinfo2().hblkhd;

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
    }

    [DllImport("libc.so.6", ExactSpelling = true)]
    private static extern MallInfo2 mallinfo2();
}
