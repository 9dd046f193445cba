namespace Replicator.Kafka.Debezium;

/// <summary>
/// Where the serializer's record bytes go: an exact-length array per key and value, because that
/// is what the Kafka client takes. <see cref="New"/> allocates one per record (records that outlive
/// the call, as tests keep them); <see cref="Reused"/> lends arrays back out after
/// <see cref="Reused.ReturnAll"/>, for a producer that hands each record to librdkafka, which copies
/// it, before serializing the next event.
/// </summary>
public abstract class RecordArrays
{
    /// <summary>A new array per record.</summary>
    public static RecordArrays New { get; } = new Fresh();

    /// <summary>An array holding <paramref name="bytes"/>, exactly as long.</summary>
    public abstract byte[] Hold(ReadOnlySpan<byte> bytes);

    private sealed class Fresh : RecordArrays
    {
        public override byte[] Hold(ReadOnlySpan<byte> bytes) => bytes.ToArray();
    }

    /// <summary>
    /// Arrays kept per length and lent again once returned. Why: the producer copies each record into
    /// librdkafka (<c>RD_KAFKA_MSG_F_COPY</c>) before it returns, yet a new array per record was
    /// most of what the Kafka path allocated (a pgbench event is 3.6 KB, nearly all of it the
    /// repeated schema), and the garbage collector was a quarter of that path's CPU. Records of one
    /// event may share a length, so an array is lent once until <see cref="ReturnAll"/>. Bounded:
    /// at most <see cref="MaxKeptPerLength"/> arrays per length and <see cref="MaxKeptBytes"/> in all
    /// are kept; past that, arrays are left to the collector as before. One caller at a time.
    /// </summary>
    public sealed class Reused : RecordArrays
    {
        public const int MaxKeptPerLength = 8;
        public const long MaxKeptBytes = 8 << 20;

        private readonly Dictionary<int, Stack<byte[]>> _free = [];
        private readonly List<byte[]> _lent = [];
        private long _keptBytes;

        public override byte[] Hold(ReadOnlySpan<byte> bytes)
        {
            byte[] array;
            if (_free.TryGetValue(bytes.Length, out var free) && free.TryPop(out var kept))
            {
                array = kept;
                _keptBytes -= array.Length;
            }
            else
            {
                array = GC.AllocateUninitializedArray<byte>(bytes.Length);
            }

            bytes.CopyTo(array);
            _lent.Add(array);
            return array;
        }

        /// <summary>Every array lent since the last call may be lent again: the records holding them were produced (copied) or dropped.</summary>
        public void ReturnAll()
        {
            foreach (var array in _lent)
            {
                if (_keptBytes + array.Length > MaxKeptBytes)
                    break;
                if (!_free.TryGetValue(array.Length, out var free))
                    _free[array.Length] = free = new Stack<byte[]>(MaxKeptPerLength);
                if (free.Count >= MaxKeptPerLength)
                    continue;
                free.Push(array);
                _keptBytes += array.Length;
            }

            _lent.Clear();
        }

        /// <summary>Arrays waiting to be lent again (for tests).</summary>
        public int Kept => _free.Values.Sum(s => s.Count);
    }
}
