using System.Text.Encodings.Web;
using System.Text.Json;

namespace Replicator.Kafka.Debezium;

internal static class JsonOptions
{
    /// <summary>
    /// Jackson (JsonConverter) escapes only quotes, backslashes and control characters and writes
    /// other characters as UTF-8; the default encoder would write <c>\u0022</c> and escape non-ASCII.
    /// </summary>
    public static readonly JsonWriterOptions Writer = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = false };
}
