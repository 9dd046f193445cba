namespace Replicator.Cutover;

/// <summary>
/// The cutover stopped before switching. <see cref="SourceWritable"/> says whether the side being
/// left is writable again (it always should be; false only when lifting the fence failed too, and the
/// message then says how to lift it by hand).
/// </summary>
public sealed class CutoverException : Exception
{
    public CutoverException(string message, bool sourceWritable = true, Exception? inner = null) : base(message, inner) =>
        SourceWritable = sourceWritable;

    public CutoverException() : this("cutover failed")
    {
    }

    public CutoverException(string message) : this(message, true)
    {
    }

    public CutoverException(string message, Exception inner) : this(message, true, inner)
    {
    }

    public bool SourceWritable { get; }

    /// <summary>The report so far (phases done, preconditions), when there is one.</summary>
    public CutoverReport? Report { get; init; }
}
