using System.CommandLine;
using Replicator.Applier;
using Replicator.Core.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using Replicator.Core.State;
using Replicator.Kafka;
using Replicator.Snapshotter;

namespace Replicator.Cli.Commands;

/// <summary>
/// <c>replicator run</c> (snapshot if not done yet, then replicate until stopped), and its two
/// halves for separate pods with Kafka between them: <c>replicator capture</c> and <c>replicator apply</c>.
/// </summary>
public static class RunCommand
{
    public static Command Create(GlobalOptions globals) => Build(globals, "run", PipelineRole.Embedded,
        "Replicate continuously from source to target until Ctrl-C or SIGTERM; the initial snapshot runs first when it has not finished. " +
        "Stopping is safe at any moment: nothing is acknowledged to the slot before it is durable downstream, and the next run resumes from the target's position. " +
        "With --buffer kafka the changes travel through Kafka as Debezium events.");

    public static Command CreateCapture(GlobalOptions globals) => Build(globals, "capture", PipelineRole.Capture,
        "Read the source's logical replication stream into Kafka as Debezium events (one pod; 'replicator apply' is the other half). " +
        "The slot is acknowledged only as far as Kafka has acknowledged every event (acks=all).");

    public static Command CreateApply(GlobalOptions globals) => Build(globals, "apply", PipelineRole.Apply,
        "Apply change events from Kafka to the target in source commit order (one pod; 'replicator capture' is the other half). " +
        "The consumed offsets are stored on the target in the same transaction as the changes.");

