using Npgsql;
using Npgsql.Replication.PgOutput.Messages;
using Replicator.Core.Changes;

namespace Replicator.Capture;

/// <summary>
/// Relations announced by the stream (pgoutput sends a Relation message before the first change
/// of a table in a session, and again after its schema changed), with type names resolved on the
/// source through <c>format_type</c>, cached per (type, modifier).
/// </summary>
internal sealed class RelationCache(NpgsqlDataSource source)
{
    private readonly Dictionary<uint, StreamRelation> _relations = [];
    private readonly Dictionary<(uint Oid, int Modifier), string> _typeNames = [];

    public StreamRelation Get(uint relationId) =>
        _relations.TryGetValue(relationId, out var relation)
            ? relation
            : throw new InvalidOperationException($"the stream sent a change for relation {relationId} before describing it");

    /// <summary>Records a Relation message; returns the relation (new, or replacing the previous description).</summary>
    public async Task<StreamRelation> AddAsync(RelationMessage message, CancellationToken cancellationToken)
    {
        var columns = new List<StreamColumn>(message.Columns.Count);
        foreach (var column in message.Columns)
        {
            var typeName = await TypeNameAsync(column.DataTypeId, column.TypeModifier, cancellationToken).ConfigureAwait(false);
            columns.Add(new StreamColumn(column.ColumnName, column.DataTypeId, column.TypeModifier,
                (column.Flags & RelationMessage.Column.ColumnFlags.PartOfKey) != 0, typeName));
        }

        var identity = message.ReplicaIdentity switch
        {
            RelationMessage.ReplicaIdentitySetting.AllColumns => 'f',
            RelationMessage.ReplicaIdentitySetting.Nothing => 'n',
            RelationMessage.ReplicaIdentitySetting.IndexWithIndIsReplIdent => 'i',
            _ => 'd',
        };
        var relation = new StreamRelation(message.RelationId, message.Namespace, message.RelationName, identity, columns);
        _relations[message.RelationId] = relation;
        return relation;
    }

    private async Task<string> TypeNameAsync(uint oid, int modifier, CancellationToken cancellationToken)
    {
        if (_typeNames.TryGetValue((oid, modifier), out var name))
            return name;
        await using var cmd = source.CreateCommand("SELECT format_type($1, $2)");
        cmd.Parameters.Add(Replicator.Core.Sql.Parameters.Oid(oid));
        cmd.Parameters.Add(new NpgsqlParameter<int> { TypedValue = modifier });
        name = (string)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        _typeNames[(oid, modifier)] = name;
        return name;
    }
}
