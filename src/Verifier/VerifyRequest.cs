namespace Replicator.Verifier;

/// <summary>What one verifier pass does. Defaults suit a production database; tests shrink the chunks.</summary>
public sealed record VerifyRequest
{
    /// <summary>The replication slot whose applier the barrier talks to (its <c>replicator.position</c> row).</summary>
    public string SlotName { get; init; } = "replicator";

    /// <summary>
    /// Use the barrier protocol when a replication position exists for <see cref="SlotName"/>. Off:
    /// always take a plain target snapshot (correct only when nothing applies changes meanwhile).
    /// </summary>
    public bool UseBarrier { get; init; } = true;

    /// <summary>How long to wait for the applier to reach the barrier before giving up (exit 2).</summary>
    public TimeSpan BarrierTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Parallel workers; each holds one source and one target connection inside the cut.</summary>
    public int Jobs { get; init; } = 2;

    /// <summary>
    /// Rows per unit of work: a physical block slice of a table with a single-column key, or a key
    /// range (bounds from sampled key quantiles) of a table with a composite key.
    /// </summary>
    public long ChunkRows { get; init; } = 250_000;

    /// <summary>
    /// Rows per bucket of a single-column key (a differing bucket is compared row by row); a
    /// differing composite-key range with at most this many rows on either side is compared row by row.
    /// </summary>
    public int BisectRows { get; init; } = 2_000;

    /// <summary>Differences listed (with their columns) per table; more are counted, not listed.</summary>
    public int MaxListedDifferences { get; init; } = 1_000;

    /// <summary>Only these tables (<c>schema.table</c>, unquoted); empty means every table.</summary>
    public IReadOnlyList<string> Tables { get; init; } = [];

    /// <summary>Compare tables, columns, indexes, constraints and sequences too.</summary>
    public bool SchemaCheck { get; init; } = true;

    /// <summary>Recopy differing rows from the source inside a new consistent cut, then verify them again.</summary>
    public bool Repair { get; init; }

    /// <summary>
    /// Record a full pass (no <see cref="Tables"/> filter) in <c>replicator.verification</c> on the
    /// target, with per-table change fingerprints, when the target holds replication state.
    /// </summary>
    public bool Record { get; init; } = true;

    /// <summary>
    /// Both sides are known to be still (the cutover has fenced the source and holds the applier):
    /// the snapshots are taken as they are, with no temporary slot and no barrier.
    /// </summary>
    public bool Quiescent { get; init; }

    internal void Validate()
    {
        if (Jobs < 1)
            throw new VerifyException($"jobs must be at least 1 (got {Jobs}); set --jobs to 1 or more");
        if (ChunkRows < 1)
            throw new VerifyException($"chunk rows must be at least 1 (got {ChunkRows}); set --chunk-rows to 1 or more");
        if (BisectRows < 1)
            throw new VerifyException($"bisect rows must be at least 1 (got {BisectRows})");
        if (BarrierTimeout <= TimeSpan.Zero)
            throw new VerifyException($"barrier timeout must be positive (got {BarrierTimeout.TotalSeconds} s); set --barrier-timeout");
    }
}

/// <summary>A verifier pass could not run (bad request, missing table, applier not reaching the barrier): exit 2.</summary>
public sealed class VerifyException : Exception
{
    public VerifyException(string message) : base(message)
    {
    }

    public VerifyException(string message, Exception inner) : base(message, inner)
    {
    }

    public VerifyException()
    {
    }
}
