using Replicator.Applier;
using Replicator.Core.Changes;

namespace Replicator.Tests.Replication;

/// <summary>How the applier folds the changes of one key inside a batch.</summary>
public class PendingChangesTests
{
    private static readonly ColumnValue[] Row = [ColumnValue.Of("7"), ColumnValue.Of("x")];
    private static readonly ColumnValue[] Key = [ColumnValue.Of("7"), ColumnValue.Null];

    [Fact]
    public void An_insert_then_a_delete_of_a_new_row_leaves_nothing_to_send()
    {
        var changes = new TableChanges(null!);
        changes.Add("7", NetOp.Insert, Row, idempotent: false);
        changes.Add("7", NetOp.Delete, Key, idempotent: false);
        Assert.Empty(changes.Rows);
    }

    [Fact]
    public void An_idempotent_insert_then_a_delete_still_deletes_since_the_row_may_be_on_the_target_already()
    {
        // A snapshot read again after a connector restart, or a replay of rows the copy holds.
        var changes = new TableChanges(null!);
        changes.Add("7", NetOp.Insert, Row, idempotent: true);
        changes.Add("7", NetOp.Delete, Key, idempotent: false);
        var row = Assert.Single(changes.Rows);
        Assert.Equal(NetOp.Delete, row.Op);
        Assert.Same(Key, row.Values);
    }
}
