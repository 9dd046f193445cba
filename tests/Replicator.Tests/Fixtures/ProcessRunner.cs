using System.Diagnostics;

namespace Replicator.Tests.Fixtures;

public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    public string Output => Stdout + Stderr;
}

/// <summary>Runs a program to completion with a time limit, capturing both streams.</summary>
public static class ProcessRunner
{
    public static async Task<ProcessResult> RunAsync(string program, IEnumerable<string> args, string? stdin = null,
        IDictionary<string, string?>? environment = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(program, args)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
            start.Environment[key] = value;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
            await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in {timeout ?? TimeSpan.FromMinutes(2)}");
        }

        return new ProcessResult(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>
    /// The CLI the tests start as a process: <c>CLI_UNDER_TEST</c> when set (not a <c>REPLICATOR_*</c> name: those are settings) — scripts/test.sh sets it
    /// to what <c>./replicator</c> built, the native (AOT) executable users run — else this build's
    /// replicator.dll under dotnet (a plain <c>dotnet test</c>).
    /// </summary>
    public static (string Program, string[] Prefix) Cli { get; } =
        Environment.GetEnvironmentVariable("CLI_UNDER_TEST") is { Length: > 0 } exe
            ? (exe, [])
            : ("dotnet", [Path.Combine(AppContext.BaseDirectory, "replicator.dll")]);

    private static readonly List<Process> Started = [];

    static ProcessRunner()
    {
        // A failed test must not leave replicators running against servers that are gone.
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            lock (Started)
            {
                foreach (var process in Started)
                {
                    try
                    {
                        if (!process.HasExited)
                            process.Kill(entireProcessTree: true);
                    }
                    catch (InvalidOperationException)
                    {
                    }
                }
            }
        };
    }

    /// <summary>Starts the replicator CLI in the background; its output goes to <paramref name="log"/>. Killed at the latest when the test run ends.</summary>
    public static Process StartReplicator(IEnumerable<string> args, string log)
    {
        var process = StartReplicatorProcess(args, log);
        lock (Started)
            Started.Add(process);
        return process;
    }

    private static Process StartReplicatorProcess(IEnumerable<string> args, string log)
    {
        var start = new ProcessStartInfo("bash", ["-c", "exec \"$0\" \"$@\" >>\"$LOG\" 2>&1", Cli.Program, .. Cli.Prefix, .. args])
        {
            UseShellExecute = false,
        };
        start.Environment["LOG"] = log;
        return Process.Start(start) ?? throw new InvalidOperationException("could not start replicator");
    }

    /// <summary>Sends SIGTERM (what Kubernetes and systemd send) and waits for the exit code.</summary>
    public static async Task<int> TerminateAsync(Process process, TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            await kill!.WaitForExitAsync();
        using var cts = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cts.Token);
        return process.ExitCode;
    }

    /// <summary>Runs the replicator CLI (the build copied next to the tests) as its own process.</summary>
    public static Task<ProcessResult> ReplicatorAsync(IEnumerable<string> args, IDictionary<string, string?>? environment = null, TimeSpan? timeout = null) =>
        RunAsync(Cli.Program, [.. Cli.Prefix, .. args], environment: environment, timeout: timeout);

    /// <summary>Polls <paramref name="done"/> every 200 ms while <paramref name="process"/> runs, failing with its log if it exits or <paramref name="deadline"/> passes.</summary>
    public static async Task WaitWhileRunningAsync(Process process, string log, DateTime deadline, Func<Task<bool>> done)
    {
        while (!await done())
        {
            Assert.False(process.HasExited, File.ReadAllText(log));
            Assert.True(DateTime.UtcNow < deadline, File.ReadAllText(log));
            await Task.Delay(200);
        }
    }
}
