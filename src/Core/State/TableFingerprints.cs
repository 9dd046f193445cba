using System.Text.Json;
using Npgsql;
using Replicator.Core.Catalog;

namespace Replicator.Core.State;

/// <summary>
/// Per table, a cheap fingerprint of "has anything changed": the statistics collector's inserted,
/// updated and deleted row counters and the relation's file node (TRUNCATE, VACUUM FULL and CLUSTER
/// give it a new one; TRUNCATE moves no counter). Read just <em>before</em> a verifier's cut, a
/// fingerprint errs only on the safe side: a change flushed to the statistics before the reading is
/// inside the cut; a change after the reading (or not yet flushed) moves the counters later, so the
/// table counts as changed. Counters that go down (statistics reset) also count as changed.
/// </summary>
public static class TableFingerprints
{
    private const string Sql = $"""
        SELECT n.nspname, c.relname,
               concat_ws('/', coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_upd, 0), coalesce(s.n_tup_del, 0), pg_relation_filenode(c.oid))
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
        WHERE c.relkind = 'r'
          AND {TableCatalog.UserSchemas}
        """;

    /// <summary>Fingerprints of every user table, keyed by <c>schema.table</c> (unquoted).</summary>
    public static async Task<Dictionary<string, string>> ReadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var cmd = new NpgsqlCommand(Sql, connection);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            result[reader.GetString(0) + "." + reader.GetString(1)] = reader.GetString(2);
        return result;
    }

    /// <summary>Both sides' fingerprints as stored in <c>replicator.verification.fingerprints</c>.</summary>
    public static string ToJson(IReadOnlyDictionary<string, string> source, IReadOnlyDictionary<string, string> target) =>
        JsonSerializer.Serialize(new Dictionary<string, IReadOnlyDictionary<string, string>> { ["source"] = source, ["target"] = target }, CoreJson.Default.DictionaryStringIReadOnlyDictionaryStringString);

    /// <summary>Reads what <see cref="ToJson"/> wrote; null sides when the JSON is null or malformed.</summary>
    public static (Dictionary<string, string>? Source, Dictionary<string, string>? Target) FromJson(string? json)
    {
        if (string.IsNullOrEmpty(json))
            return (null, null);
        try
        {
            var both = JsonSerializer.Deserialize(json, CoreJson.Default.DictionaryStringDictionaryStringString);
            return (both?.GetValueOrDefault("source"), both?.GetValueOrDefault("target"));
        }
        catch (JsonException)
        {
            return (null, null);
        }
    }

    /// <summary>Tables of <paramref name="now"/> whose fingerprint differs from <paramref name="then"/> (or that are new).</summary>
    public static IEnumerable<string> Changed(IReadOnlyDictionary<string, string> then, IReadOnlyDictionary<string, string> now) =>
        now.Where(entry => !then.TryGetValue(entry.Key, out var before) || before != entry.Value).Select(entry => entry.Key);
}
