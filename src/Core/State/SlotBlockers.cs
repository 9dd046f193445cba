using Npgsql;

namespace Replicator.Core.State;

/// <summary>
/// What keeps a new logical slot from being created: its snapshot waits until every transaction
/// that holds a transaction id on the server has ended — sessions left idle in a transaction and
/// prepared transactions included.
/// </summary>
public static class SlotBlockers
{
    /// <summary>
    /// The oldest such transactions, as "pid N (state since T, application)" and "prepared transaction
    /// 'gid' (since T)"; null when none is left. Found through the lock each holds on its own
    /// transaction id, which every role may see (pg_stat_activity hides other roles' details
    /// without pg_read_all_stats).
    /// </summary>
    public static async Task<string?> DescribeAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT string_agg(what, '; ' ORDER BY since) FROM (
              (SELECT format('pid %s (%s since %s, %s)', l.pid, coalesce(a.state, 'state not visible'), coalesce(a.xact_start::text, '?'),
                             coalesce(nullif(a.application_name, ''), 'no application name')), a.xact_start
               FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid()
               ORDER BY a.xact_start NULLS LAST LIMIT 5)
              UNION ALL
              (SELECT format('prepared transaction %L (since %s)', gid, prepared), prepared FROM pg_prepared_xacts ORDER BY prepared LIMIT 5)
            ) blockers (what, since)
            """, connection);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
    }
}
