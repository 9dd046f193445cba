using System.Runtime.InteropServices;

namespace Replicator.Kafka;

/// <summary>
/// glibc's malloc settings for a process that runs a Kafka client. librdkafka allocates every
/// record it produces (a copy of the value), every fetch response and every produce request with
/// malloc; by default glibc serves anything above 128 KB (rising with what was freed) with a fresh
/// <c>mmap</c> and gives freed memory back to the kernel soon, so the next buffer faults its pages
/// in again, zero-filled by the kernel. Measured (<c>bench/kafka-path/run.sh 20000 client</c>, six
/// alternating pairs): page faults 356–390k → 226–252k and process CPU 9.9–12.4 s → 8.5–11.0 s for
/// the bare client's produce and consume of the same records (docs/benchmarks.md). Settings applied: buffers up to 32 MB come
/// from malloc's heaps (<c>M_MMAP_THRESHOLD</c>), and up to 256 MB freed at a heap's top stays
/// there for reuse (<c>M_TRIM_THRESHOLD</c>): the process keeps the memory its Kafka client needed
/// at its peak (bounded by the client's queue settings) instead of returning and refaulting it.
/// <para>
/// Only on Linux with glibc; a setting the operator chose (<c>MALLOC_MMAP_THRESHOLD_</c>,
/// <c>MALLOC_TRIM_THRESHOLD_</c> or <c>GLIBC_TUNABLES</c> naming <c>glibc.malloc</c>) is left as
/// it is, and so is everything on musl (Alpine) or where <c>mallopt</c> is missing.
/// </para>
/// </summary>
public static class NativeHeap
{
    /// <summary>glibc's <c>M_TRIM_THRESHOLD</c>.</summary>
    private const int TrimThreshold = -1;

    /// <summary>glibc's <c>M_MMAP_THRESHOLD</c>; 32 MB is glibc's largest allowed value on 64-bit systems.</summary>
    private const int MmapThreshold = -3;

    private const int MmapThresholdBytes = 32 << 20;
    private const int TrimThresholdBytes = 256 << 20;

    private static readonly Lock Gate = new();
    private static string? _outcome;

    /// <summary>Applies the settings once per process (later calls return the first outcome): "tuned", or why not.</summary>
    public static string TuneForKafka()
    {
        lock (Gate)
            return _outcome ??= Tune();
    }

    private static string Tune()
    {
        if (!OperatingSystem.IsLinux())
            return "not Linux";
        if (OperatorChose(Environment.GetEnvironmentVariable))
            return "left to the environment's malloc settings";

        try
        {
            // The mmap threshold first: setting it also ends glibc's adjusting of both thresholds.
            if (mallopt(MmapThreshold, MmapThresholdBytes) != 1 || mallopt(TrimThreshold, TrimThresholdBytes) != 1)
                return "mallopt refused the settings";
            return "tuned";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "no glibc";
        }
    }

    /// <summary>Whether the environment sets glibc's malloc thresholds itself (then they are not touched).</summary>
    internal static bool OperatorChose(Func<string, string?> environment) =>
        environment("MALLOC_MMAP_THRESHOLD_") is not null
        || environment("MALLOC_TRIM_THRESHOLD_") is not null
        || (environment("GLIBC_TUNABLES") ?? "").Contains("glibc.malloc.", StringComparison.Ordinal);

    [DllImport("libc.so.6", ExactSpelling = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int mallopt(int param, int value);
}
