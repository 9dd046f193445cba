using Replicator.Core.State;

namespace Replicator.Tests;

public class WalPositionTests
{
    private const ulong Block = 8192, Segment = 16 * 1024 * 1024;

    [Theory]
    // pg_current_wal_insert_lsn() right after a page's short header: the last record ended at the boundary.
    [InlineData(5 * Block + 24, 5 * Block)]
    // After a segment's long header.
    [InlineData(3 * Segment + 40, 3 * Segment)]
    // Inside a page, and offset 40 of a page that opens no segment (a record may end there): as is.
    [InlineData(5 * Block + 4000, 5 * Block + 4000)]
    [InlineData(5 * Block + 40, 5 * Block + 40)]
    [InlineData(5 * Block, 5 * Block)]
    public void The_end_of_inserted_wal_is_the_page_boundary_when_the_insert_position_lies_just_past_a_page_header(ulong insert, ulong end) =>
        Assert.Equal(end, WalPosition.EndOfInserted(insert, Block, Segment));

    [Fact]
    public void Unknown_sizes_leave_the_position_as_it_is() =>
        Assert.Equal(5 * Block + 24, WalPosition.EndOfInserted(5 * Block + 24, 0, 0));
}
