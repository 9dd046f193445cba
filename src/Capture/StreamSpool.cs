using Replicator.Core.Errors;

namespace Replicator.Capture;

/// <summary>
/// Holds the changes of source transactions that the server streams while they are still in
/// progress (pgoutput protocol 2, <c>streaming = on</c>: a transaction outgrowing the source's
/// <c>logical_decoding_work_mem</c> is sent in chunks between Stream Start and Stop, interleaved
/// with other transactions, and ends with Stream Commit or Abort). Each such transaction's
/// messages are appended, as received, to its own file on local disk; at Stream Commit the capture
/// reads them back in order and emits the transaction whole, in commit order, like any other
/// (the stream after the capture never interleaves transactions). Memory stays bounded: a
/// streamed transaction of any size costs one file buffer.
/// </summary>
/// <remarks>
/// Record layout: Int64 WAL position, Int32 length, the message bytes. A subtransaction's first
/// change is remembered by its file offset, so that a Stream Abort of that subtransaction (ROLLBACK
/// TO SAVEPOINT) cuts the file back to it, as PostgreSQL's own apply worker does. The files belong
/// to this process only: after a restart the server streams every unfinished transaction again
/// from its start, so leftovers are deleted.
/// </remarks>
internal sealed class StreamSpool : IDisposable
{
    private readonly string _directory;
    private readonly Dictionary<uint, Spooled> _open = [];
    private readonly byte[] _header = new byte[12];

    public StreamSpool(string directory)
    {
        _directory = directory;
        if (Directory.Exists(directory))
            Directory.Delete(directory, recursive: true);
    }

    /// <summary>Transactions with spooled changes, not yet committed or aborted.</summary>
    public int OpenTransactions => _open.Count;

    /// <summary>
    /// The lowest WAL position among the open transactions' messages (not every streamed message
    /// carries one); 0 when some open transaction has none yet, or none is open.
    /// </summary>
    public ulong OldestOpenChange
    {
        get
        {
            ulong oldest = 0;
            foreach (var spooled in _open.Values)
            {
                if (spooled.FirstWal == 0)
                    return 0;
                if (oldest == 0 || spooled.FirstWal < oldest)
                    oldest = spooled.FirstWal;
            }

            return oldest;
        }
    }

    /// <summary>Appends one message of top-level transaction <paramref name="xid"/>, sent for (sub)transaction <paramref name="messageXid"/>.</summary>
    public void Append(uint xid, uint messageXid, ulong walStart, ReadOnlySpan<byte> message)
    {
        if (!_open.TryGetValue(xid, out var spooled))
        {
            Directory.CreateDirectory(_directory);
            var path = Path.Combine(_directory, $"{xid}.stream");
            var file = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
            spooled = new Spooled(file);
            _open[xid] = spooled;
        }

        if (walStart != 0 && (spooled.FirstWal == 0 || walStart < spooled.FirstWal))
            spooled.FirstWal = walStart;

        if (messageXid != xid && spooled.Seen.Add(messageXid))
            spooled.Subtransactions.Add((messageXid, spooled.File.Position));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(_header, walStart);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(_header.AsSpan(8), message.Length);
        spooled.File.Write(_header);
        spooled.File.Write(message);
    }

    /// <summary>
    /// Stream Abort: the whole transaction (<paramref name="subxid"/> = <paramref name="xid"/>) is
    /// dropped, or only what a rolled-back subtransaction and the ones begun after it wrote.
    /// </summary>
    public void Abort(uint xid, uint subxid)
    {
        if (!_open.TryGetValue(xid, out var spooled))
            return; // nothing of it was spooled (its changes were all filtered out)
        if (subxid == xid)
        {
            spooled.File.Dispose();
            _open.Remove(xid);
            return;
        }

        var index = spooled.Subtransactions.FindIndex(s => s.Xid == subxid);
        if (index < 0)
            return; // the subtransaction changed nothing published
        var offset = spooled.Subtransactions[index].Offset;
        for (var i = index; i < spooled.Subtransactions.Count; i++)
            spooled.Seen.Remove(spooled.Subtransactions[i].Xid);
        spooled.Subtransactions.RemoveRange(index, spooled.Subtransactions.Count - index);
        spooled.File.SetLength(offset);
        spooled.File.Position = offset;
    }

    /// <summary>Stream Commit: hands the transaction's messages back in the order they arrived, and forgets it when disposed.</summary>
    public Replay Commit(uint xid)
    {
        if (!_open.Remove(xid, out var spooled))
            return new Replay(null);
        spooled.File.Flush();
        spooled.File.Position = 0;
        return new Replay(spooled.File);
    }

    public void Dispose()
    {
        foreach (var spooled in _open.Values)
            spooled.File.Dispose();
        _open.Clear();
        try
        {
            if (Directory.Exists(_directory))
                Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // Another run reuses the directory name only after deleting it first.
        }
    }

    private sealed class Spooled(FileStream file)
    {
        public FileStream File { get; } = file;

        /// <summary>The lowest non-zero WAL position of its messages so far; 0 while none carried one.</summary>
        public ulong FirstWal { get; set; }

        /// <summary>Subtransactions in the order of their first change, with that change's offset.</summary>
        public List<(uint Xid, long Offset)> Subtransactions { get; } = [];

        public HashSet<uint> Seen { get; } = [];
    }

    /// <summary>Reads a committed streamed transaction's messages back; disposing deletes its file.</summary>
    public sealed class Replay(FileStream? file) : IDisposable
    {
        private readonly byte[] _header = new byte[12];

        /// <summary>The next message into <paramref name="buffer"/> (grown when needed); false at the end.</summary>
        public bool TryRead(ref byte[] buffer, out int length, out ulong walStart)
        {
            length = 0;
            walStart = 0;
            if (file is null)
                return false;
            var read = file.ReadAtLeast(_header, _header.Length, throwOnEndOfStream: false);
            if (read == 0)
                return false;
            if (read < _header.Length)
                throw new ReplicationException(ReplicationErrorKind.Permanent, $"streamed-transaction spool file {file.Name} is truncated");
            walStart = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(_header);
            length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(_header.AsSpan(8));
            if (buffer.Length < length)
                buffer = new byte[Math.Max(length, buffer.Length * 2)];
            file.ReadExactly(buffer, 0, length);
            return true;
        }

        public void Dispose() => file?.Dispose();
    }
}
