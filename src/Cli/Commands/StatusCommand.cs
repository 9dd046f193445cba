using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Configuration;
using Replicator.Core.State;
using Replicator.Verifier;

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
                Console.Out.WriteLine(JsonSerializer.Serialize(status, StatusJson.Default.ReplicationStatus));
            else
                Print(status);
            return status.SlotExists || status.LastCutover?.Outcome == "switched" ? ExitCodes.Ok : ExitCodes.Failed;
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
        bool SnapshotDone,
        VerificationEntry? LastVerification = null,
        CutoverEntry? LastCutover = null);

    /// <summary>The latest cutover or rollback recorded on the target for this slot.</summary>
    public sealed record CutoverEntry(string Direction, string Outcome, DateTimeOffset StartedAt, double? OutageMilliseconds);

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
        // No row (or no replicator schema yet): nothing replicated to this target.
        var position = await TargetState.ReadPositionRowAsync(tgt, options.SlotName, cancellationToken).ConfigureAwait(false);
        var applied = position?.CommitLsn.ToString();
        var commitTime = position?.CommitTime;
        var updated = position?.UpdatedAt;

        // Lag in seconds: zero when the slot has confirmed everything; else the age of the last applied commit.
        double? lagSeconds = lag is null ? null : lag <= 0 || commitTime is null ? 0 : Math.Max(0, (DateTimeOffset.UtcNow - commitTime.Value).TotalSeconds);
        var verification = await VerificationHistory.LastAsync(tgt, options.SlotName, cleanOnly: false, cancellationToken).ConfigureAwait(false);
        return new ReplicationStatus(options.SlotName, exists, active, wal, confirmed, retained, lag, applied, commitTime, updated, lagSeconds, applied is not null,
            verification, await ReadCutoverAsync(tgt, options.SlotName, cancellationToken).ConfigureAwait(false));
    }

    private static async Task<CutoverEntry?> ReadCutoverAsync(NpgsqlConnection target, string slot, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT direction, coalesce(outcome, 'running'), started_at, outage_ms FROM replicator.cutover WHERE slot_name = $1 ORDER BY id DESC LIMIT 1", target);
        cmd.Parameters.AddWithValue(slot);
        try
        {
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
                ? new CutoverEntry(reader.GetString(0), reader.GetString(1), reader.GetFieldValue<DateTimeOffset>(2), reader.IsDBNull(3) ? null : reader.GetDouble(3))
                : null;
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InvalidSchemaName)
        {
            return null;
        }
    }

    private static string Ago(TimeSpan age) =>
        age.TotalMinutes < 1 ? $"{age.TotalSeconds:F0} s ago" : age.TotalHours < 1 ? $"{age.TotalMinutes:F0} min ago" : $"{age.TotalHours:F1} h ago";

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
            ("last verification", s.LastVerification is not { } v ? "none recorded"
                : $"{(v.Clean ? "clean" : $"{v.RowDifferences} row and {v.SchemaDifferences} schema difference(s)")}, {Ago(v.Age)} ({(v.Kind == "pass" ? "pass" : v.Kind)} #{v.Id})"),
            ("last cutover", s.LastCutover is not { } c ? "none"
                : $"{c.Direction} {c.Outcome} at {c.StartedAt.ToString("u", CultureInfo.InvariantCulture)}{(c.OutageMilliseconds is { } ms ? $", write outage {ms.ToString("F0", CultureInfo.InvariantCulture)} ms" : "")}"),
        };
        foreach (var (name, value) in rows)
            Console.Out.WriteLine($"{name,-22}{value}");
        if (!s.SlotExists && s.LastCutover?.Outcome == "switched")
            Console.Out.WriteLine("A cutover switched the application to the target and dropped the slot: replication in this direction is over.");
        else if (!s.SlotExists)
            Console.Out.WriteLine($"The slot does not exist on the source: 'replicator run' creates it with the initial snapshot.");
    }
}

/// <summary>JSON contracts generated at compile time (the CLI is compiled ahead of time).</summary>
[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(StatusCommand.ReplicationStatus))]
internal sealed partial class StatusJson : JsonSerializerContext;
