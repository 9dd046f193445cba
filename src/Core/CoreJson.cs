using System.Text.Json.Serialization;
using Replicator.Core.Configuration;

namespace Replicator.Core;

/// <summary>
/// JSON contracts generated at compile time for the types Core serializes (the CLI is compiled
/// ahead of time, where reflection-based serialization is not available).
/// </summary>
[JsonSerializable(typeof(Dictionary<string, IReadOnlyDictionary<string, string>>))]
[JsonSerializable(typeof(Dictionary<string, Dictionary<string, string>>))]
[JsonSerializable(typeof(Dictionary<string, Dictionary<string, long>>))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(ReplicatorOptions))]
public sealed partial class CoreJson : JsonSerializerContext
{
    /// <summary>The same contracts, written indented (the effective configuration).</summary>
    public static CoreJson Indented { get; } = new(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
}
