namespace Replicator.Cutover;

/// <summary>What one cutover (or rollback) does. Defaults suit a production switch.</summary>
public sealed record CutoverOptions
{
    /// <summary>The slot whose applier replays from the side being left to the side being switched to.</summary>
    public string Slot { get; init; } = "replicator";

    /// <summary>The publication that slot streams.</summary>
    public string Publication { get; init; } = "replicator";

    /// <summary>Check and report the preconditions, then stop without changing anything.</summary>
    public bool DryRun { get; init; }

    /// <summary>Most WAL (bytes) the slot may be behind the source's current position when the cutover starts.</summary>
    public long MaxLagBytes { get; init; } = 16L * 1024 * 1024;

    /// <summary>How old the last clean verifier pass may be; null: not checked.</summary>
    public TimeSpan? MaxVerifyAge { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Source transactions open longer than this fail the precondition (they would be cut off by the fence).</summary>
    public TimeSpan MaxTransactionAge { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Roles whose sessions the fence leaves alone (their later writes are not carried over).</summary>
    public IReadOnlyList<string> AllowRoles { get; init; } = [];

    /// <summary>How long transactions already running when the fence goes up may take to finish before their sessions are ended.</summary>
    public TimeSpan FenceGrace { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Shell command that fences writes instead of the database-level fence (e.g. a PgBouncer PAUSE).</summary>
    public string? FenceCommand { get; init; }

    /// <summary>Shell command that lifts <see cref="FenceCommand"/>'s fence when the cutover aborts (e.g. PgBouncer RESUME).</summary>
    public string? UnfenceCommand { get; init; }

    /// <summary>How long to wait for the applier to apply everything up to the fence.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Final verification before the switch.</summary>
    public FinalVerification FinalVerify { get; init; } = FinalVerification.Changed;

    /// <summary>A database at most this many rows (estimated) is verified whole at the switch.</summary>
    public long FullVerifyRows { get; init; } = 100_000;

    /// <summary>Parallel workers of the final verification.</summary>
    public int VerifyJobs { get; init; } = 2;

    /// <summary>Shell command run with the new endpoint in its environment (REPLICATOR_NEW_*); non-zero exit aborts.</summary>
    public string? SwitchCommand { get; init; }

    /// <summary>URL that receives an HTTP POST with the new endpoint as JSON; a non-2xx answer aborts.</summary>
    public Uri? SwitchUrl { get; init; }

    /// <summary>Time limit for each hook command or request.</summary>
    public TimeSpan HookTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Prepare replication back (target → source) before the target takes writes, so a rollback loses nothing.</summary>
    public bool Reverse { get; init; }

    /// <summary>Slot (on the target) and publication names for the reverse direction.</summary>
    public string ReverseSlot { get; init; } = "replicator_reverse";

    /// <summary>Keep the forward slot on the source after the switch (by default it is dropped so the source does not keep WAL for it).</summary>
    public bool KeepSlot { get; init; }
}

/// <summary>What the cutover verifies while writes are fenced.</summary>
public enum FinalVerification
{
    /// <summary>Tables that changed since the last clean pass (all of them when the database is small).</summary>
    Changed,

    /// <summary>Every table.</summary>
    Full,

    /// <summary>Nothing (the outage is shorter; the last clean pass is all the evidence).</summary>
    None,
}
