using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Changes;
using Replicator.Core.Configuration;
using Replicator.Core.State;
using Replicator.Kafka.Debezium;

namespace Replicator.Kafka;

/// <summary>
/// Publishes a finished initial snapshot to Kafka as Debezium <c>op: r</c> records
/// (<c>Buffer:Kafka:PublishSnapshot</c>), for consumers of the topics other than Replicator's
/// applier. The rows are read from the target right after the copy, before anything is applied
/// to it, so each table is exactly its copy: its records carry the LSN it was copied at
/// (<c>table_sync</c>) and the applier passes them over. Done before capture produces anything,
/// so per key a snapshot row comes before every streamed change. Once complete it is recorded in
/// <c>replicator.snapshot_events</c>; a process stopped midway publishes everything again at its
/// next start (at least once, as a Debezium connector re-reads a snapshot it did not finish).
/// </summary>
public static class SnapshotEvents
{
    /// <summary>Whether the source publication has <c>publish_via_partition_root</c> (false when it does not exist).</summary>
    public static async Task<bool> PublishesViaPartitionRootAsync(NpgsqlConnection source, string publication, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("SELECT coalesce(bool_or(pubviaroot), false) FROM pg_publication WHERE pubname = $1", source);
        cmd.Parameters.AddWithValue(publication);
        return (bool)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    /// <param name="viaPartitionRoot">The source publication has <c>publish_via_partition_root</c>: a
    /// partition's rows go to the topic of its topmost partitioned ancestor, as its streamed changes do.</param>
    public static async Task PublishAsync(NpgsqlConnection target, string slot, KafkaSinkOptions options, bool viaPartitionRoot, ILogger logger, CancellationToken cancellationToken)
    {
        await TargetState.EnsureAsync(target, cancellationToken).ConfigureAwait(false);
        await using (var done = new NpgsqlCommand("SELECT records FROM replicator.snapshot_events WHERE slot_name = $1", target))
        {
            done.Parameters.AddWithValue(slot);
            if (await done.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long published)
            {
                logger.LogInformation("The initial snapshot of slot {Slot} was published to Kafka already ({Records} records)", slot, published);
                return;
            }
        }

        var position = await TargetState.ReadPositionAsync(target, slot, cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException($"no snapshot of slot {slot} on the target to publish");
        var syncLsns = new Dictionary<TableName, NpgsqlLogSequenceNumber>();
        await using (var sync = new NpgsqlCommand("SELECT schema_name, table_name, sync_lsn FROM replicator.table_sync WHERE slot_name = $1", target))
        {
            sync.Parameters.AddWithValue(slot);
            await using var reader = await sync.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                syncLsns[new TableName(reader.GetString(0), reader.GetString(1))] = reader.GetFieldValue<NpgsqlLogSequenceNumber>(2);
        }

        // Only the copy itself is a snapshot: once changes are applied on top, the tables hold a later state.
        if (syncLsns.Count > 0 && position != syncLsns.Values.Max())
        {
            throw new ConfigurationException("Buffer:Kafka:PublishSnapshot",
                $"publishes the initial snapshot of slot {slot} right after it is copied, but the target has applied changes since (position {position}, snapshot at {syncLsns.Values.Max()}): take a new snapshot (new slot, empty target) to publish one, or turn the setting off");
        }

        var catalog = (await TableCatalog.LoadAsync(target, cancellationToken).ConfigureAwait(false)).ToDictionary(t => t.TableName);
        TableInfo TopicTable(TableInfo table)
        {
            while (viaPartitionRoot && table.Parent is { } parent && catalog.TryGetValue(parent, out var parentTable))
                table = parentTable;
            return table;
        }

        var tables = catalog.Values
            .Where(t => !t.IsPartitionedParent && syncLsns.ContainsKey(t.TableName))
            .OrderBy(t => t.Schema, StringComparer.Ordinal).ThenBy(t => t.Name, StringComparer.Ordinal)
            .ToList();
        var types = await CatalogTypeResolver.LoadAsync(target, cancellationToken).ConfigureAwait(false);
        using var sink = new KafkaChangeSink(options, types, logger);
        var time = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        var lastReport = TimeSpan.Zero;
        long total = 0;
        // One record is held back so that the last one can be marked "last".
        (StreamRelation Relation, ColumnValue[] Row, NpgsqlLogSequenceNumber Lsn, bool FirstInTable)? held = null;
        async ValueTask HandOnAsync(bool lastInTable, bool lastOfAll)
        {
            var (relation, row, lsn, firstInTable) = held!.Value;
            var marker = total == 0 ? SnapshotMarker.First
                : lastOfAll ? SnapshotMarker.Last
                : firstInTable ? SnapshotMarker.FirstInDataCollection
                : lastInTable ? SnapshotMarker.LastInDataCollection
                : SnapshotMarker.True;
            await sink.WriteSnapshotRowAsync(relation, row, marker, lsn, time, cancellationToken).ConfigureAwait(false);
            total++;
        }

        await using (var tx = await target.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken).ConfigureAwait(false))
        {
            foreach (var table in tables)
            {
                // Under the root's name and columns where streamed changes use them (the columns are the same by name).
                var relation = CatalogRelation.Of(TopicTable(table));
                var lsn = syncLsns[table.TableName];
                var sql = $"SELECT {string.Join(", ", relation.Columns.Select(c => c.QuotedName + "::text"))} FROM {table.QuotedName}";
                await using var cmd = new NpgsqlCommand(sql, target, tx);
                await using var reader = await cmd.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken).ConfigureAwait(false);
                long rows = 0;
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var row = new ColumnValue[relation.Columns.Count];
                    for (var i = 0; i < row.Length; i++)
                        row[i] = await reader.IsDBNullAsync(i, cancellationToken).ConfigureAwait(false) ? ColumnValue.Null : ColumnValue.Of(reader.GetString(i));
                    if (held is not null)
                        await HandOnAsync(lastInTable: held.Value.Relation != relation, lastOfAll: false).ConfigureAwait(false);
                    held = (relation, row, lsn, rows == 0);
                    rows++;
                    if (clock.Elapsed - lastReport >= TimeSpan.FromSeconds(10))
                    {
                        lastReport = clock.Elapsed;
                        logger.LogInformation("Publishing the initial snapshot to Kafka: {Records} records so far, now {Table}", total, table.DisplayName);
                    }
                }

                logger.LogInformation("Snapshot of {Table} published: {Rows} records at {Lsn}", table.DisplayName, rows, lsn);
            }
        }

        if (held is not null)
            await HandOnAsync(lastInTable: true, lastOfAll: true).ConfigureAwait(false);
        await sink.FlushAsync(TimeSpan.FromMinutes(5), cancellationToken).ConfigureAwait(false);
        if (sink.InFlight > 0)
            throw new TimeoutException($"Kafka did not acknowledge {sink.InFlight} snapshot records within 5 minutes; they are published again at the next start");

        await using (var mark = new NpgsqlCommand("INSERT INTO replicator.snapshot_events (slot_name, records) VALUES ($1, $2)", target))
        {
            mark.Parameters.AddWithValue(slot);
            mark.Parameters.AddWithValue(total);
            await mark.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        logger.LogInformation("The initial snapshot of slot {Slot} is published to Kafka: {Records} records from {Tables} tables in {Seconds:F1} s",
            slot, total, tables.Count, clock.Elapsed.TotalSeconds);
    }
}
