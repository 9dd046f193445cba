namespace Replicator.Core.Sql;

/// <summary>
/// The database-level write fence a cutover sets on the side it leaves
/// (<c>ALTER DATABASE … SET default_transaction_read_only = on</c>), as the cutover checks for it and
/// as a capture that lost its slot tells whether a cutover took it.
/// </summary>
public static class DatabaseFence
{
    /// <summary>A boolean SQL expression: the current database is read-only for new sessions by a database-level setting.</summary>
    public const string IsSetSql = """
        EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) AS setting
                WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.setrole = 0
                  AND lower(setting) IN ('default_transaction_read_only=on', 'default_transaction_read_only=true', 'default_transaction_read_only=1'))
        """;
}
