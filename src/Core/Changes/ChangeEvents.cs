using NpgsqlTypes;

namespace Replicator.Core.Changes;

/// <summary>
/// What flows from Capture through the buffer to the Applier. The stream is framed: every
/// <see cref="RowChange"/> and <see cref="TruncateChange"/> stands between a
/// <see cref="TransactionBegin"/> and its <see cref="TransactionCommit"/>, transactions follow
/// each other in source commit order and never interleave (Capture re-frames pgoutput's streamed
/// in-progress transactions before they reach the buffer). <see cref="Heartbeat"/> may stand
/// between transactions only. Every event is an owned, immutable value: safe to put on a channel.
/// </summary>
public abstract record ChangeEvent;

/// <summary>Start of a source transaction.</summary>
/// <param name="CommitLsn">LSN of the transaction's commit record (pgoutput's final LSN): the transaction's position.</param>
public sealed record TransactionBegin(uint Xid, NpgsqlLogSequenceNumber CommitLsn, DateTimeOffset CommitTime) : ChangeEvent
{
    /// <summary>
    /// A row read by a snapshot (Debezium's <c>op: r</c>), not a committed change: every row of one
    /// snapshot has the snapshot's position as <see cref="CommitLsn"/>, so the position cannot tell
    /// which of them are applied (the Kafka offsets stored with them do), and it never moves the
    /// applied position. Only from Kafka; the applier writes such rows as upserts where the table has
    /// a key (plain inserts where it has none).
    /// </summary>
    public bool SnapshotRead { get; init; }
}

/// <summary>End of a source transaction: everything since its begin is to be applied atomically.</summary>
/// <param name="EndLsn">End of the commit record; acknowledging this LSN to the slot releases the transaction's WAL.</param>
public sealed record TransactionCommit(uint Xid, NpgsqlLogSequenceNumber CommitLsn, NpgsqlLogSequenceNumber EndLsn, DateTimeOffset CommitTime) : ChangeEvent;

/// <summary>
/// The source's WAL has reached <paramref name="WalEnd"/> with no transaction open: lets the applier
/// report zero lag on an idle source and acknowledge the slot (DESIGN invariant 3).
/// </summary>
public sealed record Heartbeat(NpgsqlLogSequenceNumber WalEnd, DateTimeOffset ServerTime) : ChangeEvent;

public enum ChangeKind : byte
{
    Insert,
    Update,
    Delete,
}

/// <summary>
/// One row change.
/// <list type="bullet">
/// <item>Insert: <see cref="New"/> is the whole row; <see cref="Old"/> is null.</item>
/// <item>Update: <see cref="New"/> is the whole new row, except columns marked
/// <see cref="ValueKind.UnchangedToast"/> (the target keeps its value); <see cref="Old"/> is null
/// unless the key changed (key columns only, <see cref="OldIsKeyOnly"/>) or the table has
/// REPLICA IDENTITY FULL (the whole old row).</item>
/// <item>Delete: <see cref="Old"/> is the key (or the whole row under REPLICA IDENTITY FULL).</item>
/// </list>
/// Value arrays are indexed like <see cref="StreamRelation.Columns"/>; under key-only old values the
/// non-key entries are <see cref="ValueKind.Null"/> and meaningless.
/// </summary>
/// <param name="Lsn">WAL position of this change's record (Debezium's <c>source.lsn</c>).</param>
public sealed record RowChange(
    StreamRelation Relation,
    ChangeKind Kind,
    NpgsqlLogSequenceNumber Lsn,
    IReadOnlyList<ColumnValue>? Old,
    bool OldIsKeyOnly,
    IReadOnlyList<ColumnValue>? New) : ChangeEvent;

/// <summary>TRUNCATE of one or more tables, in one statement.</summary>
public sealed record TruncateChange(IReadOnlyList<StreamRelation> Relations, bool Cascade, bool RestartIdentity, NpgsqlLogSequenceNumber Lsn) : ChangeEvent;

/// <summary>A table as the replication stream describes it (pgoutput's Relation message, with type names resolved).</summary>
/// <param name="RelationId">The source table's OID: stable while the table exists.</param>
/// <param name="ReplicaIdentity"><c>'d'</c> default, <c>'n'</c> nothing, <c>'f'</c> full, <c>'i'</c> index.</param>
public sealed record StreamRelation(uint RelationId, string Schema, string Name, char ReplicaIdentity, IReadOnlyList<StreamColumn> Columns)
{
    public string DisplayName => $"{Schema}.{Name}";

    public string QuotedName => Sql.Identifier.Quote(Schema, Name);

    /// <summary>Indexes of the columns flagged as part of the key (replica identity).</summary>
    public IReadOnlyList<int> KeyIndexes { get; } = Columns.Select((c, i) => (c, i)).Where(p => p.c.IsKey).Select(p => p.i).ToArray();
}

/// <summary>A column of a <see cref="StreamRelation"/>.</summary>
/// <param name="TypeModifier">atttypmod: numeric precision/scale, varchar length, timestamp precision; -1 when none.</param>
/// <param name="TypeName">The type as the source's <c>format_type(oid, typmod)</c> prints it, e.g. <c>numeric(12,2)</c>, <c>public.mood</c>, <c>integer[]</c>.</param>
public sealed record StreamColumn(string Name, uint TypeOid, int TypeModifier, bool IsKey, string TypeName)
{
    public string QuotedName => Sql.Identifier.Quote(Name);
}

public enum ValueKind : byte
{
    Null,

    /// <summary>PostgreSQL's text output of the value (what <c>value::text</c> gives).</summary>
    Text,

    /// <summary>An unchanged out-of-line (TOAST) value the stream did not send: the target must keep its value.</summary>
    UnchangedToast,
}

/// <summary>A column value in PostgreSQL text format, or NULL, or "unchanged TOAST".</summary>
public readonly record struct ColumnValue(ValueKind Kind, string? Text)
{
    public static ColumnValue Null => new(ValueKind.Null, null);

    public static ColumnValue UnchangedToast => new(ValueKind.UnchangedToast, null);

    public static ColumnValue Of(string text) => new(ValueKind.Text, text);

    public bool IsNull => Kind == ValueKind.Null;

    /// <summary>Whether some value of <paramref name="values"/> is an unchanged TOAST value (not sent).</summary>
    public static bool AnyUnchangedToast(IReadOnlyList<ColumnValue> values)
    {
        // Rows are arrays almost always: looped as such, without the interface calls.
        if (values is ColumnValue[] array)
        {
            foreach (var value in array)
            {
                if (value.Kind == ValueKind.UnchangedToast)
                    return true;
            }

            return false;
        }

        for (var i = 0; i < values.Count; i++)
        {
            if (values[i].Kind == ValueKind.UnchangedToast)
                return true;
        }

        return false;
    }

    public override string ToString() => Kind switch
    {
        ValueKind.Null => "NULL",
        ValueKind.UnchangedToast => "(unchanged toast)",
        _ => Text!,
    };
}

/// <summary>
/// Where the buffer stands once the enclosing transaction is consumed (Kafka: the offsets to resume
/// from, as JSON). Stands just before that transaction's <see cref="TransactionCommit"/>, so the
/// applier stores it in the same target transaction as the changes. The text is made only when
/// asked for: the applier stores the last one of a batch of many source transactions.
/// </summary>
public sealed record BufferPosition(Func<string> Render) : ChangeEvent
{
    private string? _json;

    public string Json => _json ??= Render();
}
