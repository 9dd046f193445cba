using System.Globalization;
using Replicator.Bench;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Cutover;

/// <summary>The whole round trip with the real CLI: run → verify → cutover --reverse → writes on the target → rollback.</summary>
public class RollbackTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task Cutover_with_reverse_then_rollback_returns_to_the_source_with_every_write_made_on_either_side()
    {
        await using var db = await fixture.CreateDatabasesAsync("rollback");
        await using var setup = await Fixtures.Replication.PrepareAsync(db, CutoverTests.Schema);
        var log = Path.Combine(Path.GetTempPath(), $"replicator-{db.Name}.log");
        var endpoint = Path.Combine(Path.GetTempPath(), $"endpoint-{db.Name}");
        await File.WriteAllTextAsync(endpoint, db.SourceUri);
        string[] connections = ["--source", db.SourceUri, "--target", db.TargetUri, "--metrics-listen", "127.0.0.1:0"];
        var hook = $"printf '%s' \"$REPLICATOR_NEW_ENDPOINT\" > '{endpoint}.new' && mv '{endpoint}.new' '{endpoint}'; echo switched to $REPLICATOR_NEW_PORT";
        var reverseSlot = "rev_" + setup.Slot;
        var sourcePort = db.SourceCluster.Port.ToString(CultureInfo.InvariantCulture);
        var targetPort = db.TargetCluster.Port.ToString(CultureInfo.InvariantCulture);

        using var run = ProcessRunner.StartReplicator(["run", .. connections, "--slot", setup.Slot], log);
        await using var writer = new AppWriter(endpoint);
        writer.Start();
        await writer.WaitForWritesAsync(200, sourcePort, TimeSpan.FromSeconds(60));
        await Fixtures.Replication.Attach(db, setup.Slot).CatchUpAsync();
        var verify = await ProcessRunner.ReplicatorAsync(["verify", .. connections, "--slot", setup.Slot]);
        Assert.True(verify.ExitCode == 0, verify.Output);

        // Cut over with reverse replication: this process stays, replicating target → source.
        using var cutover = ProcessRunner.StartReplicator(["cutover", .. connections, "--slot", setup.Slot, "--reverse", "--reverse-slot", reverseSlot, "--switch-command", hook], log);
        await WaitForLogAsync(log, "SWITCHED. Write outage:", cutover);
        Assert.Equal(0, await WaitForExitAsync(run)); // the forward run stops by itself after the switch
        await writer.WaitForWritesAsync(300, targetPort, TimeSpan.FromSeconds(60));
        var status = await ProcessRunner.ReplicatorAsync(["status", .. connections, "--slot", setup.Slot]);
        Assert.True(status.ExitCode == 0, status.Output);
        Assert.Matches(@"last verification\s+clean, .* ago \(pass #1\)", status.Stdout);
        Assert.Matches(@"last cutover\s+cutover switched at .*, write outage \d+ ms", status.Stdout);
        Assert.Contains("dropped the slot", status.Stdout, StringComparison.Ordinal);

        // Roll back: the application returns to the source with what it wrote on the target.
        var rollback = await ProcessRunner.ReplicatorAsync(["rollback", .. connections, "--reverse-slot", reverseSlot, "--switch-command", hook]);
        Assert.True(rollback.ExitCode == 0, rollback.Output + File.ReadAllText(log));
        Assert.Contains("replicator rollback:", rollback.Stdout, StringComparison.Ordinal);
        Assert.Contains("SWITCHED", rollback.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, await WaitForExitAsync(cutover)); // reverse replication stops by itself after the rollback
        await writer.WaitForWritesAsync(200, sourcePort, TimeSpan.FromSeconds(60));
        await writer.DisposeAsync();

        Assert.Equal(0, writer.UniqueViolations);
        Assert.Contains(writer.Acknowledged.Values, v => v.Endpoint.Contains(targetPort, StringComparison.Ordinal));
        await AssertEveryAcknowledgedWriteOnAsync(writer, db.SourceConnectionString);
        // The target is the fenced side now; the source takes writes.
        Assert.Equal("on", await Sql.ScalarAsync<string>(db.TargetConnectionString, "SELECT current_setting('default_transaction_read_only')"));
        Assert.Equal("off", await Sql.ScalarAsync<string>(db.SourceConnectionString, "SELECT current_setting('default_transaction_read_only')"));
        File.Delete(endpoint);
        File.Delete(log);
    }

    private static async Task AssertEveryAcknowledgedWriteOnAsync(AppWriter writer, string connectionString)
    {
        var rows = await Sql.RowsAsync(connectionString, "SELECT n::text FROM orders");
        Assert.Equal(rows.Count, rows.Distinct().Count());
        var missing = writer.Acknowledged.Keys.Select(n => n.ToString(CultureInfo.InvariantCulture)).Except(rows).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} acknowledged write(s) missing on the source, e.g. n = {string.Join(", ", missing.Take(10))}");
        var events = await Sql.RowsAsync(connectionString, "SELECT n::text FROM order_event");
        Assert.Equal(events.Count, events.Distinct().Count());
    }

    private static async Task WaitForLogAsync(string log, string text, System.Diagnostics.Process process)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!(File.Exists(log) && File.ReadAllText(log).Contains(text, StringComparison.Ordinal)))
        {
            Assert.False(process.HasExited, $"replicator exited early:\n{File.ReadAllText(log)}");
            Assert.True(DateTime.UtcNow < deadline, $"'{text}' did not appear:\n{File.ReadAllText(log)}");
            await Task.Delay(50);
        }
    }

    private static async Task<int> WaitForExitAsync(System.Diagnostics.Process process)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return process.ExitCode;
    }
}
