using Npgsql;
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
    public async Task<StreamRelation> AddAsync(RelationDescription message, CancellationToken cancellationToken)
    {
        var columns = new List<StreamColumn>(message.Columns.Count);
        foreach (var column in message.Columns)
        {
            var typeName = await TypeNameAsync(column.TypeOid, column.TypeModifier, cancellationToken).ConfigureAwait(false);
            columns.Add(new StreamColumn(column.Name, column.TypeOid, column.TypeModifier, column.IsKey, typeName));
        }

        var relation = new StreamRelation(message.RelationId, message.Schema, message.Name, message.ReplicaIdentity, columns);
        _relations[message.RelationId] = relation;
        return relation;
    }

    private async Task<string> TypeNameAsync(uint oid, int modifier, CancellationToken cancellationToken)
    {
        if (_typeNames.TryGetValue((oid, modifier), out var name))
            return name;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var cmd = source.CreateCommand("SELECT format_type($1, $2)");
                cmd.Parameters.Add(Replicator.Core.Sql.Parameters.Oid(oid));
                cmd.Parameters.Add(new NpgsqlParameter<int> { TypedValue = modifier });
                name = (string)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
                _typeNames[(oid, modifier)] = name;
                return name;
            }
            catch (NpgsqlException e) when (attempt < 3 && Replicator.Core.Sql.PostgresErrors.IsTransient(e))
            {
                // A pooled session that was ended while idle (a cutover's write fence ends every
                // session on the source, and its reverse set-up then writes tables the publication
                // includes): the next attempt opens a new one. The stream itself is not affected.
            }
        }
    }
}

/// <summary>A pgoutput Relation message as sent, before its type names are resolved.</summary>
/// <param name="ReplicaIdentity"><c>'d'</c> default, <c>'n'</c> nothing, <c>'f'</c> full, <c>'i'</c> index.</param>
internal sealed record RelationDescription(uint RelationId, string Schema, string Name, char ReplicaIdentity, IReadOnlyList<RelationColumn> Columns)
{
    /// <summary>Relation: Int32 id, namespace, name, Int8 replica identity, Int16 column count, then per column Int8 flags (1 = key), name, Int32 type, Int32 modifier.</summary>
    public static RelationDescription Read(ref PgOutputReader reader)
    {
        var id = reader.UInt32();
        var schema = reader.CString();
        var name = reader.CString();
        var identity = (char)reader.Byte();
        var count = reader.Int16();
        var columns = new RelationColumn[Math.Max((int)count, 0)];
        for (var i = 0; i < columns.Length; i++)
        {
            var flags = reader.Byte();
            columns[i] = new RelationColumn(reader.CString(), reader.UInt32(), reader.Int32(), (flags & 1) != 0);
        }

        return new RelationDescription(id, schema.Length == 0 ? "pg_catalog" : schema, name, identity, columns);
    }
}

/// <summary>A column of a <see cref="RelationDescription"/>.</summary>
internal readonly record struct RelationColumn(string Name, uint TypeOid, int TypeModifier, bool IsKey);
