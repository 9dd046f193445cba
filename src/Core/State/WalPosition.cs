namespace Replicator.Core.State;

/// <summary>Positions in a server's WAL.</summary>
public static class WalPosition
{
    /// <summary>A WAL page's header: the short one, and the long one that opens a segment (64-bit builds).</summary>
    private const ulong ShortPageHeader = 24, LongPageHeader = 40;

    /// <summary>
    /// The end of the WAL inserted so far, from <c>pg_current_wal_insert_lsn()</c>: when the last record
    /// ended exactly at a page boundary, that function points past the next page's header, which no
    /// flush reaches until more WAL is written — a wait for the flush to pass it would wait for the
    /// server's next record. This gives the boundary itself.
    /// </summary>
    public static ulong EndOfInserted(ulong insertLsn, ulong blockSize, ulong segmentSize)
    {
        if (segmentSize > 0 && insertLsn % segmentSize == LongPageHeader)
            return insertLsn - LongPageHeader;
        if (blockSize > 0 && insertLsn % blockSize == ShortPageHeader && (segmentSize == 0 || insertLsn % segmentSize != ShortPageHeader))
            return insertLsn - ShortPageHeader;
        return insertLsn;
    }
}
