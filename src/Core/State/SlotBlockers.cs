using Npgsql;

namespace Replicator.Core.State;

/// <summary>
/// What keeps a new logical slot from being created: its snapshot waits until every transaction
/// that holds a transaction id on the server has ended — sessions left idle in a transaction and
/// prepared transactions included.
/// </summary>
public static class SlotBlockers
{
    /// <summary>The oldest such transactions, as "pid N (state since T, application)" and "prepared transaction 'gid' (since T)"; null when none is left.</summary>
    public static async Task<string?> DescribeAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT string_agg(what, '; ' ORDER BY since) FROM (
              (SELECT format('pid %s (%s since %s, %s)', pid, state, xact_start, coalesce(nullif(application_name, ''), 'no application name')), xact_start
               FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 5)
              UNION ALL
              (SELECT format('prepared transaction %L (since %s)', gid, prepared), prepared FROM pg_prepared_xacts ORDER BY prepared LIMIT 5)
            ) blockers (what, since)
            """, connection);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
    }
}
