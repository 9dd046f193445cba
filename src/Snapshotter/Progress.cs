using System.Collections.Concurrent;
using Replicator.Core.Catalog;

namespace Replicator.Snapshotter;

/// <summary>
/// Receives snapshot progress. Called from several copy workers at once: implementations must be
/// thread-safe and quick (they run on the copy path).
/// </summary>
public interface ISnapshotProgress
{
    /// <summary>A new phase began: "schema", "copy", "sequences", "counts", "post-data", "analyze", "done".</summary>
    void Phase(string phase);

    /// <summary>The copy plan: per table its chunk count, chunks already done, and estimated rows and bytes.</summary>
    void Planned(IReadOnlyList<TablePlan> tables);

    /// <summary>More rows and bytes of <paramref name="table"/> were copied.</summary>
    void Copied(TableName table, long rows, long bytes);

    /// <summary>A chunk of <paramref name="table"/> was committed on the target.</summary>
    void ChunkDone(TableName table);

    /// <summary>A post-data entry (index, constraint, …) was built.</summary>
    void PostDataBuilt(string entry, int done, int total);
}

public sealed record TablePlan(TableName Table, int Chunks, int ChunksDone, long EstimatedRows, long EstimatedBytes);

/// <summary>
/// Thread-safe running totals of a snapshot, for a live display (the CLI polls <see cref="Read"/>)
/// and for periodic log lines when no terminal is attached.
/// </summary>
public sealed class SnapshotProgressTracker : ISnapshotProgress
{
    private readonly ConcurrentDictionary<TableName, TableProgress> _tables = new();
    private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
    private volatile string _phase = "preflight";
    private int _postDone;
    private int _postTotal;

    public string CurrentPhase => _phase;

    public TimeSpan Elapsed => DateTimeOffset.UtcNow - _started;

    public void Phase(string phase) => _phase = phase;

    public void Planned(IReadOnlyList<TablePlan> tables)
    {
        foreach (var t in tables)
            _tables[t.Table] = new TableProgress(t);
    }

    public void Copied(TableName table, long rows, long bytes)
    {
        if (_tables.TryGetValue(table, out var p))
        {
            Interlocked.Add(ref p.Rows, rows);
            Interlocked.Add(ref p.Bytes, bytes);
        }
    }

    public void ChunkDone(TableName table)
    {
        if (_tables.TryGetValue(table, out var p))
            Interlocked.Increment(ref p.ChunksDone);
    }

    public void PostDataBuilt(string entry, int done, int total)
    {
        _postDone = done;
        _postTotal = total;
    }

    /// <summary>A consistent-enough copy of the totals (each number is read atomically).</summary>
    public ProgressSnapshot Read()
    {
        var tables = _tables.Values.Select(p => new TableProgressView(p.Plan.Table, Interlocked.Read(ref p.Rows), Interlocked.Read(ref p.Bytes),
            Volatile.Read(ref p.ChunksDone), p.Plan.Chunks, p.Plan.EstimatedRows, p.Plan.EstimatedBytes)).OrderBy(t => t.Table.ToString(), StringComparer.Ordinal).ToList();
        return new ProgressSnapshot(_phase, Elapsed, tables, _postDone, _postTotal);
    }

    private sealed class TableProgress(TablePlan plan)
    {
        public readonly TablePlan Plan = plan;
        public long Rows;
        public long Bytes;
        public int ChunksDone = plan.ChunksDone;
    }
}

public sealed record TableProgressView(TableName Table, long Rows, long Bytes, int ChunksDone, int Chunks, long EstimatedRows, long EstimatedBytes)
{
    public bool Done => ChunksDone >= Chunks;
}

public sealed record ProgressSnapshot(string Phase, TimeSpan Elapsed, IReadOnlyList<TableProgressView> Tables, int PostDataDone, int PostDataTotal)
{
    public long Rows => Tables.Sum(t => t.Rows);

    public long Bytes => Tables.Sum(t => t.Bytes);

    public int ChunksDone => Tables.Sum(t => t.ChunksDone);

    public int Chunks => Tables.Sum(t => t.Chunks);

    public int TablesDone => Tables.Count(t => t.Done);

    /// <summary>Estimated bytes still to copy (from the planner's estimates, never below zero).</summary>
    public long RemainingBytes => Tables.Where(t => !t.Done).Sum(t => Math.Max(0, t.EstimatedBytes - t.Bytes));

    public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? Bytes / Elapsed.TotalSeconds : 0;

    /// <summary>Time left for the copy at the current rate; null before there is a rate.</summary>
    public TimeSpan? Eta => BytesPerSecond > 0 ? TimeSpan.FromSeconds(RemainingBytes / BytesPerSecond) : null;
}

/// <summary>Forwards every call to several receivers (the runner's own tracker and the caller's).</summary>
internal sealed class ProgressFanOut(IReadOnlyList<ISnapshotProgress> receivers) : ISnapshotProgress
{
    public void Phase(string phase)
    {
        foreach (var r in receivers)
            r.Phase(phase);
    }

    public void Planned(IReadOnlyList<TablePlan> tables)
    {
        foreach (var r in receivers)
            r.Planned(tables);
    }

    public void Copied(TableName table, long rows, long bytes)
    {
        foreach (var r in receivers)
            r.Copied(table, rows, bytes);
    }

    public void ChunkDone(TableName table)
    {
        foreach (var r in receivers)
            r.ChunkDone(table);
    }

    public void PostDataBuilt(string entry, int done, int total)
    {
        foreach (var r in receivers)
            r.PostDataBuilt(entry, done, total);
    }
}
