using System.Text;
using Replicator.Core.Changes;

namespace Replicator.Applier;

/// <summary>What one key ends up as after several changes inside one target transaction.</summary>
internal enum NetOp : byte
{
    /// <summary>The row did not exist before: plain INSERT (UPSERT when replayed idempotently).</summary>
    Insert,

    /// <summary>The row existed and changed: UPDATE of the columns present (unchanged TOAST left out).</summary>
    Update,

    /// <summary>The row is gone.</summary>
    Delete,

    /// <summary>The row was deleted and inserted again: the whole new row overwrites (UPSERT).</summary>
    Replace,
}

internal sealed class PendingRow(NetOp op, ColumnValue[] values, bool idempotent)
{
    public NetOp Op { get; set; } = op;

    /// <summary>Whole row for Insert/Replace; for Update some entries may be UnchangedToast; key only for Delete.</summary>
    public ColumnValue[] Values { get; set; } = values;

    /// <summary>Some change merged here replays data the snapshot already holds: write it so a second application is harmless.</summary>
    public bool Idempotent { get; set; } = idempotent;
}

/// <summary>
/// Net effect of the changes of one batch on one keyed table, per key.
/// </summary>
/// <remarks>
/// Why this is safe: the whole batch is one target transaction, so only its end state is ever
/// visible, and the end state of a key depends only on the changes to that key, in order — which
/// <see cref="Add"/> folds left to right. Different keys and different tables are independent
/// because the applier session runs with session_replication_role = replica (no triggers or
/// foreign-key checks fire); a unique constraint on other columns could still see a transient
/// clash between two keys, and the applier then replays the batch change by change (strict mode).
/// </remarks>
internal sealed class TableChanges(TableApplyPlan plan)
{
    private readonly Dictionary<string, PendingRow> _rows = new(StringComparer.Ordinal);

    public TableApplyPlan Plan { get; } = plan;

    public int Count => _rows.Count;

    public IEnumerable<PendingRow> Rows => _rows.Values;

    public void Clear() => _rows.Clear();

    /// <summary>Folds one change of <paramref name="key"/> into the pending state.</summary>
    public void Add(string key, NetOp op, ColumnValue[] values, bool idempotent)
    {
        if (!_rows.TryGetValue(key, out var row))
        {
            _rows[key] = new PendingRow(op, values, idempotent);
            return;
        }

        row.Idempotent |= idempotent;
        switch (row.Op, op)
        {
            case (NetOp.Insert, NetOp.Update):
            case (NetOp.Replace, NetOp.Update):
            case (NetOp.Update, NetOp.Update):
                row.Values = Merge(row.Values, values);
                break;
            case (NetOp.Insert, NetOp.Delete) when !row.Idempotent:
                _rows.Remove(key);
                break;
            // An idempotent insert (a replay of copied data, a snapshot read) may find the row on the
            // target already: the delete must still be sent, so it falls to the case below.
            case (_, NetOp.Delete):
                row.Op = NetOp.Delete;
                row.Values = values;
                break;
            case (NetOp.Delete, NetOp.Insert):
            case (_, NetOp.Insert):
                // An insert of a key that exists (or was just deleted) can only overwrite it.
                row.Op = NetOp.Replace;
                row.Values = values;
                break;
            default:
                // Update/Replace after Delete cannot happen on a consistent stream; keep the last word.
                row.Op = op;
                row.Values = values;
                break;
        }
    }

    private static ColumnValue[] Merge(ColumnValue[] earlier, ColumnValue[] later)
    {
        var merged = new ColumnValue[later.Length];
        for (var i = 0; i < later.Length; i++)
            merged[i] = later[i].Kind == ValueKind.UnchangedToast ? earlier[i] : later[i];
        return merged;
    }

    /// <summary>A string identifying a key: values length-prefixed so no value can imitate a separator.</summary>
    public static string KeyOf(IReadOnlyList<ColumnValue> values, int[] keyIndexes)
    {
        if (keyIndexes.Length == 1)
        {
            // One key column: its text is the key. A text value never holds a NUL character
            // (PostgreSQL refuses it), so the NUL-led marker of a NULL cannot equal any value.
            var only = values[keyIndexes[0]];
            return only.Kind == ValueKind.Text ? only.Text! : "\0-";
        }

        var sb = new StringBuilder();
        foreach (var i in keyIndexes)
        {
            var v = values[i];
            if (v.Kind == ValueKind.Text)
                sb.Append(v.Text!.Length).Append(':').Append(v.Text);
            else
                sb.Append('-');
            sb.Append('|');
        }

        return sb.ToString();
    }
}
