using Npgsql;
using NpgsqlTypes;

namespace Replicator.Tests.Verify;

/// <summary>
/// Plays the applier's side of the barrier protocol (TargetState): sees a barrier row for its slot,
/// holds (<c>held_at</c>) until the verifier sets the cut, runs <c>beforeReach</c> (the transactions below the cut it still has to apply), sets
/// <c>reached_at</c> and <c>applied_lsn</c>, waits for <c>released_at</c>, then runs
/// <c>afterRelease</c> (transactions at or above the cut). <c>appliedOffset</c> is added to the cut
/// LSN for the reported applied_lsn: negative honours the protocol, positive plays an overshooting applier.
/// </summary>
internal sealed class BarrierParticipant : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public BarrierParticipant(string targetConnectionString, string slot, Func<int, Task> beforeReach, Func<int, Task> afterRelease, Func<int, long> appliedOffset)
    {
        _loop = Task.Run(() => LoopAsync(targetConnectionString, slot, beforeReach, afterRelease, appliedOffset, _stop.Token));
    }

    public List<(NpgsqlLogSequenceNumber Cut, NpgsqlLogSequenceNumber Applied)> Barriers { get; } = [];

    private async Task LoopAsync(string cs, string slot, Func<int, Task> beforeReach, Func<int, Task> afterRelease, Func<int, long> appliedOffset, CancellationToken ct)
    {
        await using var conn = new NpgsqlConnection(cs);
        await conn.OpenAsync(ct);
        var seen = 0;
        while (!ct.IsCancellationRequested)
        {
            long id;
            NpgsqlLogSequenceNumber? cutOrNull;
            await using (var find = new NpgsqlCommand("SELECT id, cut_lsn FROM replicator.barrier WHERE slot_name = $1 AND reached_at IS NULL AND released_at IS NULL ORDER BY id LIMIT 1", conn))
            {
                find.Parameters.AddWithValue(slot);
                await using var reader = await find.ExecuteReaderAsync(ct);
                if (!await reader.ReadAsync(ct))
                {
                    await reader.DisposeAsync();
                    await Task.Delay(5, ct);
                    continue;
                }

                (id, cutOrNull) = (reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetFieldValue<NpgsqlLogSequenceNumber>(1));
            }

            if (cutOrNull is null)
            {
                // Step 1: hold between two (imaginary) batches until the verifier has its source cut.
                await using (var hold = new NpgsqlCommand("UPDATE replicator.barrier SET held_at = clock_timestamp() WHERE id = $1", conn))
                {
                    hold.Parameters.AddWithValue(id);
                    await hold.ExecuteNonQueryAsync(ct);
                }

                await using var poll = new NpgsqlCommand("SELECT cut_lsn FROM replicator.barrier WHERE id = $1 AND cut_lsn IS NOT NULL", conn);
                poll.Parameters.AddWithValue(id);
                var until = DateTime.UtcNow.AddSeconds(30);
                while ((cutOrNull = await poll.ExecuteScalarAsync(ct) as NpgsqlLogSequenceNumber?) is null && DateTime.UtcNow < until)
                    await Task.Delay(2, ct);
                if (cutOrNull is null)
                    continue;
            }

            var cut = cutOrNull.Value;

            var n = seen++;
            await beforeReach(n);
            var applied = new NpgsqlLogSequenceNumber((ulong)((long)(ulong)cut + appliedOffset(n)));
            await using (var reach = new NpgsqlCommand("UPDATE replicator.barrier SET reached_at = clock_timestamp(), applied_lsn = $2 WHERE id = $1", conn))
            {
                reach.Parameters.AddWithValue(id);
                reach.Parameters.Add(new NpgsqlParameter { Value = applied, NpgsqlDbType = NpgsqlDbType.PgLsn });
                await reach.ExecuteNonQueryAsync(ct);
            }

            lock (Barriers)
                Barriers.Add((cut, applied));
            await using (var released = new NpgsqlCommand("SELECT released_at IS NOT NULL FROM replicator.barrier WHERE id = $1", conn))
            {
                released.Parameters.AddWithValue(id);
                var deadline = DateTime.UtcNow.AddSeconds(30);
                while (!(bool)(await released.ExecuteScalarAsync(ct))! && DateTime.UtcNow < deadline)
                    await Task.Delay(2, ct);
            }

            await afterRelease(n);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }
}
