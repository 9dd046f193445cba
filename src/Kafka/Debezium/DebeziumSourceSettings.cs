using Replicator.Core.Configuration;

namespace Replicator.Kafka.Debezium;

/// <summary>
/// The settings of the Debezium connector that wrote the topics being read. With schemas enabled
/// the records name their semantic types and most of this is only checked; with schemas disabled
/// (<c>value.converter.schemas.enable=false</c>) the payload is bare and these settings plus the
/// target's column types decide how a value is read. Defaults are Debezium's defaults.
/// </summary>
public sealed record DebeziumSourceSettings
{
    /// <summary><c>decimal.handling.mode</c>: <c>precise</c> or <c>string</c>; <c>double</c> is refused for exact columns (it loses digits).</summary>
    public string DecimalHandlingMode { get; init; } = "precise";

    /// <summary><c>time.precision.mode</c>: <c>adaptive</c>, <c>adaptive_time_microseconds</c>, <c>connect</c>, <c>microseconds</c> or <c>isostring</c> (3.x).</summary>
    public string TimePrecisionMode { get; init; } = "adaptive";

    /// <summary><c>binary.handling.mode</c>: <c>bytes</c>, <c>base64</c>, <c>base64-url-safe</c> or <c>hex</c>.</summary>
    public string BinaryHandlingMode { get; init; } = "bytes";

    /// <summary><c>interval.handling.mode</c>: <c>numeric</c> or <c>string</c>.</summary>
    public string IntervalHandlingMode { get; init; } = "numeric";

    /// <summary><c>money.fraction.digits</c>.</summary>
    public int MoneyFractionDigits { get; init; } = 2;

    public static readonly DebeziumSourceSettings Default = new();

    /// <summary>Refuses settings this reader does not support, naming the setting and what to use instead.</summary>
    /// <exception cref="ConfigurationException">An unknown or unsupported value.</exception>
    public DebeziumSourceSettings Validate()
    {
        Check("decimal.handling.mode", DecimalHandlingMode, ["precise", "string", "double"]);
        Check("time.precision.mode", TimePrecisionMode, ["adaptive", "adaptive_time_microseconds", "connect", "microseconds", "isostring"]);
        Check("binary.handling.mode", BinaryHandlingMode, ["bytes", "base64", "base64-url-safe", "hex"]);
        Check("interval.handling.mode", IntervalHandlingMode, ["numeric", "string"]);
        if (MoneyFractionDigits is < 0 or > 20)
            throw new ConfigurationException("Buffer:Kafka:Debezium:money.fraction.digits", $"{MoneyFractionDigits} is not a valid scale (0–20)");
        return this;
    }

    private static void Check(string setting, string value, string[] allowed)
    {
        if (!allowed.Contains(value, StringComparer.Ordinal))
            throw new ConfigurationException($"Buffer:Kafka:Debezium:{setting}", $"'{value}' is not supported; use one of {string.Join(", ", allowed)}");
    }
}

/// <summary>A Kafka record that cannot be read back: names the record and the reason, so an operator can find and fix it.</summary>
public sealed class DebeziumFormatException : Exception
{
    public DebeziumFormatException(KafkaPosition position, string reason, Exception? inner = null)
        : base($"topic {position.Topic} partition {position.Partition} offset {position.Offset}: {reason}", inner)
    {
        Position = position;
    }

    public DebeziumFormatException()
    {
    }

    public DebeziumFormatException(string message)
        : base(message)
    {
    }

    public DebeziumFormatException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public KafkaPosition Position { get; }
}

/// <summary>Where a record sits in Kafka.</summary>
public readonly record struct KafkaPosition(string Topic, int Partition, long Offset)
{
    public override string ToString() => $"{Topic}[{Partition}]@{Offset}";
}
