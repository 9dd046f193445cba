using Npgsql;
using NpgsqlTypes;

namespace Replicator.Core.Sql;

/// <summary>Typed parameters Npgsql cannot infer by itself.</summary>
public static class Parameters
{
    /// <summary>A <c>pg_lsn</c> parameter (Npgsql 10 does not infer it from the CLR type).</summary>
    public static NpgsqlParameter Lsn(NpgsqlLogSequenceNumber value) =>
        new NpgsqlParameter<NpgsqlLogSequenceNumber> { TypedValue = value, NpgsqlDbType = NpgsqlDbType.PgLsn };

    /// <summary>An <c>oid</c> parameter.</summary>
    public static NpgsqlParameter Oid(uint value) =>
        new NpgsqlParameter<uint> { TypedValue = value, NpgsqlDbType = NpgsqlDbType.Oid };
}
