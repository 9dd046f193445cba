using System.Buffers.Binary;
using System.Text;
using Replicator.Core.Changes;
using Replicator.Core.Errors;

namespace Replicator.Capture;

/// <summary>
/// Reads one pgoutput message (the payload of an XLogData message) from its bytes, in the layout
/// of PostgreSQL's "Logical Replication Message Formats" (protocol versions 1 and 2). The whole
/// message is in memory, so every read is a plain, synchronous span access: no per-value task,
/// stream or reader as in a general-purpose client, which cost more than the decoding itself.
/// </summary>
/// <remarks>
/// Values are requested in text format and the replication session's client encoding is UTF-8
/// (set by the capture), so every text value becomes one string straight from its bytes.
/// </remarks>
internal struct PgOutputReader(byte[] buffer, int length)
{
    private static readonly DateTimeOffset PostgresEpoch = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private int _position;

    public readonly int Position => _position;

    public readonly int Length => length;

    public readonly bool AtEnd => _position >= length;

    public byte Byte()
    {
        Need(1);
        return buffer[_position++];
    }

    public short Int16()
    {
        Need(2);
        var value = BinaryPrimitives.ReadInt16BigEndian(buffer.AsSpan(_position));
        _position += 2;
        return value;
    }

    public int Int32()
    {
        Need(4);
        var value = BinaryPrimitives.ReadInt32BigEndian(buffer.AsSpan(_position));
        _position += 4;
        return value;
    }

    public uint UInt32() => unchecked((uint)Int32());

    public ulong UInt64()
    {
        Need(8);
        var value = BinaryPrimitives.ReadUInt64BigEndian(buffer.AsSpan(_position));
        _position += 8;
        return value;
    }

    /// <summary>A timestamp as PostgreSQL sends it: microseconds since 2000-01-01 UTC.</summary>
    public DateTimeOffset Timestamp()
    {
        var micros = unchecked((long)UInt64());
        return PostgresEpoch.AddTicks(micros * 10);
    }

    /// <summary>A NUL-terminated string.</summary>
    public string CString()
    {
        var end = Array.IndexOf(buffer, (byte)0, _position, length - _position);
        if (end < 0)
            throw Malformed("unterminated string");
        var value = Encoding.UTF8.GetString(buffer, _position, end - _position);
        _position = end + 1;
        return value;
    }

    public void Skip(int count)
    {
        Need(count);
        _position += count;
    }

    /// <summary>TupleData: Int16 column count, then per column 'n' (NULL), 'u' (unchanged TOAST) or 't' + Int32 length + text.</summary>
    public ColumnValue[] Tuple()
    {
        var count = Int16();
        if (count < 0)
            throw Malformed($"negative column count {count}");
        var values = new ColumnValue[count];
        for (var i = 0; i < values.Length; i++)
        {
            var kind = Byte();
            switch (kind)
            {
                case (byte)'n':
                    values[i] = ColumnValue.Null;
                    break;
                case (byte)'u':
                    values[i] = ColumnValue.UnchangedToast;
                    break;
                case (byte)'t':
                    var size = Int32();
                    if (size < 0)
                        throw Malformed($"negative value length {size}");
                    Need(size);
                    values[i] = ColumnValue.Of(size == 0 ? string.Empty : Encoding.UTF8.GetString(buffer, _position, size));
                    _position += size;
                    break;
                case (byte)'b':
                    throw new ReplicationException(ReplicationErrorKind.Permanent, "binary tuple data arrived although text format was requested");
                default:
                    throw Malformed($"unknown tuple value kind '{(char)kind}'");
            }
        }

        return values;
    }

    private readonly void Need(int count)
    {
        if (count < 0 || _position + count > length)
            throw Malformed($"message ends after {length} bytes, {count} more needed at {_position}");
    }

    public static ReplicationException Malformed(string what) =>
        new(ReplicationErrorKind.Permanent, $"malformed pgoutput message from the source: {what}");
}
