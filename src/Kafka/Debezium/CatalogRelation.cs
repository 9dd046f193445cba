using Replicator.Core.Catalog;
using Replicator.Core.Changes;

namespace Replicator.Kafka.Debezium;

/// <summary>A table from the catalog described the way pgoutput's Relation message describes it.</summary>
public static class CatalogRelation
{
    /// <summary>
    /// The written columns (generated ones left out, as pgoutput leaves them out) with their type
    /// modifiers, and the replica-identity key columns flagged.
    /// </summary>
    public static StreamRelation Of(TableInfo info)
    {
        var keys = info.KeyColumns.ToHashSet(StringComparer.Ordinal);
        return new StreamRelation(info.Oid, info.Schema, info.Name, info.ReplicaIdentity,
            info.WritableColumns.Select(c => new StreamColumn(c.Name, c.TypeOid, Typmod(c), keys.Contains(c.Name), c.TypeName)).ToArray());
    }

    private static int Typmod(ColumnInfo c)
    {
        try
        {
            return PgOid.TypmodFromTypeName(c.TypeOid, c.TypeName);
        }
        catch (FormatException)
        {
            return -1;
        }
    }
}
