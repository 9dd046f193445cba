using System.Text.Encodings.Web;
using System.Text.Json;

namespace Replicator.Kafka.Debezium;

internal static class JsonOptions
{
    /// <summary>
    /// Jackson (JsonConverter) escapes only quotes, backslashes and control characters and writes
    /// other characters as UTF-8; the default encoder would write <c>\u0022</c> and escape non-ASCII.
    /// The writer's structural checks are skipped (4–6% of serializing a pgbench event): the
    /// serializer's output is pinned byte for byte by the golden tests.
    /// </summary>
    public static readonly JsonWriterOptions Writer = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };
}
