namespace Replicator.Applier;

/// <summary>Tuning and identity of one applier.</summary>
public sealed record ApplierSettings(string Slot)
{
    /// <summary>Most source transactions in one target transaction.</summary>
    public int MaxBatchTransactions { get; init; } = 2000;

    /// <summary>Most row changes in one target transaction (a single larger source transaction still stays whole).</summary>
    public int MaxBatchChanges { get; init; } = 20000;

    /// <summary>Longest a batch stays open while more transactions keep coming.</summary>
    public TimeSpan MaxBatchDuration { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Pending coalesced rows written out (inside the open transaction) once this many accumulate: bounds memory.</summary>
    public int FlushRows { get; init; } = 5000;

    /// <summary>
    /// A table's plain inserts in one flush reaching this many rows go to the target as one COPY
    /// instead of a multi-row INSERT (cheaper for the server; fewer stay in the pipelined batch,
    /// since a COPY takes a round trip of its own).
    /// </summary>
    public int CopyMinRows { get; init; } = 100;

    /// <summary>The buffer holding at least this many events means the applier is behind (catching up a backlog).</summary>
    public int BehindEvents { get; init; } = 5000;

    /// <summary>While behind, the three batch limits above are multiplied by this (memory stays bounded by <see cref="FlushRows"/>).</summary>
    public int BehindBatchScale { get; init; } = 5;

    /// <summary>Capture asks the source to stream large in-progress transactions (spooled until commit).</summary>
    public bool StreamInProgress { get; init; } = true;

    /// <summary>Where streamed in-progress transactions wait for their commit; null: the system's temporary directory.</summary>
    public string? SpoolDirectory { get; init; }

    /// <summary>Longest the applier waits at a verifier barrier before going on without it.</summary>
    public TimeSpan BarrierTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
