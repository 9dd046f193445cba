using System.CommandLine;
using Replicator.Kafka;

namespace Replicator.Cli.Commands;

/// <summary><c>replicator dev-kafka</c>: a throwaway Kafka-protocol broker for trying the Kafka buffer.</summary>
public static class DevKafkaCommand
{
    public static Command Create()
    {
        var brokers = new Option<int>("--brokers") { Description = "Number of mock brokers.", DefaultValueFactory = _ => 3 };
        var command = new Command("dev-kafka", "Start a local Kafka-protocol broker (librdkafka's in-memory mock cluster) for DEVELOPMENT AND TESTS ONLY; prints its bootstrap address and runs until Ctrl-C.");
        command.Options.Add(brokers);
        command.SetAction(async (parse, cancellationToken) =>
        {
            using var cluster = DevKafkaCluster.Start(parse.GetValue(brokers));
            Console.Error.WriteLine("DEVELOPMENT ONLY: in-memory mock Kafka cluster (librdkafka); it keeps at most 5 MB per partition (older records are deleted: an applier that falls further behind stops with an error), and all data is lost when this process stops.");
            Console.Out.WriteLine(cluster.BootstrapServers);
            await Console.Out.FlushAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }

            return ExitCodes.Ok;
        });
        return command;
    }
}
