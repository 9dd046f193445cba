using System.Text;
using System.Text.RegularExpressions;
using Npgsql;
using Replicator.Core.Catalog;

namespace Replicator.Snapshotter;

/// <summary>One post-data item (an index, a constraint, a trigger…) as pg_restore prints it.</summary>
/// <param name="Key">The entry's header (<c>Name: …; Type: …; Schema: …</c>), unique within a dump: the resume mark.</param>
/// <param name="Phase">Build order: 1 indexes and key constraints, 2 partition index attachments, 3 foreign keys, 4 the rest.</param>
public sealed record PostDataEntry(string Key, string Type, int Phase, string Sql);

/// <summary>
/// Schema copy with pg_dump from the source's exported snapshot: one schema-only dump in custom
/// format (publications, subscriptions and our <c>replicator</c> schema left out), restored in two
/// parts. Pre-data (types, tables, functions…) goes in before the data, in ONE target transaction
/// together with its resume mark, so a kill leaves all or nothing. Post-data (indexes, keys,
/// triggers…) goes in after the data, built in parallel, one transaction per entry with its own
/// resume mark, so a rerun builds only what is missing.
/// </summary>
public sealed partial class SchemaCopy(PgTools tools, IReadOnlyDictionary<string, string?> sourceEnvironment, IReadOnlyDictionary<string, string?> targetEnvironment, bool copyOwnership)
{
    /// <summary>Dumps the schema as of <paramref name="snapshotName"/> into <paramref name="file"/>.</summary>
    public Task DumpAsync(string snapshotName, string file, CancellationToken cancellationToken) =>
        PgTools.RunAsync(tools.PgDump,
            ["--schema-only", "--format=custom", $"--snapshot={snapshotName}", "--no-publications", "--no-subscriptions",
             "--exclude-schema=replicator", "--file", file],
            sourceEnvironment, "pg_dump of the source schema", cancellationToken);

    private List<string> RestoreOptions(string section)
    {
        var args = new List<string> { $"--section={section}" };
        if (!copyOwnership)
            args.AddRange(["--no-owner", "--no-privileges"]);
        return args;
    }