    private static Command Build(GlobalOptions globals, string name, PipelineRole role, string description)
    {
        var command = new Command(name, description);
        var flags = new List<Option>
        {
            globals.Flag("--kafka-bootstrap", "Buffer:Kafka:Bootstrap", "Kafka bootstrap servers, host:port[,host:port].", recursive: false),
            globals.Flag("--topic-prefix", "Buffer:Kafka:TopicPrefix", "Topic prefix (Debezium's topic.prefix; default replicator).", recursive: false),
        };
        Option<string?>? verifyInterval = null;
        if (role == PipelineRole.Embedded)
        {
            flags.Insert(0, globals.Flag("--buffer", "Buffer:Kind", "embedded (default) or kafka.", recursive: false));
            verifyInterval = new Option<string?>("--verify-interval") { Description = "Also run the verifier beside replication, a pass every INTERVAL (e.g. 30m); off by default." };
            flags.Add(verifyInterval);
        }
        foreach (var flag in flags)
            command.Options.Add(flag);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            var kafka = role != PipelineRole.Embedded || options.Buffer.Kind == "kafka";
            if (kafka && string.IsNullOrWhiteSpace(options.Buffer.Kafka.Bootstrap))
                throw new ConfigurationException("Buffer:Kafka:Bootstrap", $"is required for 'replicator {name}' (--kafka-bootstrap host:port; 'replicator dev-kafka' starts a local one for trying)");
            if (options.Buffer.Kafka.PublishSnapshot && !(role == PipelineRole.Embedded && kafka))
                throw new ConfigurationException("Buffer:Kafka:PublishSnapshot", $"is done by 'replicator run --buffer kafka' (one process, so that no streamed change reaches Kafka before the snapshot's rows); 'replicator {name}'{(kafka ? "" : " with the embedded buffer")} cannot publish the snapshot");
            var source = role == PipelineRole.Apply ? null : ConfigLoader.ResolveSource(options);
            var target = role == PipelineRole.Capture ? null : ConfigLoader.ResolveTarget(options);
            // Whether the snapshot is done is asked while the host starts (both take a while at start-up).
            var snapshotDone = role == PipelineRole.Embedded ? SnapshotDoneAsync(options, target!, kafka, cancellationToken) : null;
            return await CommandHost.RunAsync(options, monitoring: true, async (host, ct) =>
            {
                if (snapshotDone is not null && await SnapshotFirstAsync("run", options, source!, target!, host, ct, snapshotDone).ConfigureAwait(false) is { } failed)
                    return failed;
                if (options.Buffer.Kafka.PublishSnapshot)
                {
                    await using var connection = new NpgsqlConnection(target!.ToNpgsqlConnectionString());
                    await connection.OpenAsync(ct).ConfigureAwait(false);
                    // Rows are read as text, printed by this session: its settings are fixed like the capture's.
                    await using var sourceConnection = new NpgsqlConnection(source!.ToCanonicalTextConnectionString());
                    await sourceConnection.OpenAsync(ct).ConfigureAwait(false);
                    await SnapshotEvents.PublishAsync(connection, sourceConnection, options.SlotName, options.PublicationName, KafkaBufferOptions.Sink(options, source.Database),
                        host.Loggers.CreateLogger("Replicator.SnapshotEvents"), ct).ConfigureAwait(false);
                }

                var pipeline = new ReplicationPipeline(source, target, ApplierSettingsFrom(options), options.PublicationName, host.Loggers, host.Health)
                {
                    Role = role == PipelineRole.Embedded && kafka ? PipelineRole.KafkaBoth : role,
                    KafkaSink = kafka && role != PipelineRole.Apply ? KafkaBufferOptions.Sink(options, source!.Database) : null,
                    KafkaSource = kafka && role != PipelineRole.Capture ? KafkaBufferOptions.Source(options) : null,
                };
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var verifier = verifyInterval is not null && parse.GetValue(verifyInterval) is { } every
                    ? VerifyCommand.RunContinuouslyAsync(
                        new Replicator.Verifier.ContinuousVerifier(new Replicator.Verifier.VerifyRequest { SlotName = options.SlotName, SchemaCheck = false },
                            source!, target!, Durations.Parse(every, "--verify-interval"), host.Loggers), host, stop.Token)
                    : Task.CompletedTask;
                try
                {
                    await pipeline.RunAsync(ct).ConfigureAwait(false);
                }
                finally
                {
                    await stop.CancelAsync().ConfigureAwait(false);
                    await verifier.ConfigureAwait(false);
                }

                return ExitCodes.Ok;
            }, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>
    /// The first phase of <c>run</c>: the initial copy, unless the target already holds the
    /// position that a finished snapshot writes. Returns an exit code when the snapshot failed.
    /// </summary>
    /// <param name="snapshotDone">The answer of <see cref="SnapshotDoneAsync"/> when it was asked already.</param>
    internal static async Task<int?> SnapshotFirstAsync(string command, ReplicatorOptions options, ConnectionInfo source, ConnectionInfo target, CommandHost host, CancellationToken cancellationToken,
        Task<bool>? snapshotDone = null)
    {
        if (await (snapshotDone ?? SnapshotDoneAsync(options, target, kafka: false, cancellationToken)).ConfigureAwait(false))
            return null;

        host.Health.Set("replication", ready: false, "initial snapshot");
        host.Loggers.CreateLogger("Replicator.Cli").LogInformation("No replication position on the target for slot {Slot}: taking the initial snapshot first", options.SlotName);
        var code = await SnapshotCommand.RunReportedAsync(command, "Replication was not started.",
            () => SnapshotRunner.RunAsync(options, source, target, host.Loggers, null, cancellationToken)).ConfigureAwait(false);
        return code == ExitCodes.Ok ? null : code;
    }

    /// <summary>
    /// Whether the target holds the position a finished snapshot writes. Asked with the applier's
    /// session settings, so that the session waits in the pool for the applier (embedded buffer).
    /// </summary>
    internal static async Task<bool> SnapshotDoneAsync(ReplicatorOptions options, ConnectionInfo target, bool kafka, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(ReplicationPipeline.TargetConnectionString(target, kafka));
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await TargetState.ReadPositionAsync(connection, options.SlotName, cancellationToken).ConfigureAwait(false) is not null;
    }

    public static ApplierSettings ApplierSettingsFrom(ReplicatorOptions options) => ApplierSettingsFrom(options, options.SlotName);

    /// <summary>The configured apply tuning, for the applier of <paramref name="slot"/>.</summary>
    public static ApplierSettings ApplierSettingsFrom(ReplicatorOptions options, string slot) => new(slot)
    {
        MaxBatchTransactions = options.Apply.MaxBatchTransactions,
        MaxBatchChanges = options.Apply.MaxBatchChanges,
        MaxBatchDuration = TimeSpan.FromMilliseconds(options.Apply.MaxBatchMilliseconds),
        StreamInProgress = options.Capture.StreamInProgress,
        SpoolDirectory = options.Capture.SpoolDirectory,
    };
}
