using Replicator.Tests.Fixtures;

namespace Replicator.Tests;

public class CliTests
{
    [Fact]
    public async Task Help_lists_every_subcommand_of_the_design()
    {
        var result = await ProcessRunner.ReplicatorAsync(["--help"]);
        Assert.Equal(0, result.ExitCode);
        foreach (var command in new[] { "snapshot", "run", "capture", "apply", "verify", "cutover", "rollback", "status", "preflight", "config", "dev-kafka" })
            Assert.Matches($@"(?m)^\s+{command}\s", result.Stdout);
    }

    [Fact]
    public async Task Config_show_prints_the_effective_configuration_with_secrets_masked()
    {
        var result = await ProcessRunner.ReplicatorAsync(
            ["config", "show", "--source", "postgres://app:TopSecret1@db.internal:5432/shop?sslmode=require", "--set", "Snapshot:Jobs=6"],
            new Dictionary<string, string?> { ["REPLICATOR_TARGET__CONNECTIONSTRING"] = "host=x.postgres.database.azure.com user=admin dbname=shop", ["REPLICATOR_TARGET__PASSWORD"] = "TopSecret2" });
        Assert.Equal(0, result.ExitCode);
        Assert.DoesNotContain("TopSecret", result.Output, StringComparison.Ordinal);
        Assert.Contains("\"ConnectionString\": \"postgres://app:*****@db.internal:5432/shop?sslmode=require\"", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"Password\": \"*****\"", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"Jobs\": 6", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bad_configuration_exits_2_with_the_key_and_no_secret()
    {
        var result = await ProcessRunner.ReplicatorAsync(["config", "show", "--source", "host=h password=Hidden1 sslmode=maybe"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("configuration error: Source:ConnectionString (sslmode): 'maybe' is not an sslmode", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Hidden1", result.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("run")]
    [InlineData("capture")]
    public async Task Publishing_the_snapshot_anywhere_but_run_with_the_kafka_buffer_exits_2_naming_the_setting(string command)
    {
        string[] args = command == "run"
            ? ["run", "--source", "postgres://u@127.0.0.1:1/db", "--target", "postgres://u@127.0.0.1:1/db2", "--set", "Buffer:Kafka:PublishSnapshot=true"]
            : ["capture", "--source", "postgres://u@127.0.0.1:1/db", "--kafka-bootstrap", "127.0.0.1:1", "--set", "Buffer:Kafka:PublishSnapshot=true"];
        var result = await ProcessRunner.ReplicatorAsync(args);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("Buffer:Kafka:PublishSnapshot", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("'replicator run --buffer kafka'", result.Stderr, StringComparison.Ordinal);
    }
}
