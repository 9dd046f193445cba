using NpgsqlTypes;

namespace Replicator.Kafka.Debezium;

public enum DebeziumRecordKind : byte
{
    /// <summary>A change event (op c/u/d/r/t) on a table topic.</summary>
    Change,

    /// <summary>The null-value record with a deleted row's key, for log compaction.</summary>
    Tombstone,

    /// <summary>BEGIN on the transaction topic.</summary>
    TransactionBegin,

    /// <summary>END on the transaction topic: the transaction's last record.</summary>
    TransactionEnd,

    /// <summary>A record on the heartbeat topic.</summary>
    Heartbeat,
}

/// <summary>
/// One Kafka record, serialized as Kafka Connect's JsonConverter would. <paramref name="Value"/> is
/// null for a tombstone. <paramref name="Position"/> is the source position the record belongs to:
/// the transaction's commit LSN (or the heartbeat's WAL end); once every record of a transaction
/// is acknowledged by Kafka, its <c>EndLsn</c> (carried on the END record) may be confirmed to the slot.
/// </summary>
public sealed record DebeziumRecord(
    DebeziumRecordKind Kind,
    string Topic,
    byte[]? Key,
    byte[]? Value,
    NpgsqlLogSequenceNumber Position,
    IReadOnlyList<KeyValuePair<string, byte[]>>? Headers = null);

/// <summary>Kafka header names our producer adds; Debezium consumers ignore unknown headers.</summary>
public static class ReplicatorHeaders
{
    /// <summary>On END records: the source transaction's commit LSN (pg_lsn text).</summary>
    public const string CommitLsn = "replicator.commit_lsn";

    /// <summary>On END records: the end of the commit record (pg_lsn text), what the slot may be confirmed to.</summary>
    public const string EndLsn = "replicator.end_lsn";

    /// <summary>On heartbeat records: the source WAL end (pg_lsn text).</summary>
    public const string WalEnd = "replicator.wal_end";
}
