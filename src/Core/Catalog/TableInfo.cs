using Replicator.Core.Sql;

namespace Replicator.Core.Catalog;

/// <summary>A column as the catalog describes it.</summary>
/// <param name="TypeName">The type as <c>format_type</c> prints it (already quoted where needed), usable in casts and DDL.</param>
/// <param name="Identity"><c>'a'</c> (ALWAYS), <c>'d'</c> (BY DEFAULT) or <c>'\0'</c> (not an identity column).</param>
public sealed record ColumnInfo(string Name, int Number, string TypeName, uint TypeOid, bool NotNull, bool IsGenerated, char Identity)
{
    public string QuotedName => Identifier.Quote(Name);

    public bool IsIdentityAlways => Identity == 'a';
}

/// <summary>A user table (ordinary or partitioned, or a partition) with what replication needs to know.</summary>
/// <param name="Kind"><c>'r'</c> ordinary table (also a partition), <c>'p'</c> partitioned parent (holds no rows itself).</param>
/// <param name="ReplicaIdentity"><c>'d'</c> default (primary key), <c>'n'</c> nothing, <c>'f'</c> full, <c>'i'</c> index.</param>
/// <param name="PrimaryKey">Primary-key columns in key order; empty when there is none.</param>
/// <param name="ReplicaIdentityIndexColumns">Columns of the REPLICA IDENTITY USING INDEX index; empty unless <paramref name="ReplicaIdentity"/> is 'i'.</param>
/// <param name="Parent">The partitioned parent, for a partition.</param>
/// <param name="EstimatedRows">From <c>reltuples</c>; -1 when the table was never analysed.</param>
/// <param name="RowSecurityActive">Row-level security applies to the session's role on this table (<c>row_security_active</c>): COPY FROM is refused there.</param>
public sealed record TableInfo(
    uint Oid,
    string Schema,
    string Name,
    char Kind,
    IReadOnlyList<ColumnInfo> Columns,
    IReadOnlyList<string> PrimaryKey,
    char ReplicaIdentity,
    IReadOnlyList<string> ReplicaIdentityIndexColumns,
    TableName? Parent,
    long EstimatedRows,
    long SizeBytes,
    bool RowSecurityActive = false)
{
    public TableName TableName => new(Schema, Name);

    /// <summary><c>"schema"."table"</c>, safe in SQL text.</summary>
    public string QuotedName => Identifier.Quote(Schema, Name);

    /// <summary><c>schema.table</c>, for messages and metric labels.</summary>
    public string DisplayName => $"{Schema}.{Name}";

    public bool IsPartitionedParent => Kind == 'p';

    /// <summary>Columns a writer may set: generated columns are computed by the target itself.</summary>
    public IEnumerable<ColumnInfo> WritableColumns => Columns.Where(c => !c.IsGenerated);

    /// <summary>
    /// The columns that identify a row: the replica identity index, else the primary key; empty
    /// when rows can only be identified by their whole content (REPLICA IDENTITY FULL or no key).
    /// </summary>
    public IReadOnlyList<string> KeyColumns => ReplicaIdentity == 'i' && ReplicaIdentityIndexColumns.Count > 0 ? ReplicaIdentityIndexColumns : PrimaryKey;

    public ColumnInfo Column(string name) =>
        Columns.FirstOrDefault(c => c.Name == name) ?? throw new KeyNotFoundException($"table {DisplayName} has no column {name}");
}

/// <summary>A schema-qualified table name, unquoted.</summary>
public readonly record struct TableName(string Schema, string Name)
{
    public string Quoted => Identifier.Quote(Schema, Name);

    public override string ToString() => $"{Schema}.{Name}";
}
