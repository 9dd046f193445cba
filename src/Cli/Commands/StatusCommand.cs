using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Configuration;

namespace Replicator.Cli.Commands;

/// <summary><c>replicator status</c>: where replication stands, read from the source slot and the target's position.</summary>
public static class StatusCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var command = new Command("status", "Show the slot, the applied position, lag in bytes and seconds, and WAL retained on the source.");
        command.Options.Add(json);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = globals.Load(parse);
            var status = await ReadAsync(options, cancellationToken).ConfigureAwait(false);
            if (parse.GetValue(json))
                Console.Out.WriteLine(JsonSerializer.Serialize(status, new JsonSerializerOptions { WriteIndented = true }));
            else
                Print(status);
            return status.SlotExists ? ExitCodes.Ok : ExitCodes.Failed;
        });
        return command;
    }

    public sealed record ReplicationStatus(
        string Slot,
        bool SlotExists,
        bool SlotActive,
        string? SourceWalLsn,
        string? ConfirmedFlushLsn,
        long? RetainedWalBytes,
        long? LagBytes,
        string? AppliedCommitLsn,
        DateTimeOffset? AppliedCommitTime,
        DateTimeOffset? PositionUpdatedAt,
        double? LagSeconds,
        bool SnapshotDone);

    public static async Task<ReplicationStatus> ReadAsync(ReplicatorOptions options, CancellationToken cancellationToken)
    {
        var source = ConfigLoader.ResolveSource(options);
        var target = ConfigLoader.ResolveTarget(options);
        await using var src = new NpgsqlConnection(source.ToNpgsqlConnectionString());
        await src.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var cmd = new NpgsqlCommand("""
            SELECT pg_current_wal_insert_lsn(), s.active, s.confirmed_flush_lsn,
                   (pg_current_wal_insert_lsn() - s.restart_lsn)::bigint, (pg_current_wal_insert_lsn() - s.confirmed_flush_lsn)::bigint
            FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1
            """, src);
        cmd.Parameters.AddWithValue(options.SlotName);
        string? wal = null, confirmed = null;
        bool exists = false, active = false;
        long? retained = null, lag = null;
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            wal = reader.GetFieldValue<NpgsqlLogSequenceNumber>(0).ToString();
            exists = !reader.IsDBNull(1);
            active = exists && reader.GetBoolean(1);
            confirmed = reader.IsDBNull(2) ? null : reader.GetFieldValue<NpgsqlLogSequenceNumber>(2).ToString();
            retained = reader.IsDBNull(3) ? null : reader.GetInt64(3);
            lag = reader.IsDBNull(4) ? null : reader.GetInt64(4);
        }

        await using var tgt = new NpgsqlConnection(target.ToNpgsqlConnectionString());
        await tgt.OpenAsync(cancellationToken).ConfigureAwait(false);
        string? applied = null;
        DateTimeOffset? commitTime = null, updated = null;
        try
        {
            await using var pos = new NpgsqlCommand("SELECT commit_lsn, commit_time, updated_at FROM replicator.position WHERE slot_name = $1", tgt);
            pos.Parameters.AddWithValue(options.SlotName);
            await using var reader = await pos.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                applied = reader.GetFieldValue<NpgsqlLogSequenceNumber>(0).ToString();
                commitTime = reader.IsDBNull(1) ? null : reader.GetFieldValue<DateTimeOffset>(1);
                updated = reader.GetFieldValue<DateTimeOffset>(2);
            }
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName)
        {
            // No replicator schema yet: nothing replicated to this target.
        }

        // Lag in seconds: zero when the slot has confirmed everything; else the age of the last applied commit.
        double? lagSeconds = lag is null ? null : lag <= 0 || commitTime is null ? 0 : Math.Max(0, (DateTimeOffset.UtcNow - commitTime.Value).TotalSeconds);
        return new ReplicationStatus(options.SlotName, exists, active, wal, confirmed, retained, lag, applied, commitTime, updated, lagSeconds, applied is not null);
    }

    private static void Print(ReplicationStatus s)
    {
        static string Bytes(long? b) => b is null ? "-" : b < 1024 ? $"{b} B" : b < 1 << 20 ? $"{b / 1024.0:F1} KiB" : b < 1 << 30 ? $"{b / 1048576.0:F1} MiB" : $"{b / 1073741824.0:F2} GiB";
        var rows = new (string, string)[]
        {
            ("slot", $"{s.Slot} ({(!s.SlotExists ? "does not exist" : s.SlotActive ? "streaming" : "not streaming")})"),
            ("snapshot", s.SnapshotDone ? "done" : "not done"),
            ("source WAL", s.SourceWalLsn ?? "-"),
            ("confirmed to slot", s.ConfirmedFlushLsn ?? "-"),
            ("applied on target", s.AppliedCommitLsn is null ? "-" : $"{s.AppliedCommitLsn} (committed on source {s.AppliedCommitTime?.ToString("u", CultureInfo.InvariantCulture) ?? "-"})"),
            ("lag", s.LagBytes is null ? "-" : $"{Bytes(s.LagBytes)}, {s.LagSeconds?.ToString("F1", CultureInfo.InvariantCulture) ?? "-"} s"),
            ("WAL retained by slot", Bytes(s.RetainedWalBytes)),
        };
        foreach (var (name, value) in rows)
            Console.Out.WriteLine($"{name,-22}{value}");
        if (!s.SlotExists)
            Console.Out.WriteLine($"The slot does not exist on the source: 'replicator run' creates it with the initial snapshot.");
    }
}
