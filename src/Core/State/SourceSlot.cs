using Npgsql;
using NpgsqlTypes;

namespace Replicator.Core.State;

/// <summary>The replication slot on the source, as the source reports it.</summary>
public static class SourceSlot
{
    /// <summary>The slot's confirmed position (<c>confirmed_flush_lsn</c>); null when the slot does not exist.</summary>
    public static async Task<NpgsqlLogSequenceNumber?> ConfirmedAsync(NpgsqlDataSource source, string slot, CancellationToken cancellationToken)
    {
        await using var cmd = source.CreateCommand("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1");
        cmd.Parameters.AddWithValue(slot);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is NpgsqlLogSequenceNumber confirmed ? confirmed : null;
    }
}
