namespace Replicator.Core.Configuration;

/// <summary>
/// The effective configuration. Bound from (lowest first) built-in defaults, the JSON config file,
/// environment variables prefixed <c>REPLICATOR_</c> (<c>REPLICATOR_Source__ConnectionString</c>),
/// and command-line flags.
/// </summary>
public sealed class ReplicatorOptions
{
    public EndpointOptions Source { get; set; } = new();

    public EndpointOptions Target { get; set; } = new();

    /// <summary>Logical replication slot on the source.</summary>
    public string SlotName { get; set; } = "replicator";

    /// <summary>Publication on the source (created by Replicator unless it exists).</summary>
    public string PublicationName { get; set; } = "replicator";

    public SnapshotOptions Snapshot { get; set; } = new();

    public ApplyOptions Apply { get; set; } = new();

    public CaptureOptions Capture { get; set; } = new();

    public BufferOptions Buffer { get; set; } = new();

    public MetricsOptions Metrics { get; set; } = new();

    public LoggingOptions Logging { get; set; } = new();
}

public sealed class EndpointOptions
{
    /// <summary>libpq URI or keyword/value string.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>Password, when it is not in the connection string (prefer the environment or a file).</summary>
    public string? Password { get; set; }

    /// <summary>A file holding the password (e.g. a mounted Kubernetes Secret); trailing newline ignored.</summary>
    public string? PasswordFile { get; set; }
}

public sealed class SnapshotOptions
{
    /// <summary>Parallel COPY workers (tables and ranges of one table at once).</summary>
    public int Jobs { get; set; } = 4;

    /// <summary>Rows per range when a large table is split (integer keys) — roughly, from statistics; a table with more rows is split.</summary>
    public long ChunkRows { get; set; } = 10_000_000;

    /// <summary>Copy owners and grants (off by default: managed targets have no superuser).</summary>
    public bool CopyOwnership { get; set; }

    /// <summary>
    /// ANALYZE the copied tables at the end: freshly loaded tables have no planner statistics until
    /// autovacuum reaches them, and autovacuum never analyzes a partitioned table itself.
    /// </summary>
    public bool Analyze { get; set; } = true;

    /// <summary>
    /// Build every foreign key after the data, each validated by a scan of its table on the target
    /// (pg_restore's way). Off (default): a validated foreign key to a small table is created while
    /// the tables are empty and the snapshot's rows go in without per-row checks, when the target
    /// role may set session_replication_role; the scan would only confirm what the source's
    /// constraint already guarantees for one consistent snapshot.
    /// </summary>
    public bool ValidateForeignKeys { get; set; }
}

public sealed class CaptureOptions
{
    /// <summary>
    /// Ask a PostgreSQL 14+ source to stream transactions larger than its logical_decoding_work_mem
    /// while they are in progress; they wait in <see cref="SpoolDirectory"/> until they commit. Off:
    /// the source spills them to its own disk and sends them at commit.
    /// </summary>
    public bool StreamInProgress { get; set; } = true;

    /// <summary>Where streamed in-progress transactions wait for their commit (about their WAL size on disk); default: the system's temporary directory.</summary>
    public string? SpoolDirectory { get; set; }
}

public sealed class ApplyOptions
{
    /// <summary>Most source transactions grouped into one target transaction.</summary>
    public int MaxBatchTransactions { get; set; } = 2000;

    /// <summary>Most changes (rows) in one target transaction.</summary>
    public int MaxBatchChanges { get; set; } = 20000;

    /// <summary>Longest time a batch stays open before it is committed.</summary>
    public int MaxBatchMilliseconds { get; set; } = 200;
}

public sealed class BufferOptions
{
    /// <summary><c>embedded</c> (in process) or <c>kafka</c>.</summary>
    public string Kind { get; set; } = "embedded";

    public KafkaOptions Kafka { get; set; } = new();
}

public sealed class KafkaOptions
{
    /// <summary>Kafka bootstrap servers, <c>host:port[,host:port]</c>.</summary>
    public string? Bootstrap { get; set; }

    /// <summary>Topic prefix (Debezium's <c>topic.prefix</c>).</summary>
    public string TopicPrefix { get; set; } = "replicator";

    /// <summary>SASL password or token, when the cluster needs one.</summary>
    public string? SaslPassword { get; set; }

    public string? SaslUsername { get; set; }

    /// <summary>
    /// librdkafka properties for the producer and the consumer, applied after everything else (they
    /// win), e.g. <c>sasl.mechanism</c> = <c>SCRAM-SHA-512</c> (Strimzi), <c>security.protocol</c>,
    /// <c>ssl.ca.location</c>. Those Replicator's guarantees rest on are refused (see
    /// <see cref="ConfigLoader.ReservedKafkaProperties"/>).
    /// </summary>
    public Dictionary<string, string> Properties { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Also publish the initial snapshot's rows as Debezium <c>op: r</c> records, before any
    /// streamed change, for consumers of the topics other than Replicator's applier (which loads
    /// the target by COPY and passes them over). Done once per slot by <c>run --buffer kafka</c>.
    /// </summary>
    public bool PublishSnapshot { get; set; }

    /// <summary>
    /// Each record carries its Kafka Connect schema (JsonConverter's <c>schemas.enable=true</c>,
    /// Debezium's default form). <c>false</c> writes the payload alone, as JsonConverter does with
    /// <c>schemas.enable=false</c>: records about a sixth of the size for typical rows, and the
    /// applier reads each value by the target column's type instead of the record's schema.
    /// </summary>
    public bool Schemas { get; set; } = true;
}

public sealed class MetricsOptions
{
    /// <summary>Serve /metrics, /healthz and /readyz.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Listen address, <c>host:port</c>. Loopback by default; use 0.0.0.0:9187 in a pod.</summary>
    public string Listen { get; set; } = "127.0.0.1:9187";
}

public sealed class LoggingOptions
{
    /// <summary>Trace, Debug, Information, Warning, Error.</summary>
    public string Level { get; set; } = "Information";
}
