using System.Globalization;
using System.Numerics;
using Npgsql;

namespace Replicator.Verifier;

/// <summary>Row count and sum of 64-bit row hashes of one key range on one side.</summary>
internal readonly record struct ChunkHash(long Rows, BigInteger Sum)
{
    public static ChunkHash operator -(ChunkHash a, ChunkHash b) => new(a.Rows - b.Rows, a.Sum - b.Sum);
}

/// <summary>
/// Hashes key ranges inside the databases: only a count and a number cross the network per range.
/// Both sides run at once (a pair holds one connection per side), so a range costs the slower side.
/// </summary>
internal static class ChunkHasher
{
    public static async Task<ChunkHash> HashAsync(NpgsqlConnection conn, CanonicalRow table, ChunkRange range, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand { Connection = conn };
        var where = table.RangePredicate(range, cmd);
        cmd.CommandText = $"SELECT count(*), coalesce(sum({table.Hash}), 0)::text FROM {table.QuotedTable} WHERE {where}";
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new ChunkHash(reader.GetInt64(0), BigInteger.Parse(reader.GetString(1), CultureInfo.InvariantCulture));
    }

    public static async Task<(ChunkHash Source, ChunkHash Target)> HashBothAsync(ConnectionPair pair, TableMatch table, ChunkRange range, CancellationToken cancellationToken)
    {
        var source = HashAsync(pair.Source, table.Source, range, cancellationToken);
        var target = HashAsync(pair.Target, table.Target, range, cancellationToken);
        return (await source.ConfigureAwait(false), await target.ConfigureAwait(false));
    }
}
