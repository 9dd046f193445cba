namespace Replicator.Core.Errors;

/// <summary>
/// A failure that stops replication until someone acts: the message names the object and the fix.
/// <see cref="Kind"/> tells the supervisor whether to retry.
/// </summary>
public sealed class ReplicationException : Exception
{
    public ReplicationException(ReplicationErrorKind kind, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
    }

    public ReplicationException()
        : this(ReplicationErrorKind.Permanent, "replication failed")
    {
    }

    public ReplicationException(string message)
        : this(ReplicationErrorKind.Permanent, message)
    {
    }

    public ReplicationException(string message, Exception innerException)
        : this(ReplicationErrorKind.Permanent, message, innerException)
    {
    }

    public ReplicationErrorKind Kind { get; }
}

public enum ReplicationErrorKind
{
    /// <summary>Stop: a person must fix something (permissions, a table without replica identity, slot in use).</summary>
    Permanent,

    /// <summary>The source schema changed in a way the target must follow; wait for the DDL, then resume.</summary>
    Schema,

    /// <summary>Another process streams the slot: wait until it lets go (one reader per slot is what keeps two captures from running at once).</summary>
    SlotInUse,
}
