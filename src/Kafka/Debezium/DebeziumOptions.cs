namespace Replicator.Kafka.Debezium;

/// <summary>
/// How our producer names and shapes records. The format is that of the Debezium PostgreSQL
/// connector 3.x (checked against 3.6.1.Final's source) with the Kafka Connect JsonConverter,
/// <c>schemas.enable=true</c> (or <c>false</c>: <see cref="SchemasEnable"/>), and the connector's default settings.
/// </summary>
public sealed record DebeziumOptions
{
    /// <summary>Debezium's <c>topic.prefix</c>: topics are <c>&lt;prefix&gt;.&lt;schema&gt;.&lt;table&gt;</c>.</summary>
    public required string TopicPrefix { get; init; }

    /// <summary>The source database's name (<c>source.db</c>).</summary>
    public required string DatabaseName { get; init; }

    /// <summary><c>source.name</c>; Debezium 2.x and later put the topic prefix there.</summary>
    public string? ServerName { get; init; }

    /// <summary><c>source.version</c>: the Debezium release whose format these records follow.</summary>
    public string ConnectorVersion { get; init; } = "3.6.1.Final";

    /// <summary>
    /// <c>interval.handling.mode</c>: <c>numeric</c> (Debezium's default, io.debezium.time.MicroDuration,
    /// months counted as 30.4375 days so not exactly reversible) or <c>string</c>
    /// (io.debezium.time.Interval, ISO-8601, exact).
    /// </summary>
    public string IntervalHandlingMode { get; init; } = "numeric";

    /// <summary><c>money.fraction.digits</c>: the scale of money's Decimal.</summary>
    public int MoneyFractionDigits { get; init; } = 2;

    /// <summary>Whether transaction metadata (<c>provide.transaction.metadata</c>) is produced. Our applier needs it for commit order.</summary>
    public bool ProvideTransactionMetadata { get; init; } = true;

    /// <summary>
    /// JsonConverter's <c>schemas.enable</c> (for keys and values alike): <c>true</c> writes
    /// <c>{"schema":…,"payload":…}</c>, <c>false</c> the payload alone.
    /// </summary>
    public bool SchemasEnable { get; init; } = true;

    public string EffectiveServerName => ServerName ?? TopicPrefix;

    public string TransactionTopic => TopicPrefix + ".transaction";

    public string HeartbeatTopic => "__debezium-heartbeat." + TopicPrefix;

    public string TopicFor(string schema, string table) => $"{TopicPrefix}.{schema}.{table}";
}
