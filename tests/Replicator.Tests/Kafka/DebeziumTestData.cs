using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Kafka.Debezium;

namespace Replicator.Tests.Kafka;

internal static class DebeziumTestData
{
    public static readonly DateTimeOffset CommitTime = DateTimeOffset.FromUnixTimeMilliseconds(1559033904863).AddTicks(1230);
    public static readonly DateTimeOffset ProcessingTime = DateTimeOffset.FromUnixTimeMilliseconds(1704164645123).AddTicks(4560);

    public static DebeziumOptions Options => new() { TopicPrefix = "dbserver1", DatabaseName = "inventory" };

    public static DebeziumSerializer Serializer(IPostgresTypeResolver? types = null, DebeziumOptions? options = null) =>
        new(options ?? Options, types, () => ProcessingTime);

    public static StreamRelation Customers { get; } = new(16384, "public", "customers", 'd',
    [
        new StreamColumn("id", 23, -1, true, "integer"),
        new StreamColumn("name", 25, -1, false, "text"),
    ]);

    public static TransactionBegin Begin(uint xid = 555, ulong commitLsn = 24023200) => new(xid, new NpgsqlLogSequenceNumber(commitLsn), CommitTime);

    public static TransactionCommit Commit(uint xid = 555, ulong commitLsn = 24023200, ulong endLsn = 24023250) =>
        new(xid, new NpgsqlLogSequenceNumber(commitLsn), new NpgsqlLogSequenceNumber(endLsn), CommitTime);

    public static RowChange Insert(StreamRelation relation, ulong lsn, params string?[] values) =>
        new(relation, ChangeKind.Insert, new NpgsqlLogSequenceNumber(lsn), null, false, values.Select(V).ToArray());

    public static ColumnValue V(string? text) => text is null ? ColumnValue.Null : ColumnValue.Of(text);

    /// <summary>A one-column table of <paramref name="typeName"/> (oid <paramref name="oid"/>) plus an integer key.</summary>
    public static StreamRelation OneColumn(uint oid, int typmod, string typeName) => new(20000 + oid, "public", "t", 'd',
    [
        new StreamColumn("id", 23, -1, true, "integer"),
        new StreamColumn("v", oid, typmod, false, typeName),
    ]);

    public static TableInfo Table(string schema, string name, params (string Name, uint Oid, string TypeName, bool Key)[] columns) =>
        new(1, schema, name, 'r',
            columns.Select((c, i) => new ColumnInfo(c.Name, i + 1, c.TypeName, c.Oid, c.Key, false, '\0')).ToArray(),
            columns.Where(c => c.Key).Select(c => c.Name).ToArray(), 'd', [], null, 0, 0);
}
