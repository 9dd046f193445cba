using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Capture;
using Replicator.Core.Changes;
using Replicator.Core.Configuration;
using Replicator.Core.Errors;
using Replicator.Core.Hosting;
using Replicator.Core.Metrics;
using Replicator.Core.Sql;
using Replicator.Core.State;

namespace Replicator.Applier;

/// <summary>
/// Continuous replication with the embedded buffer: Capture and Applier in one process, joined by
/// a bounded channel (back-pressure: a slow target slows reading from the slot; WAL waits on the
/// source, not in memory).
/// </summary>
/// <remarks>
/// Recovery is one mechanism for every failure: stop both stages, drop whatever was in flight (it
/// was not acknowledged to the slot, and no partial batch committed), and start again from the
/// position recorded on the target. Connection loss and server restarts are retried with
/// exponential backoff; a schema difference waits (with the same backoff, capped at 30 s) until
/// someone runs the DDL it names; a permanent problem (permissions, slot in use) stops.
/// </remarks>
public sealed class ReplicationPipeline(ConnectionInfo source, ConnectionInfo target, ApplierSettings settings, string publication,
    ILoggerFactory loggerFactory, HealthState? health = null)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger<ReplicationPipeline>();
    private ulong _strictUntil;

    /// <summary>Capacity of the channel between capture and applier, in events.</summary>
    public int BufferCapacity { get; init; } = 20_000;

    /// <summary>Runs until cancelled (returns normally) or a permanent error (throws <see cref="ReplicationException"/>).</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await RunOnceAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (ReplicationException e) when (e.Kind == ReplicationErrorKind.Schema)
            {
                ReplicatorMetrics.ApplyErrors.Add(1, new KeyValuePair<string, object?>("kind", "schema"));
                health?.Set("replication", ready: false, "waiting for a schema change on the target");
                _logger.WaitingForSchema(e.Message);
                delay = TimeSpan.FromSeconds(Math.Min(delay.TotalSeconds, 5)); // look again soon: a person is fixing it
            }
            catch (ReplicationException)
            {
                ReplicatorMetrics.ApplyErrors.Add(1, new KeyValuePair<string, object?>("kind", "permanent"));
                health?.Set("replication", ready: false, "stopped", live: false);
                throw;
            }
            catch (StrictReplayException)
            {
                ReplicatorMetrics.ApplyErrors.Add(1, new KeyValuePair<string, object?>("kind", "transient"));
                _logger.StrictReplay();
                delay = TimeSpan.Zero;
            }
            catch (Exception e) when (PostgresErrors.IsTransient(e) || e is NpgsqlException or ChannelClosedException)
            {
                ReplicatorMetrics.ApplyErrors.Add(1, new KeyValuePair<string, object?>("kind", "transient"));
                health?.Set("replication", ready: false, "reconnecting");
                _logger.Retrying(e.Message, delay.TotalSeconds);
            }
            catch (PostgresException e)
            {
                ReplicatorMetrics.ApplyErrors.Add(1, new KeyValuePair<string, object?>("kind", "permanent"));
                health?.Set("replication", ready: false, "stopped", live: false);
                throw new ReplicationException(ReplicationErrorKind.Permanent, $"the target refused a change: {e.MessageText} (SQLSTATE {e.SqlState}{(e.TableName is null ? "" : ", table " + e.SchemaName + "." + e.TableName)})", e);
            }

            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromSeconds(Math.Min(30, Math.Max(1, delay.TotalSeconds * 2)));
        }
    }

    private async Task RunOnceAsync(CancellationToken cancellationToken)
    {
        await using var sourceData = NpgsqlDataSource.Create(source.ToNpgsqlConnectionString());
        await using var targetConnection = new NpgsqlConnection(target.ToNpgsqlConnectionString(b =>
        {
            b.ApplicationName = "replicator-applier";
            b.MaxAutoPrepare = 200;
            b.AutoPrepareMinUsages = 2;
            b.CommandTimeout = 0;
        }));
        await targetConnection.OpenAsync(cancellationToken).ConfigureAwait(false);
        await TargetState.EnsureAsync(targetConnection, cancellationToken).ConfigureAwait(false);
        var position = await TargetState.ReadPositionAsync(targetConnection, settings.Slot, cancellationToken).ConfigureAwait(false)
            ?? throw new ReplicationException(ReplicationErrorKind.Permanent,
                $"the target {target} has no replication position for slot \"{settings.Slot}\": the initial snapshot has not finished. Run 'replicator run' (it snapshots first) or 'replicator snapshot'");

        var capture = new PgOutputCapture(source, settings.Slot, publication, loggerFactory.CreateLogger<PgOutputCapture>());
        var channel = Channel.CreateBounded<ChangeEvent>(new BoundedChannelOptions(BufferCapacity)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var received = (ulong)position;
        var applier = new ChangeApplier(targetConnection, sourceData, settings, loggerFactory.CreateLogger<ChangeApplier>(),
            capture.Acknowledge, () => Volatile.Read(ref received), _strictUntil);
        await applier.InitializeAsync((ulong)position, cancellationToken).ConfigureAwait(false);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var captureTask = Task.Run(async () =>
        {
            try
            {
                await capture.RunAsync(channel.Writer, position, stop.Token).ConfigureAwait(false);
            }
            finally
            {
                channel.Writer.TryComplete();
            }
        }, stop.Token);
        var applyTask = applier.RunAsync(channel.Reader, stop.Token);
        var slotTask = WatchSlotAsync(sourceData, v => Volatile.Write(ref received, v), stop.Token);
        health?.Set("replication", ready: true, $"streaming slot {settings.Slot}");

        var first = await Task.WhenAny(captureTask, applyTask).ConfigureAwait(false);
        await stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(captureTask, applyTask, slotTask).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception) when (first.IsCompletedSuccessfully)
        {
            // The first to stop did so cleanly; the others only saw the cancellation that followed.
        }
        catch (Exception)
        {
            // Whatever failed, the next attempt commits each source transaction on its own up to the
            // one that failed, so the transactions before it in the lost batch land (and a schema
            // stop shows everything up to the change that needs the DDL).
            var failedAt = applier.LastBegunCommitLsn;
            if (first.Exception?.InnerException is { } cause)
            {
                if (cause is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } && _strictUntil < failedAt)
                {
                    _strictUntil = failedAt;
                    throw new StrictReplayException(cause);
                }

                _strictUntil = Math.Max(_strictUntil, failedAt);
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(cause).Throw();
            }

            throw;
        }

        if (!cancellationToken.IsCancellationRequested)
            throw new ChannelClosedException("the replication stream ended");
    }

    /// <summary>A unique constraint clashed inside a coalesced batch: replay it change by change.</summary>
    private sealed class StrictReplayException(Exception inner) : Exception("unique constraint clash in a coalesced batch", inner);

    /// <summary>Every 5 s: WAL the slot holds on the source, and the source's current WAL end (for lag in bytes).</summary>
    private async Task WatchSlotAsync(NpgsqlDataSource sourceData, Action<ulong> walEnd, CancellationToken cancellationToken)
    {
        var tag = new KeyValuePair<string, object?>("slot", settings.Slot);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    await using var cmd = sourceData.CreateCommand(
                        "SELECT pg_current_wal_lsn(), (pg_current_wal_lsn() - restart_lsn)::float8 FROM pg_replication_slots WHERE slot_name = $1");
                    cmd.Parameters.AddWithValue(settings.Slot);
                    await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                    if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        walEnd((ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(0));
                        if (!reader.IsDBNull(1))
                            ReplicatorMetrics.SlotRetainedWal.Record(reader.GetDouble(1), tag);
                    }
                }
                catch (NpgsqlException)
                {
                    // The stages report connection trouble; this watcher only feeds metrics.
                }

                await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
