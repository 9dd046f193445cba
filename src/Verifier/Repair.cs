using Microsoft.Extensions.Logging;
using Npgsql;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Core.Sql;

namespace Replicator.Verifier;

/// <summary>
/// <c>--repair</c>: recopies the differing rows from the source and checks them again.
/// <para>Why it cannot make things worse while replication runs: the repair opens a new consistent
/// cut and writes while the applier is held at the barrier (<see cref="ConsistentCut.OpenAsync"/>'s
/// whileHeld step). At that moment the target holds exactly the source's transactions before C,
/// and the rows written are read from the source snapshot at C — so the target becomes the source
/// at C for those rows, and the applier resumes with the transactions from C on, which apply on
/// top as they would have. Without replication the cut is plain and the same holds trivially.</para>
/// <para>The write is one target transaction: delete by key (keyed tables) or by row hash
/// (tables without a key), then insert the source rows — values as text parameters cast to the
/// column types. It runs with <c>session_replication_role = replica</c> when the role may set it
/// (user triggers and foreign-key checks off, as for the applier); otherwise with triggers on.</para>
/// </summary>
internal static class Repair
{
    public static async Task<RepairReport> RunAsync(
        VerifyRequest request, ConnectionInfo source, ConnectionInfo target, IReadOnlyList<Verification.TableOutcome> outcomes, ILogger logger, CancellationToken cancellationToken)
    {
        var plan = outcomes.Where(o => o.Keys.Count > 0 || o.Hashes.Count > 0).ToList();
        var report = new RepairReport();
        report.Tables.AddRange(plan.Select(o => o.Report.Table));

        async Task WriteAsync(IReadOnlyList<NpgsqlConnection> sources, CancellationToken ct)
        {
            await using var conn = await ConsistentCut.OpenSessionAsync(target, ct).ConfigureAwait(false);
            await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
            report.ReplicaRole = await TrySetReplicaRoleAsync(conn, tx, ct).ConfigureAwait(false);
            if (!report.ReplicaRole)
                LogMessages.RepairWithoutReplicaRole(logger);
            foreach (var o in plan)
            {
                var insertColumns = o.Match.Target.Columns.Where(c => !c.IsGenerated).ToList();
                await using var delete = new NpgsqlCommand { Connection = conn, Transaction = tx };
                await using var select = new NpgsqlCommand { Connection = sources[0] };
                var texts = string.Join(", ", insertColumns.Select(CanonicalRow.TextOf));
                if (o.Match.Source.HasKey)
                {
                    var keys = o.Keys.Select(k => k.Key).ToList();
                    delete.CommandText = $"DELETE FROM {o.Match.Target.FromItem} WHERE {o.Match.Target.KeyInPredicate(keys, delete)}";
                    select.CommandText = $"SELECT {texts} FROM {o.Match.Source.FromItem} WHERE {o.Match.Source.KeyInPredicate(keys, select)}";
                }
                else
                {
                    var hashes = o.Hashes.Select(h => h.Hash).ToArray();
                    delete.CommandText = $"DELETE FROM {o.Match.Target.FromItem} WHERE {o.Match.Target.Hash} = ANY($1)";
                    delete.Parameters.AddWithValue(hashes);
                    select.CommandText = $"SELECT {texts} FROM {o.Match.Source.FromItem} WHERE {o.Match.Source.Hash} = ANY($1)";
                    select.Parameters.AddWithValue(hashes);
                }

                var rows = new List<string?[]>();
                await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(ct).ConfigureAwait(false))
                    {
                        var values = new string?[insertColumns.Count];
                        for (var i = 0; i < values.Length; i++)
                            values[i] = reader.IsDBNull(i) ? null : reader.GetString(i);
                        rows.Add(values);
                    }
                }

                report.RowsDeleted += await delete.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                if (rows.Count > 0)
                    report.RowsInserted += await InsertAsync(conn, tx, o.Match.TargetTable, insertColumns, rows, ct).ConfigureAwait(false);
                LogMessages.TableRepaired(logger, o.Report.Table, rows.Count);
            }

            await tx.CommitAsync(ct).ConfigureAwait(false);
        }

        await using var cut = await ConsistentCut.OpenAsync(source, target, request, 1, logger, WriteAsync, cancellationToken).ConfigureAwait(false);
        report.CutLsn = cut.SourceLsn.ToString();

        // Check again, inside the repair's own cut: the target snapshot was taken after the repair committed.
        foreach (var o in plan)
        {
            if (o.Match.Source.HasKey)
            {
                var keys = o.Keys.Select(k => k.Key).ToList();
                var s = KeyHashesAsync(cut.First.Source, o.Match.Source, keys, cancellationToken);
                var t = KeyHashesAsync(cut.First.Target, o.Match.Target, keys, cancellationToken);
                var sourceHashes = await s.ConfigureAwait(false);
                var targetHashes = await t.ConfigureAwait(false);
                report.RemainingDifferences += sourceHashes.Keys.Union(targetHashes.Keys)
                    .Count(id => sourceHashes.GetValueOrDefault(id) != targetHashes.GetValueOrDefault(id));
            }
            else
            {
                var repaired = o.Hashes.Select(h => h.Hash).ToHashSet();
                var still = await MultisetComparer.DifferingHashesAsync(cut.First, o.Match, cancellationToken).ConfigureAwait(false);
                report.RemainingDifferences += still.Where(h => repaired.Contains(h.Hash)).Sum(h => h.Missing + h.Extra);
            }
        }

        return report;
    }

    private static async Task<bool> TrySetReplicaRoleAsync(NpgsqlConnection conn, NpgsqlTransaction tx, CancellationToken cancellationToken)
    {
        await tx.SaveAsync("replica_role", cancellationToken).ConfigureAwait(false);
        try
        {
            await using var cmd = new NpgsqlCommand("SET LOCAL session_replication_role = replica", conn, tx);
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            await tx.RollbackAsync("replica_role", cancellationToken).ConfigureAwait(false);
            return false;
        }
    }

    private static async Task<int> InsertAsync(
        NpgsqlConnection conn, NpgsqlTransaction tx, TableInfo table, IReadOnlyList<ColumnInfo> columns, List<string?[]> rows, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand { Connection = conn, Transaction = tx };
        var aliases = columns.Select((_, i) => Identifier.Quote("c" + i)).ToList();
        for (var i = 0; i < columns.Count; i++)
        {
            var column = i;
            cmd.Parameters.Add(new NpgsqlParameter
            {
                Value = rows.Select(r => r[column]).ToArray(),
                NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text,
            });
        }

        var overriding = columns.Any(c => c.IsIdentityAlways) ? " OVERRIDING SYSTEM VALUE" : "";
        cmd.CommandText =
            $"INSERT INTO {table.QuotedName} ({string.Join(", ", columns.Select(c => c.QuotedName))}){overriding} " +
            $"SELECT {string.Join(", ", columns.Select((c, i) => $"u.{aliases[i]}::{c.TypeName}"))} " +
            $"FROM unnest({string.Join(", ", columns.Select((_, i) => $"${i + 1}::text[]"))}) AS u({string.Join(", ", aliases)})";
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task<Dictionary<string, long>> KeyHashesAsync(NpgsqlConnection conn, CanonicalRow table, IReadOnlyList<string[]> keys, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand { Connection = conn };
        cmd.CommandText = $"SELECT {table.KeyTextArray}, {table.Hash} FROM {table.FromItem} WHERE {table.KeyInPredicate(keys, cmd)}";
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            result[CanonicalRow.KeyId(reader.GetFieldValue<string[]>(0))] = reader.GetInt64(1);
        return result;
    }
}
