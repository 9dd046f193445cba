using System.Globalization;
using Replicator.Cutover;

namespace Replicator.Tests.Cutover;

public class ShellHookTests
{
    /// <summary>True while <paramref name="pid"/> runs (a zombie left for a reaper does not count).</summary>
    private static bool Running(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] != 'Z';
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
    }

    [Fact]
    public async Task A_hook_cancelled_by_the_caller_is_killed_with_its_children()
    {
        var pids = Path.Combine(Path.GetTempPath(), $"hook-{Guid.NewGuid():N}");
        // The shell and the command it waits for, as a switch script that hangs would be.
        var command = $"sleep 300 & echo $$ $! > '{pids}.new'; mv '{pids}.new' '{pids}'; wait";
        using var cancel = new CancellationTokenSource();
        var hook = ShellHook.RunAsync("the switch hook (--switch-command)", command, new Dictionary<string, string>(), TimeSpan.FromMinutes(5), cancel.Token);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!File.Exists(pids))
        {
            Assert.True(DateTime.UtcNow < deadline, "the hook did not start");
            await Task.Delay(10);
        }

        var started = (await File.ReadAllTextAsync(pids)).Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToList();
        File.Delete(pids);
        Assert.All(started, pid => Assert.True(Running(pid)));

        await cancel.CancelAsync(); // Ctrl-C
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => hook);
        // Killed by the time the caller hears of the cancellation (its undo, lifting the fence, comes
        // next); a process needs a moment to die of SIGKILL.
        deadline = DateTime.UtcNow.AddSeconds(5);
        while (started.Any(Running) && DateTime.UtcNow < deadline)
            await Task.Delay(10);
        Assert.All(started, pid => Assert.False(Running(pid), $"pid {pid} still runs"));
    }
}
