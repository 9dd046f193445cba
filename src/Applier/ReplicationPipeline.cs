using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Capture;
using Replicator.Core.Catalog;
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
public sealed class ReplicationPipeline(ConnectionInfo? sourceInfo, ConnectionInfo? targetInfo, ApplierSettings settings, string publication,
    ILoggerFactory loggerFactory, HealthState? health = null)
{
    /// <summary>Which stages this process runs and what joins them.</summary>
    public PipelineRole Role { get; init; } = PipelineRole.Embedded;

    /// <summary>Kafka producer settings (roles <see cref="PipelineRole.Capture"/> and <see cref="PipelineRole.KafkaBoth"/>).</summary>
    public Replicator.Kafka.KafkaSinkOptions? KafkaSink { get; init; }

    /// <summary>Kafka consumer settings (roles <see cref="PipelineRole.Apply"/> and <see cref="PipelineRole.KafkaBoth"/>).</summary>
    public Replicator.Kafka.KafkaSourceOptions? KafkaSource { get; init; }

    private readonly ILogger _logger = loggerFactory.CreateLogger<ReplicationPipeline>();
    private ulong _strictUntil;

    /// <summary>Capacity of the channel between capture and applier, in events.</summary>
    public int BufferCapacity { get; init; } = 20_000;

    /// <summary>True once a cutover has switched the application to the target and replication stopped for good.</summary>
    public bool Switched { get; private set; }

    /// <summary>Runs until cancelled or switched by a cutover (returns normally), or a permanent error (throws <see cref="ReplicationException"/>).</summary>
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
            catch (ReplicationException e) when (e.Kind == ReplicationErrorKind.SlotInUse)
            {
                health?.Set("replication", ready: false, "slot in use by another process");
                _logger.SlotInUse(e.Message);
                delay = TimeSpan.FromSeconds(Math.Min(delay.TotalSeconds, 5));
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
            catch (Exception e) when (PostgresErrors.IsTransient(e) || e is NpgsqlException or ChannelClosedException or Confluent.Kafka.KafkaException)
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

            try
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return; // stopped while waiting to retry: as clean a stop as any other
            }

            delay = TimeSpan.FromSeconds(Math.Min(30, Math.Max(1, delay.TotalSeconds * 2)));
        }
    }

    /// <summary>
    /// The applier's target session. A look at the target made with the same string before the
    /// pipeline starts (run's "is the snapshot done?") leaves its session in the pool for the
    /// applier: one connection set-up less at start.
    /// </summary>
    public static string TargetConnectionString(ConnectionInfo target, bool kafka) => target.ToNpgsqlConnectionString(b =>
    {
        b.ApplicationName = "replicator-applier";
        // Reading Kafka, this session holds the applier's lock (TargetState.LockApplierAsync): it is
        // closed when the pipeline ends, not parked in a pool with the lock still taken.
        b.Pooling = !kafka;
        b.MaxAutoPrepare = 200;
        b.AutoPrepareMinUsages = 2;
        b.CommandTimeout = 0;
    });

    private Task RunOnceAsync(CancellationToken cancellationToken) => Role switch
    {
        PipelineRole.Embedded => RunStagesAsync(capture: true, apply: true, kafka: false, cancellationToken),
        PipelineRole.Capture => RunStagesAsync(capture: true, apply: false, kafka: true, cancellationToken),
        PipelineRole.Apply => RunStagesAsync(capture: false, apply: true, kafka: true, cancellationToken),
        _ => RunStagesAsync(capture: true, apply: true, kafka: true, cancellationToken),
    };

    /// <summary>
    /// Starts the stages of this role and supervises them: the first to stop (with an error, or
    /// because its input ended) stops the others, and its error is what the retry loop sees.
    /// <list type="bullet">
    /// <item>embedded: capture → channel → applier; the applier acknowledges the slot.</item>
    /// <item>Kafka, capture half: capture → channel → producer; the slot is acknowledged up to the
    /// producer's <c>DurableLsn</c> (everything before it acknowledged by Kafka with acks=all).</item>
    /// <item>Kafka, apply half: consumer (commit order rebuilt from the transaction topic) →
    /// channel → applier; the offsets go into <c>replicator.position</c> with the changes.</item>
    /// </list>
    /// </summary>
    private async Task RunStagesAsync(bool capture, bool apply, bool kafka, CancellationToken cancellationToken)
    {
        await using var sourceData = capture || (apply && !kafka) ? NpgsqlDataSource.Create(Required(sourceInfo, "source").ToNpgsqlConnectionString()) : null;
        await using var targetConnection = apply ? new NpgsqlConnection(TargetConnectionString(Required(targetInfo, "target"), kafka)) : null;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var stages = new List<Task>();
        var received = 0UL;
        PgOutputCapture? reader = null;
        ChangeApplier? applier = null;
        KafkaAheadGate? gate = null;
        NpgsqlLogSequenceNumber start = default;
        string? offsets = null;

        // Embedded: the source side (slot and publication checks, the replication connection) gets
        // ready while the target side is read below; it waits for the target's position only to
        // start streaming. (A stage from here on: a failure below stops it.)
        var startPosition = new TaskCompletionSource<NpgsqlLogSequenceNumber>(TaskCreationOptions.RunContinuationsAsynchronously);
        Channel<ChangeEvent>? captured = null;
        if (capture && !kafka)
        {
            reader = NewCapture(kafka);
            captured = NewChannel();
            stages.Add(CaptureInto(reader, captured.Writer, startPosition.Task, stop.Token));
        }

        try
        {
            if (apply)
                (start, offsets) = await PrepareTargetAsync(targetConnection!, kafka, cancellationToken).ConfigureAwait(false);
            received = (ulong)start;
            startPosition.TrySetResult(start);
            if (capture && !kafka)
            {
                applier = new ChangeApplier(targetConnection!, sourceData, settings, loggerFactory.CreateLogger<ChangeApplier>(),
                    reader!.Acknowledge, () => Volatile.Read(ref received), _strictUntil);
                await applier.InitializeAsync((ulong)start, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            startPosition.TrySetCanceled(cancellationToken);
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(stages).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw;
        }

        if (capture && kafka)
            reader = NewCapture(kafka);

        if (capture && !kafka)
        {
            stages.Add(applier!.RunAsync(captured!.Reader, stop.Token));
        }
        else
        {
            if (capture)
            {
                var sinkOptions = KafkaSink ?? throw new InvalidOperationException("Kafka producer settings missing");
                var types = await Replicator.Kafka.Debezium.CatalogTypeResolver.LoadAsync(await sourceData!.OpenConnectionAsync(cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
                var sink = new Replicator.Kafka.KafkaChangeSink(sinkOptions, types, loggerFactory.CreateLogger<Replicator.Kafka.KafkaChangeSink>());
                // A first heartbeat, at the slot's confirmed position (everything before it is in Kafka
                // already, or in the snapshot): the applier knows where the source stands at once, and
                // the heartbeat topic exists from the start.
                if (await SourceSlot.ConfirmedAsync(sourceData, settings.Slot, cancellationToken).ConfigureAwait(false) is { } confirmed)
                    await sink.WriteAsync(new Heartbeat(confirmed, DateTimeOffset.UtcNow), cancellationToken).ConfigureAwait(false);

                var channel = NewChannel();
                // The capture half alone does not know the target: the slot's confirmed position decides where it starts.
                stages.Add(CaptureInto(reader!, channel.Writer, apply ? start : default, stop.Token));
                // Both halves in this process: the capture keeps at most a bounded backlog ahead of the
                // applier (the rest waits in the slot), so a catch-up cannot outrun the topics' retention
                // (the development broker keeps only 5 MB per partition) and the two halves share the CPU.
                gate = apply ? new KafkaAheadGate(InProcessMaxAheadEvents) : null;
                stages.Add(ProduceAsync(channel.Reader, sink, reader!, gate, stop.Token));
            }

            if (apply)
            {
                var sourceOptions = KafkaSource ?? throw new InvalidOperationException("Kafka consumer settings missing");
                var tables = (await TableCatalog.LoadAsync(targetConnection!, cancellationToken).ConfigureAwait(false)).ToList();
                var deserializer = new Replicator.Kafka.Debezium.DebeziumDeserializer(Replicator.Kafka.Debezium.DebeziumSourceSettings.Default,
                    (schema, table) => tables.FirstOrDefault(t => t.Schema == schema && t.Name == table));
                var consumer = new Replicator.Kafka.KafkaChangeSource(sourceOptions, deserializer, logger: loggerFactory.CreateLogger<Replicator.Kafka.KafkaChangeSource>())
                {
                    AppliedThrough = start,
                };
                var channel = NewChannel();
                stages.Add(ConsumeAsync(consumer, Replicator.Kafka.KafkaChangeSource.OffsetsFromJson(offsets), channel.Writer, stop.Token));
                applier = new ChangeApplier(targetConnection!, sourceData, settings, loggerFactory.CreateLogger<ChangeApplier>(),
                    lsn =>
                    {
                        gate?.Applied((ulong)lsn);
                        consumer.CommitAdvisory(lsn);
                    }, () => 0, _strictUntil);
                await applier.InitializeAsync((ulong)start, cancellationToken).ConfigureAwait(false);
                stages.Add(applier.RunAsync(channel.Reader, stop.Token));
            }
        }

        if (sourceData is not null && capture)
            stages.Add(WatchSlotAsync(sourceData, v => Volatile.Write(ref received, v), stop.Token));
        health?.Set("replication", ready: true, $"{(kafka ? (capture && apply ? "capture and apply through Kafka" : capture ? "capturing into Kafka" : "applying from Kafka") : "streaming")}, slot {settings.Slot}");

        var first = await Task.WhenAny(stages).ConfigureAwait(false);
        await stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(stages).ConfigureAwait(false);
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
            var failedAt = applier?.LastBegunCommitLsn ?? 0;
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

        if (applier?.Switched == true)
        {
            Switched = true;
            health?.Set("replication", ready: false, "stopped: a cutover switched the application to the target", live: true);
            _logger.PipelineSwitched(settings.Slot);
            return;
        }

        if (!cancellationToken.IsCancellationRequested)
            throw new ChannelClosedException("the replication stream ended");
    }

    /// <summary>With capture and apply through Kafka in one process: row events produced and not yet applied, at most.</summary>
    internal const long InProcessMaxAheadEvents = 20_000;

    private Channel<ChangeEvent> NewChannel() => Channel.CreateBounded<ChangeEvent>(new BoundedChannelOptions(BufferCapacity)
    {
        SingleReader = true,
        SingleWriter = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    /// <summary>Makes the target ready for the applier and reads where it stands (position and, through Kafka, offsets).</summary>
    private async Task<(NpgsqlLogSequenceNumber Start, string? Offsets)> PrepareTargetAsync(NpgsqlConnection target, bool kafka, CancellationToken cancellationToken)
    {
        await target.OpenAsync(cancellationToken).ConfigureAwait(false);
        // The applier writes even where the database is fenced read-only (the old source, written
        // by reverse replication after a cutover): it is the one writer that must go on.
        await TargetState.WriteThroughFenceAsync(target, cancellationToken).ConfigureAwait(false);
        await TargetState.EnsureAsync(target, cancellationToken).ConfigureAwait(false);
        // Reading Kafka, no slot keeps a second applier of the same stream away: the target's lock does.
        if (kafka)
            await TargetState.LockApplierAsync(target, settings.Slot, cancellationToken).ConfigureAwait(false);
        return await ReadPositionAsync(target, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The capture. A heartbeat comes soon after the source goes idle (and only when the stream's
    /// position moved): the slot catches up with the WAL end promptly, and a cutover's drain on the
    /// fenced, idle source completes within it. Through Kafka each one is a record: less often there.
    /// </summary>
    private PgOutputCapture NewCapture(bool kafka) =>
        new(Required(sourceInfo, "source"), settings.Slot, publication, loggerFactory.CreateLogger<PgOutputCapture>(),
            TimeSpan.FromMilliseconds(kafka ? 200 : 25), settings.StreamInProgress, settings.SpoolDirectory);

    private static Task CaptureInto(PgOutputCapture capture, ChannelWriter<ChangeEvent> writer, NpgsqlLogSequenceNumber start, CancellationToken cancellationToken) =>
        CaptureInto(capture, writer, Task.FromResult(start), cancellationToken);

    /// <summary>Runs the capture into <paramref name="writer"/>; it streams from <paramref name="start"/> once that is known.</summary>
    private static Task CaptureInto(PgOutputCapture capture, ChannelWriter<ChangeEvent> writer, Task<NpgsqlLogSequenceNumber> start, CancellationToken cancellationToken) =>
        Task.Run(async () =>
        {
            try
            {
                await capture.RunAsync(writer, start, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                writer.TryComplete();
            }
        }, cancellationToken);

    /// <summary>Produces every event to Kafka and acknowledges the slot as far as Kafka has made the stream durable.</summary>
    private static async Task ProduceAsync(ChannelReader<ChangeEvent> changes, Replicator.Kafka.KafkaChangeSink sink, PgOutputCapture capture, KafkaAheadGate? gate,
        CancellationToken cancellationToken)
    {
        using (sink)
        {
            using var acknowledge = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
            var acker = Task.Run(async () =>
            {
                try
                {
                    while (await acknowledge.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
                    {
                        if (sink.DurableLsn is { } durable)
                            capture.Acknowledge(durable);
                        ReplicatorMetrics.BufferedEvents.Record(sink.InFlight);
                    }
                }
                catch (OperationCanceledException)
                {
                }
            }, cancellationToken);
            try
            {
                long events = 0;
                await foreach (var change in changes.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                {
                    switch (change)
                    {
                        case TransactionBegin when gate is not null:
                            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                            events = 0;
                            break;
                        case TransactionCommit commit:
                            gate?.Produced((ulong)commit.EndLsn, events);
                            break;
                        case RowChange or TruncateChange:
                            events++;
                            break;
                    }

                    await sink.WriteAsync(change, cancellationToken).ConfigureAwait(false);
                }
            }
            finally
            {
                await acker.ConfigureAwait(false);
            }
        }
    }

    /// <summary>Feeds the applier whole transactions in commit order, each followed by the offsets to resume after it, and heartbeats.</summary>
    internal static async Task ConsumeAsync(Replicator.Kafka.KafkaChangeSource consumer, IReadOnlyDictionary<(string Topic, int Partition), long> offsets,
        ChannelWriter<ChangeEvent> writer, CancellationToken cancellationToken)
    {
        using (consumer)
        {
            try
            {
                await foreach (var item in consumer.ReadStreamAsync(offsets, cancellationToken).ConfigureAwait(false))
                {
                    if (item is Replicator.Kafka.Debezium.OrderedHeartbeat heartbeat)
                    {
                        // Every transaction before it has been written above: the applier may count the stream as at its WAL end (lag, verifier cuts, drains).
                        await writer.WriteAsync(heartbeat.Heartbeat, cancellationToken).ConfigureAwait(false);
                        continue;
                    }

                    var transaction = (Replicator.Kafka.Debezium.OrderedTransaction)item;
                    await writer.WriteAsync(transaction.Begin, cancellationToken).ConfigureAwait(false);
                    foreach (var change in transaction.Changes)
                        await writer.WriteAsync(change, cancellationToken).ConfigureAwait(false);
                    await writer.WriteAsync(new BufferPosition(() => Replicator.Kafka.KafkaChangeSource.OffsetsToJson(transaction.ResumeOffsets)), cancellationToken).ConfigureAwait(false);
                    await writer.WriteAsync(transaction.Commit, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The applier applies what was handed on, then fails with this cause: closing the
                // consumer takes a while, and a plainly completed channel would let the applier
                // finish first as if the stream had simply ended (the cause then went unreported).
                writer.TryComplete(e);
                throw;
            }
            finally
            {
                writer.TryComplete();
            }
        }
    }

    private async Task<(NpgsqlLogSequenceNumber Position, string? KafkaOffsets)> ReadPositionAsync(NpgsqlConnection target, CancellationToken cancellationToken)
    {
        var row = await TargetState.ReadPositionRowAsync(target, settings.Slot, cancellationToken).ConfigureAwait(false)
            ?? throw new ReplicationException(ReplicationErrorKind.Permanent,
                $"the target {targetInfo} has no replication position for slot \"{settings.Slot}\": the initial snapshot has not finished. Run 'replicator run' (it snapshots first) or 'replicator snapshot'");
        return (row.CommitLsn, row.KafkaOffsets);
    }

    private static ConnectionInfo Required(ConnectionInfo? connection, string side) =>
        connection ?? throw new InvalidOperationException($"the {side} connection is required for this role");

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

/// <summary>What one process runs.</summary>
public enum PipelineRole
{
    /// <summary>Capture and applier in one process, joined by an in-memory channel.</summary>
    Embedded,

    /// <summary>Capture only, producing to Kafka (its own pod).</summary>
    Capture,

    /// <summary>Applier only, consuming from Kafka (its own pod).</summary>
    Apply,

    /// <summary>Both halves in one process with Kafka between them.</summary>
    KafkaBoth,
}

/// <summary>
/// Back-pressure between the two halves of one process's pipeline through Kafka: the capture waits
/// before a transaction while more than a bound of row events it produced are not yet applied
/// (the applier reports what the target has flushed).
/// </summary>
internal sealed class KafkaAheadGate(long maxAhead)
{
    private readonly object _lock = new();
    private readonly Queue<(ulong EndLsn, long Events)> _produced = new();
    private long _ahead;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (_ahead < maxAhead)
                    return;
                changed = _changed.Task;
            }

            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Produced(ulong endLsn, long events)
    {
        lock (_lock)
        {
            _produced.Enqueue((endLsn, events));
            _ahead += events;
        }
    }

    /// <summary>Everything up to <paramref name="lsn"/> is applied (and flushed) on the target.</summary>
    public void Applied(ulong lsn)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            while (_produced.TryPeek(out var produced) && produced.EndLsn <= lsn)
            {
                _produced.Dequeue();
                _ahead -= produced.Events;
            }

            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }
}