    /// <summary>
    /// Restores pre-data in one transaction (psql --single-transaction, stop on the first error).
    /// When <paramref name="slotName"/> is given, the same transaction sets <c>pre_data_done</c>
    /// (the slot name travels as a psql variable, quoted by psql as a literal).
    /// </summary>
    public async Task RestorePreDataAsync(string dumpFile, string? slotName, string workDirectory, CancellationToken cancellationToken)
    {
        var script = Path.Combine(workDirectory, "pre-data.sql");
        await PgTools.RunAsync(tools.PgRestore, [.. RestoreOptions("pre-data"), "--file", script, dumpFile],
            targetEnvironment, "pg_restore --section=pre-data", cancellationToken).ConfigureAwait(false);
        var args = new List<string> { "-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1", "-f", script };
        if (slotName is not null)
        {
            await File.AppendAllTextAsync(script,
                "\nUPDATE replicator.snapshot_run SET pre_data_done = true WHERE slot_name = :'slot';\n", cancellationToken).ConfigureAwait(false);
            args.AddRange(["-v", $"slot={slotName}"]);
        }

        await PgTools.RunAsync(tools.Psql, args, targetEnvironment, "restoring the pre-data schema (types, tables, functions) on the target", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Post-data as separate entries, read from the dump (no database connection needed).</summary>
    public async Task<(string Preamble, List<PostDataEntry> Entries)> ReadPostDataAsync(string dumpFile, CancellationToken cancellationToken)
    {
        var script = await PgTools.RunAsync(tools.PgRestore, [.. RestoreOptions("post-data"), "--file", "-", dumpFile],
            targetEnvironment, "pg_restore --section=post-data", cancellationToken).ConfigureAwait(false);
        return ParsePostData(script);
    }

    /// <summary>
    /// Splits a pg_restore script at its entry headers (<c>-- Name: …; Type: …; Schema: …; Owner: …</c>,
    /// names in headers have newlines replaced by pg_dump). The preamble before the first entry
    /// holds the session settings each entry needs; psql meta-commands (<c>\restrict</c>) are dropped.
    /// </summary>
    internal static (string Preamble, List<PostDataEntry> Entries) ParsePostData(string script)
    {
        var preamble = new StringBuilder();
        var entries = new List<PostDataEntry>();
        string? key = null, type = null;
        var body = new StringBuilder();

        void Flush()
        {
            if (key is not null && body.ToString().Trim().Length > 0)
                entries.Add(new PostDataEntry(key, type!, PhaseOf(type!), body.ToString()));
            body.Clear();
        }

        foreach (var line in script.Split('\n'))
        {
            if (line.StartsWith('\\'))
                continue;
            var header = HeaderPattern().Match(line);
            if (header.Success)
            {
                Flush();
                key = header.Groups["key"].Value;
                type = header.Groups["type"].Value;
                continue;
            }

            if (line.StartsWith("--", StringComparison.Ordinal))
                continue;
            if (key is null)
            {
                if (line.Trim().Length > 0)
                    preamble.Append(line).Append('\n');
            }
            else
            {
                body.Append(line).Append('\n');
            }
        }

        Flush();
        return (preamble.ToString(), entries);
    }

    private static int PhaseOf(string type) => type switch
    {
        "INDEX" or "CONSTRAINT" => 1,
        "INDEX ATTACH" => 2,
        "FK CONSTRAINT" => 3,
        _ => 4,
    };

    [GeneratedRegex(@"^-- (?<key>Name: .*; Type: (?<type>[A-Z ]+); Schema: [^;]*); Owner: .*$")]
    private static partial Regex HeaderPattern();

    /// <summary>A referenced table up to this size gets its key before its data, so foreign keys to it can be created before the data too.</summary>
    internal const long SmallReferencedTableBytes = 32L << 20;

    /// <summary>
    /// The post-data entries that may be built BEFORE the data: each validated foreign key between
    /// two ordinary tables of the copy whose referenced table is small (at most
    /// <see cref="SmallReferencedTableBytes"/>), with the referenced table's key or unique index
    /// it needs. Created on empty tables they cost nothing to validate, and rows copied afterwards
    /// under <c>session_replication_role = replica</c> are not checked one by one: they come from
    /// one consistent snapshot of a source where the constraint holds. Built after the data, each
    /// would scan its referencing table once more (pgbench's accounts → branches key: a 5M-row
    /// scan, about 0.6 s, which no index build can overlap: the two lock each other out). A key
    /// the source holds as NOT VALID stays in post-data (pg_dump restores it NOT VALID).
    /// <paramref name="snapshotSession"/> reads the catalog in the snapshot pg_dump read.
    /// </summary>
    internal static async Task<List<PostDataEntry>> EarlyForeignKeysAsync(NpgsqlConnection snapshotSession, IReadOnlyList<TableInfo> copiedTables,
        IReadOnlyList<PostDataEntry> postData, CancellationToken cancellationToken)
    {
        var sizes = copiedTables.Where(t => t.Kind == 'r').ToDictionary(t => t.TableName, t => t.SizeBytes);
        var byKey = postData.ToDictionary(e => e.Key, StringComparer.Ordinal);
        var early = new Dictionary<string, PostDataEntry>(StringComparer.Ordinal);
        // Names as pg_dump writes them in its entry headers: "<table> <constraint>" for constraints, the index name for an index.
        await using var cmd = new NpgsqlCommand("""
            SELECT n.nspname, c.relname, con.conname, rn.nspname, r.relname, i.relname, ic.conname
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_class r ON r.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
            JOIN pg_class i ON i.oid = con.conindid
            LEFT JOIN pg_constraint ic ON ic.conindid = con.conindid AND ic.conrelid = con.confrelid AND ic.contype IN ('p', 'u')
            WHERE con.contype = 'f' AND con.convalidated
              AND c.relkind = 'r' AND NOT c.relispartition AND r.relkind = 'r' AND NOT r.relispartition
            """, snapshotSession);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var (schema, table, constraint) = (reader.GetString(0), reader.GetString(1), reader.GetString(2));
            var referenced = new TableName(reader.GetString(3), reader.GetString(4));
            if (!sizes.ContainsKey(new TableName(schema, table)) || !sizes.TryGetValue(referenced, out var size) || size > SmallReferencedTableBytes)
                continue;
            var indexKey = reader.IsDBNull(6)
                ? $"Name: {reader.GetString(5)}; Type: INDEX; Schema: {referenced.Schema}"
                : $"Name: {referenced.Name} {reader.GetString(6)}; Type: CONSTRAINT; Schema: {referenced.Schema}";
            // Anything not found as expected (an odd name pg_dump writes differently) stays in post-data.
            if (byKey.TryGetValue($"Name: {table} {constraint}; Type: FK CONSTRAINT; Schema: {schema}", out var foreignKey) && byKey.TryGetValue(indexKey, out var index))
            {
                early[index.Key] = index;
                early[foreignKey.Key] = foreignKey;
            }
        }

        return [.. early.Values];
    }

    /// <summary>
    /// Builds the post-data entries not yet done, phase by phase, up to <paramref name="jobs"/> at
    /// once (each a target transaction with its resume mark when <paramref name="slotName"/> is given).
    /// Phases keep dependencies in order: a foreign key needs the referenced unique index.
    /// </summary>
    public static async Task<int> BuildPostDataAsync(string targetConnectionString, string preamble, IReadOnlyList<PostDataEntry> entries,
        ISet<string> done, string? slotName, int jobs, Action<PostDataEntry> onDone, CancellationToken cancellationToken)
    {
        var built = 0;
        foreach (var phase in entries.Where(e => !done.Contains(e.Key)).GroupBy(e => e.Phase).OrderBy(g => g.Key))
        {
            var queue = new System.Collections.Concurrent.ConcurrentQueue<PostDataEntry>(phase);
            var workers = Enumerable.Range(0, Math.Max(1, Math.Min(jobs, queue.Count))).Select(async _ =>
            {
                await using var conn = new NpgsqlConnection(CopyWorker.CopyConnectionString(targetConnectionString));
                await conn.OpenAsync(cancellationToken).ConfigureAwait(false);
                await using (var setup = new NpgsqlCommand("SET maintenance_work_mem = '256MB'; SET statement_timeout = 0", conn))
                    await setup.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                while (queue.TryDequeue(out var entry))
                {
                    await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
                    await using (var cmd = new NpgsqlCommand(preamble + entry.Sql, conn, tx))
                    {
                        try
                        {
                            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                        }
                        catch (PostgresException e)
                        {
                            throw new SnapshotException($"building {entry.Key} on the target failed: {e.MessageText} ({e.SqlState})", e);
                        }
                    }

                    if (slotName is not null)
                    {
                        await using var mark = new NpgsqlCommand("INSERT INTO replicator.snapshot_postdata (slot_name, entry) VALUES ($1, $2)", conn, tx);
                        mark.Parameters.AddWithValue(slotName);
                        mark.Parameters.AddWithValue(entry.Key);
                        await mark.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    }

                    await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
                    Interlocked.Increment(ref built);
                    onDone(entry);
                }
            }).ToList();
            await Task.WhenAll(workers).ConfigureAwait(false);
        }

        return built;
    }
}
