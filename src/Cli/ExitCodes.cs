namespace Replicator.Cli;

/// <summary>Process exit codes, the same for every subcommand.</summary>
public static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The job ran and found a problem (differences, a failed check).</summary>
    public const int Failed = 1;

    /// <summary>Bad configuration, unreachable server, or another error that stopped the job.</summary>
    public const int Error = 2;

    /// <summary>Stopped by Ctrl-C or SIGTERM before the job finished (nothing lost; rerun resumes).</summary>
    public const int Interrupted = 130;
}
