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
    /// <param name="source">Asked for the slot's confirmed position and for the tables the publication
    /// names (with <c>publish_via_partition_root</c> a partition's changes carry the name of its topmost
    /// published ancestor, and so do its snapshot rows).</param>
    public static async Task PublishAsync(NpgsqlConnection target, NpgsqlConnection source, string slot, string publication, KafkaSinkOptions options, ILogger logger,
        CancellationToken cancellationToken)
    {
        await TargetState.EnsureAsync(target, cancellationToken).ConfigureAwait(false);
        await using (var done = new NpgsqlCommand("SELECT records FROM replicator.snapshot_events WHERE slot_name = $1", target))
        {
            done.Parameters.AddWithValue(slot);
            if (await done.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long records)
            {
                logger.LogInformation("The initial snapshot of slot {Slot} was published to Kafka already ({Records} records)", slot, records);
                return;
            }
        }

        var position = await TargetState.ReadPositionRowAsync(target, slot, cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException($"no snapshot of slot {slot} on the target to publish");
        var copiedAt = await ScalarAsync<NpgsqlLogSequenceNumber?>(target, "SELECT consistent_lsn FROM replicator.snapshot_run WHERE slot_name = $1", slot, cancellationToken).ConfigureAwait(false);
        var confirmed = await ScalarAsync<NpgsqlLogSequenceNumber?>(source, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", slot, cancellationToken).ConfigureAwait(false);
        // Only the copy itself is a snapshot, and its rows must reach Kafka before any change: refused once
        // changes were applied on top of it, or captured from the slot (a run without the setting).
        // The position a finished snapshot records is one below its consistent point (the point itself before 2026-12-05).
        var copyPoint = copiedAt ?? new NpgsqlLogSequenceNumber((ulong)position.CommitLsn + 1);
        if (position.KafkaOffsets is not null || (position.CommitLsn != copyPoint && position.CommitLsn != TargetState.PositionBefore(copyPoint))
            || (confirmed is { } slotAt && slotAt > copyPoint))
        {
            throw new ConfigurationException("Buffer:Kafka:PublishSnapshot",
                $"publishes the initial snapshot of slot {slot} before any change, but changes were captured or applied since it was copied (target position {position.CommitLsn}{(position.KafkaOffsets is null ? "" : " with Kafka offsets")}, slot confirmed at {confirmed?.ToString() ?? "?"}): take a new snapshot (new slot, empty target) to publish one, or turn the setting off");
        }

        var syncLsns = await TargetState.ReadSyncLsnsAsync(target, slot, cancellationToken).ConfigureAwait(false);
        var published = await TableCatalog.PublishedTablesAsync(source, publication, cancellationToken).ConfigureAwait(false);
        var catalog = (await TableCatalog.LoadAsync(target, cancellationToken).ConfigureAwait(false)).ToDictionary(t => t.TableName);
        TableInfo TopicTable(TableInfo table)
        {
            var topic = table;
            for (var t = table; t.Parent is { } parent && catalog.TryGetValue(parent, out var parentTable);)
            {
                t = parentTable;
                if (published.Contains(t.TableName))
                    topic = t;
            }

            return topic;
        }

        // Partitions of one published root are one collection: consecutive, so its first and last record can be marked.
        var tables = catalog.Values
            .Where(t => !t.IsPartitionedParent && syncLsns.ContainsKey(t.TableName))
            .Select(t => (Table: t, Topic: TopicTable(t)))
            .OrderBy(t => t.Topic.Schema, StringComparer.Ordinal).ThenBy(t => t.Topic.Name, StringComparer.Ordinal)
            .ThenBy(t => t.Table.Schema, StringComparer.Ordinal).ThenBy(t => t.Table.Name, StringComparer.Ordinal)
            .ToList();
        var types = await CatalogTypeResolver.LoadAsync(target, cancellationToken).ConfigureAwait(false);
        using var sink = new KafkaChangeSink(options, types, logger);
        var time = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        var lastReport = TimeSpan.Zero;
        long total = 0;
        // One record is held back so that the last one of a collection, and of all, can be marked.
        (StreamRelation Relation, ColumnValue[] Row, NpgsqlLogSequenceNumber Lsn, bool FirstInCollection)? held = null;
        async ValueTask HandOnAsync(bool lastInCollection, bool lastOfAll)
        {
            var (relation, row, lsn, firstInCollection) = held!.Value;
            // Debezium's order of precedence: last, first, last in its collection, first in it.
            var marker = lastOfAll ? SnapshotMarker.Last
                : total == 0 ? SnapshotMarker.First
                : lastInCollection ? SnapshotMarker.LastInDataCollection
                : firstInCollection ? SnapshotMarker.FirstInDataCollection
                : SnapshotMarker.True;
            await sink.WriteSnapshotRowAsync(relation, row, marker, lsn, time, cancellationToken).ConfigureAwait(false);
            total++;
        }

        await using (var tx = await target.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken).ConfigureAwait(false))
        {
            var relations = new Dictionary<TableName, StreamRelation>();
            StreamRelation? collection = null;
            var firstOfCollection = false; // survives an empty partition: the collection's first row comes later
            foreach (var (table, topicTable) in tables)
            {
                // Under the published ancestor's name and columns where streamed changes use them (the same
                // columns by name); one relation per collection, so the partitions of a root share it.
                if (!relations.TryGetValue(topicTable.TableName, out var relation))
                    relations[topicTable.TableName] = relation = CatalogRelation.Of(topicTable);
                firstOfCollection |= !ReferenceEquals(relation, collection);
                collection = relation;
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
                        await HandOnAsync(lastInCollection: !ReferenceEquals(held.Value.Relation, relation), lastOfAll: false).ConfigureAwait(false);
                    held = (relation, row, lsn, firstOfCollection);
                    firstOfCollection = false;
                    rows++;
                    if (clock.Elapsed - lastReport >= TimeSpan.FromSeconds(10))
                    {
                        lastReport = clock.Elapsed;
                        logger.LogInformation("Publishing the initial snapshot to Kafka: {Records} records so far, now {Table}", total, table.DisplayName);
                    }
                }

                logger.LogInformation("Snapshot of {Table} read: {Rows} records at {Lsn} handed to Kafka", table.DisplayName, rows, lsn);
            }
        }

        if (held is not null)
            await HandOnAsync(lastInCollection: true, lastOfAll: true).ConfigureAwait(false);
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

    private static async Task<T?> ScalarAsync<T>(NpgsqlConnection connection, string sql, string parameter, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(sql, connection);
        cmd.Parameters.AddWithValue(parameter);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is T value ? value : default;
    }
}
