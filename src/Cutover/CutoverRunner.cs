using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.Catalog;
using Replicator.Core.Configuration;
using Replicator.Core.Sql;
using Replicator.Core.State;
using Replicator.Snapshotter;
using Replicator.Verifier;

namespace Replicator.Cutover;

/// <summary>
/// The blue-green switch (DESIGN, Cutover), from the side being left (<c>from</c>) to the side whose
/// applier replays its changes (<c>to</c>): preconditions → write fence on <c>from</c> → drain (the
/// applier applies everything below the fence LSN, then holds) → sequences → final verification →
/// [reverse replication prepared] → target ready (triggers, NOT VALID constraints, read-only lifted)
/// → switch hook. The write outage is measured from the fence to the end of the hook. Every step
/// registers how to undo it; any failure before the switch undoes them in reverse order, so the side
/// being left is writable again and replication goes on. After the switch the applier is released as
/// <c>switched</c> and stops; <c>from</c> stays read-only.
/// <para>A cutover is <c>from</c> = source, <c>to</c> = target, slot = the forward slot. A rollback is
/// the same with the sides swapped and the reverse slot.</para>
/// </summary>
public sealed class CutoverRunner(CutoverOptions options, ConnectionInfo from, ConnectionInfo to, string direction, ILoggerFactory loggers)
{
    private readonly ILogger _logger = loggers.CreateLogger<CutoverRunner>();

    public async Task<CutoverReport> RunAsync(CancellationToken cancellationToken)
    {
        var report = new CutoverReport { Direction = direction, From = from.ToString(), To = to.ToString() };
        await using var fromConnection = await OpenAsync(from, cancellationToken).ConfigureAwait(false);
        await using var toConnection = await OpenAsync(to, cancellationToken).ConfigureAwait(false);

        report.Preconditions.AddRange(await Preconditions.CheckAsync(options, fromConnection, toConnection, cancellationToken).ConfigureAwait(false));
        foreach (var check in report.Preconditions)
            _logger.LogInformation("Precondition {Name}: {Result} — {Detail}", check.Name, check.Ok ? "ok" : "FAILED", check.Detail);
        if (options.DryRun || report.Preconditions.Any(p => !p.Ok))
        {
            report.Outcome = options.DryRun ? "dry-run" : "preconditions-failed";
            return report;
        }

        await TargetState.EnsureAsync(toConnection, cancellationToken).ConfigureAwait(false);
        var cutoverId = await RecordStartAsync(toConnection, cancellationToken).ConfigureAwait(false);
        var estimatedRows = await EstimateRowsAsync(fromConnection, cancellationToken).ConfigureAwait(false);
        var baseline = await VerificationHistory.LastAsync(toConnection, options.Slot, cleanOnly: true, cancellationToken).ConfigureAwait(false);

        // The same comparison once before the fence, through the applier's barrier: a difference is
        // found before writes stop, and the fenced pass finds everything loaded and compiled.
        try
        {
            await VerifyAsync(fromConnection, toConnection, baseline, estimatedRows, fenced: false, null, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CutoverException or VerifyException)
        {
            report.Outcome = "aborted";
            report.AbortReason = Reason(e) + " (found before the fence; nothing was changed)";
            await RecordEndAsync(toConnection, cutoverId, report, CancellationToken.None).ConfigureAwait(false);
            throw new CutoverException(report.AbortReason, true, e) { Report = report };
        }

        // Writes that get through the fence are looked for with a slot of the watch's own, made now:
        // making it waits for the transactions running, which must not lengthen the outage.
        var (watch, watchSkipped) = await WritesAfterFence.StartAsync(ct => OpenAsync(from, ct), options.Publication, cancellationToken).ConfigureAwait(false);
        await using var watchScope = watch;
        if (watchSkipped is not null)
        {
            report.WritesAfterFence = watchSkipped;
            _logger.LogWarning("Cutover: {Skipped}", watchSkipped);
        }

        var undo = new Stack<(string What, Func<Task> Action)>();
        var outage = Stopwatch.StartNew();
        var phase = Stopwatch.StartNew();
        void Done(string name)
        {
            report.Phases.Add(new CutoverReport.PhaseTime(name, phase.Elapsed.TotalMilliseconds));
            _logger.LogInformation("Cutover step {Phase} done in {Milliseconds:0.0} ms", name, phase.Elapsed.TotalMilliseconds);
            phase.Restart();
        }

        long? barrierId = null;
        NpgsqlLogSequenceNumber fenceLsn = default;
        (Dictionary<string, string> From, Dictionary<string, string> To)? reverseFingerprints = null;
        try
        {
            // 1. Fence: nothing new commits on the side being left.
            var fence = await WriteFence.CreateAsync(fromConnection, ct => OpenAsync(from, ct), options, ShellHook.Environment(from, direction, null), cancellationToken).ConfigureAwait(false);
            if (watch is not null)
                fence.OwnSessions.Add(watch.ProcessId);
            undo.Push(("lift the write fence", () => fence.LiftAsync(CancellationToken.None)));
            await fence.RaiseAsync(_logger, cancellationToken).ConfigureAwait(false);
            fenceLsn = await fence.MarkAsync(cancellationToken).ConfigureAwait(false);
            await Preconditions.RefusePreparedTransactionsAsync(fromConnection, cancellationToken).ConfigureAwait(false);
            report.FenceLsn = fenceLsn.ToString();
            report.SessionsEnded = fence.SessionsEnded;
            // While the applier drains, the watch's slot moves up to the mark (its own session).
            watch?.StartAdvance(fenceLsn, cancellationToken);
            Done("fence");

            // 2. Drain: the applier applies everything below the fence LSN, then holds.
            barrierId = await InsertBarrierAsync(toConnection, fenceLsn, cancellationToken).ConfigureAwait(false);
            var held = barrierId.Value;
            undo.Push(("release the applier", () => ReleaseAsync(toConnection, held, "aborted", CancellationToken.None)));
            await WaitForDrainAsync(toConnection, held, fenceLsn, cancellationToken).ConfigureAwait(false);
            Done("drain");

            // 3. Sequences.
            report.SequencesSet = await SequenceSync.SyncAsync(fromConnection, toConnection, cancellationToken).ConfigureAwait(false);
            Done("sequences");

            // 4. Final verification of what changed since the last clean pass.
            await VerifyAsync(fromConnection, toConnection, baseline, estimatedRows, fenced: true, report, cancellationToken).ConfigureAwait(false);
            Done("verify");

            // 5. Replication back, set up before the target takes its first write.
            if (options.Reverse)
            {
                reverseFingerprints = (await TableFingerprints.ReadAsync(fromConnection, cancellationToken).ConfigureAwait(false),
                    await TableFingerprints.ReadAsync(toConnection, cancellationToken).ConfigureAwait(false));
                await PrepareReverseAsync(report, fromConnection, toConnection, undo, cancellationToken).ConfigureAwait(false);
                Done("reverse");
            }

            // 6. Target ready for the application.
            await MakeReadyAsync(report, fromConnection, toConnection, undo, cancellationToken).ConfigureAwait(false);
            Done("ready");

            // 7. Nothing committed on the side being left after the fence: the applier, held at the
            // mark, would never carry such a write over.
            if (watch is not null)
            {
                if (await watch.FindAsync(fenceLsn, cancellationToken).ConfigureAwait(false) is { } write)
                {
                    report.WritesAfterFence = "FOUND: " + write;
                    throw new CutoverException(
                        $"a write committed on {from.Database} after the write fence went up: {write}. A session overrode the read-only default (BEGIN READ WRITE, "
                        + "SET default_transaction_read_only = off, SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE), a role of --allow-role wrote, or a client went around a --fence-command pooler. "
                        + "Switching now would lose it; find that writer (pg_stat_activity; log_statement = 'mod' in the server log), stop it, and run the cutover again", true);
                }

                report.WritesAfterFence = "none (checked just before the switch)";
                Done("checked");
            }

            // 8. Switch.
            await SwitchAsync(report, fenceLsn, cancellationToken).ConfigureAwait(false);
            Done("switch");
            outage.Stop();
            report.OutageMilliseconds = outage.Elapsed.TotalMilliseconds;
            report.Outcome = "switched";
            Replicator.Core.Metrics.ReplicatorMetrics.CutoverWriteOutage.Record(outage.Elapsed.TotalSeconds);
        }
        catch (Exception e)
        {
            report.Outcome = "aborted";
            report.AbortReason = Reason(e);
            _logger.LogError("Cutover aborted: {Reason}. Undoing {Steps} step(s)", report.AbortReason, undo.Count);
            var failures = await UndoAsync(undo).ConfigureAwait(false);
            await RecordEndAsync(toConnection, cutoverId, report, CancellationToken.None).ConfigureAwait(false);
            var writable = failures.Count == 0;
            if (!writable)
            {
                report.AbortReason += $". UNDO FAILED for: {string.Join("; ", failures)} — " + (options.FenceCommand is null
                    ? $"lift the fence by hand (on {from}, in a session with SET default_transaction_read_only = off: ALTER DATABASE {Identifier.Quote(from.Database)} RESET default_transaction_read_only)"
                    : "lift the pooler's fence by hand (what --unfence-command does)");
            }

            throw new CutoverException(report.AbortReason, writable, e) { Report = report };
        }

        // After the switch: the old applier stops, the old side stays read-only. The application
        // already writes to the target, so nothing here may undo the switch: a failure is reported.
        try
        {
            // A write that got through while the switch hook ran is not on the target, and nothing
            // may undo the switch now: it is named, for the operator to carry over by hand.
            if (watch is not null && await watch.FindAsync(fenceLsn, cancellationToken).ConfigureAwait(false) is { } late)
            {
                report.WritesAfterFence = $"{CutoverReport.LostPrefix}{late} committed on {from.Database} while the switch hook ran; it is not on the target: carry it over by hand";
                _logger.LogError("Switched, but a write committed on {From} while the switch hook ran and is not on the target: {Write}", from, late);
            }

            await ReleaseSwitchedAsync(toConnection, barrierId!.Value, cutoverId).ConfigureAwait(false);
            if (reverseFingerprints is { } fingerprints)
            {
                // The reverse direction's first "clean pass": both sides were equal at the switch.
                await using var state = await OpenAsync(from, cancellationToken).ConfigureAwait(false);
                await VerificationHistory.InsertAsync(state, options.ReverseSlot, "cutover", DateTimeOffset.UtcNow, DateTimeOffset.UtcNow,
                    report.ReverseStartLsn is { } start ? NpgsqlLogSequenceNumber.Parse(start) : null, true, fingerprints.To.Count, 0, 0, 0,
                    TableFingerprints.ToJson(fingerprints.To, fingerprints.From), CancellationToken.None).ConfigureAwait(false);
            }

            if (!options.KeepSlot)
                report.SlotDropped = await DropSlotAsync(fromConnection, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or OperationCanceledException)
        {
            _logger.LogWarning("Switched, but a step after the switch failed: {Error}. If the old applier still runs, stop it; drop slot {Slot} on {From} by hand", e.Message, options.Slot, from);
        }

        await RecordEndAsync(toConnection, cutoverId, report, CancellationToken.None).ConfigureAwait(false);
        return report;
    }

    private static async Task<NpgsqlConnection> OpenAsync(ConnectionInfo info, CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(info.ToNpgsqlConnectionString(b =>
        {
            b.Pooling = false;
            b.ApplicationName = "replicator-cutover";
            b.CommandTimeout = 0;
        }));
        try
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await TargetState.WriteThroughFenceAsync(connection, cancellationToken).ConfigureAwait(false);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task<long> InsertBarrierAsync(NpgsqlConnection toConnection, NpgsqlLogSequenceNumber fenceLsn, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("""
            INSERT INTO replicator.barrier (slot_name, cut_lsn, purpose, holder_pid) VALUES ($1, $2, 'cutover', pg_backend_pid()) RETURNING id
            """, toConnection);
        cmd.Parameters.AddWithValue(options.Slot);
        cmd.Parameters.Add(Parameters.Lsn(fenceLsn));
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    private async Task WaitForDrainAsync(NpgsqlConnection toConnection, long id, NpgsqlLogSequenceNumber fenceLsn, CancellationToken cancellationToken)
    {
        var waited = Stopwatch.StartNew();
        await using var poll = new NpgsqlCommand("SELECT reached_at IS NOT NULL FROM replicator.barrier WHERE id = $1", toConnection);
        poll.Parameters.AddWithValue(id);
        while (!(bool)(await poll.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
        {
            if (waited.Elapsed >= options.DrainTimeout)
            {
                var applied = await TargetState.ReadPositionAsync(toConnection, options.Slot, cancellationToken).ConfigureAwait(false);
                throw new CutoverException(
                    $"the applier for slot {options.Slot} did not apply everything up to the fence ({fenceLsn}) within {options.DrainTimeout.TotalSeconds:0} s " +
                    $"(applied through {applied?.ToString() ?? "-"}): is 'replicator run' (or apply) running and keeping up? Raise --drain-timeout if it is just slow");
            }

            await Task.Delay(2, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task ReleaseAsync(NpgsqlConnection toConnection, long id, string outcome, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("UPDATE replicator.barrier SET released_at = clock_timestamp(), outcome = $2 WHERE id = $1", toConnection);
        cmd.Parameters.AddWithValue(id);
        cmd.Parameters.AddWithValue(outcome);
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Tells the held applier, and any applier started later for the slot, that the application
    /// writes to the target now: the barrier is released as switched and the cutover recorded as
    /// switched in one transaction. Retried over new sessions when this one fails: the applier takes
    /// a lost cutover session for an abandoned cutover (after a grace period) and would replicate on
    /// into the database the application writes to.
    /// </summary>
    private async Task ReleaseSwitchedAsync(NpgsqlConnection toConnection, long barrierId, long cutoverId)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var connection = attempt == 1 ? toConnection : await OpenAsync(to, CancellationToken.None).ConfigureAwait(false);
                try
                {
                    await using var batch = new NpgsqlBatch(connection)
                    {
                        BatchCommands =
                        {
                            new("UPDATE replicator.barrier SET released_at = clock_timestamp(), outcome = 'switched' WHERE id = $1") { Parameters = { new() { Value = barrierId } } },
                            new("UPDATE replicator.cutover SET outcome = 'switched', finished_at = clock_timestamp() WHERE id = $1") { Parameters = { new() { Value = cutoverId } } },
                        },
                    };
                    await batch.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                    return;
                }
                finally
                {
                    if (!ReferenceEquals(connection, toConnection))
                        await connection.DisposeAsync().ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException && attempt < 4)
            {
                _logger.LogWarning("Switched, but telling the applier so failed ({Error}); trying again on a new session", e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(250 * attempt)).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// What the final verification covers: every table when asked or when the database is small,
    /// else the tables whose change fingerprints (either side) moved since the last clean pass.
    /// Null tables: skip; an empty list: every table.
    /// </summary>
    private async Task<(string Scope, IReadOnlyList<string>? Tables)> ChooseTablesAsync(NpgsqlConnection fromConnection, NpgsqlConnection toConnection,
        VerificationEntry? baseline, long estimatedRows, CancellationToken cancellationToken)
    {
        if (options.FinalVerify == FinalVerification.None)
            return ("skipped (--final-verify none)", null);
        if (options.FinalVerify == FinalVerification.Full)
            return ("every table (--final-verify full)", []);
        if (estimatedRows <= options.FullVerifyRows)
            return ($"every table (about {estimatedRows} rows, at most {options.FullVerifyRows})", []);
        if (TableFingerprints.FromJson(baseline?.FingerprintsJson) is not ({ } thenFrom, { } thenTo))
            return ("every table (no clean pass with change fingerprints recorded)", []);
        var nowFrom = await TableFingerprints.ReadAsync(fromConnection, cancellationToken).ConfigureAwait(false);
        var nowTo = await TableFingerprints.ReadAsync(toConnection, cancellationToken).ConfigureAwait(false);
        var tables = TableFingerprints.Changed(thenFrom, nowFrom).Union(TableFingerprints.Changed(thenTo, nowTo))
            .Where(nowFrom.ContainsKey).Order(StringComparer.Ordinal).ToList();
        return tables.Count == 0
            ? ($"nothing changed since clean pass #{baseline!.Id}", null)
            : ($"tables changed since clean pass #{baseline!.Id}", tables);
    }

    /// <summary>
    /// Compares the chosen tables. <paramref name="fenced"/>: both sides are still, so the snapshots
    /// are taken as they are; otherwise (the check before the fence, which also loads and compiles
    /// everything the fenced pass needs) through the applier's barrier like any pass.
    /// </summary>
    private async Task<VerifyReport?> VerifyAsync(NpgsqlConnection fromConnection, NpgsqlConnection toConnection, VerificationEntry? baseline,
        long estimatedRows, bool fenced, CutoverReport? report, CancellationToken cancellationToken)
    {
        var (scope, tables) = await ChooseTablesAsync(fromConnection, toConnection, baseline, estimatedRows, cancellationToken).ConfigureAwait(false);
        if (report is not null)
            report.VerifyScope = scope;
        if (tables is null)
            return null;
        var request = new VerifyRequest
        {
            SlotName = options.Slot,
            Quiescent = fenced,
            Record = false,
            SchemaCheck = false,
            Tables = tables,
            Jobs = tables.Count == 0 ? options.VerifyJobs : Math.Clamp(tables.Count, 1, options.VerifyJobs),
            BarrierTimeout = options.DrainTimeout,
            // Tables of up to this many rows are hashed whole, without sampling keys for buckets
            // first: that planning costs more than it saves on the small tables a cutover usually
            // finds changed, and the time counts as write outage. A difference is still found
            // row by row.
            BisectRows = 200_000,
        };
        var result = await Verification.RunPassAsync(request, from, to, loggers, cancellationToken).ConfigureAwait(false);
        if (report is not null)
        {
            report.VerifiedTables.AddRange(result.Tables.Select(t => t.Table));
            report.RowsVerified = result.RowsChecked;
        }

        if (!result.Identical)
        {
            var differing = result.Tables.Where(t => t.Differences > 0 || t.Problem is not null)
                .Select(t => $"{t.Table}: {(t.Problem ?? t.Differences + " row(s) differ")}").Take(5);
            throw new CutoverException($"the {(fenced ? "final" : "pre-fence")} verification found differences ({string.Join("; ", differing)}): " +
                "run 'replicator verify' for the full report, repair (--repair), and cut over again");
        }

        return result;
    }

    private async Task PrepareReverseAsync(CutoverReport report, NpgsqlConnection fromConnection, NpgsqlConnection toConnection,
        Stack<(string What, Func<Task> Action)> undo, CancellationToken cancellationToken)
    {
        // The publication lists the user tables (never FOR ALL TABLES: replicator's own tables must not travel back).
        var tables = (await TableCatalog.LoadAsync(toConnection, cancellationToken).ConfigureAwait(false)).Where(t => t.Parent is null).ToList();
        var publication = Identifier.Quote(options.ReverseSlot);
        await using (var exists = new NpgsqlCommand("""
            SELECT p.puballtables OR EXISTS (SELECT 1 FROM pg_publication_tables t WHERE t.pubname = p.pubname AND t.schemaname = 'replicator')
            FROM pg_publication p WHERE p.pubname = $1
            """, toConnection))
        {
            exists.Parameters.AddWithValue(options.ReverseSlot);
            var found = await exists.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            if (found is true)
                throw new CutoverException($"publication {publication} on the target publishes replicator's own tables (FOR ALL TABLES, or the replicator schema), which must not travel back: drop it (DROP PUBLICATION {publication}) and let the cutover create its own, or choose --reverse-slot");
            if (found is null)
            {
                await using var create = new NpgsqlCommand(tables.Count == 0
                    ? $"CREATE PUBLICATION {publication}"
                    : $"CREATE PUBLICATION {publication} FOR TABLE {string.Join(", ", tables.Select(t => t.QuotedName))}", toConnection);
                await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                undo.Push(("drop the reverse publication", () => ExecuteAsync(toConnection, $"DROP PUBLICATION IF EXISTS {publication}")));
            }
        }

        // The slot waits for every transaction holding an xid on the target to end, while the source
        // is fenced: bounded like the drain.
        NpgsqlLogSequenceNumber start;
        using (var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            bounded.CancelAfter(options.DrainTimeout);
            try
            {
                await using var slot = await SnapshotSession.CreateSlotAsync(to.ToNpgsqlConnectionString(), options.ReverseSlot, temporary: false, bounded.Token).ConfigureAwait(false);
                start = slot.Lsn;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                var blockers = await SlotBlockers.DescribeAsync(toConnection, CancellationToken.None).ConfigureAwait(false) ?? "none left";
                throw new CutoverException(string.Create(CultureInfo.InvariantCulture,
                    $"the reverse slot {options.ReverseSlot} was not created on the target within {options.DrainTimeout.TotalSeconds:0} s (--drain-timeout): a slot waits for every transaction holding a transaction id there to end, oldest: {blockers}. Commit or end them and run the cutover again"));
            }
        }

        undo.Push(("drop the reverse slot", () => ExecuteAsync(toConnection, $"SELECT pg_drop_replication_slot({SqlLiteral.Quote(options.ReverseSlot)})")));

        // The old source becomes the reverse applier's target: its state says "snapshot done at the slot's start".
        await TargetState.EnsureAsync(fromConnection, cancellationToken).ConfigureAwait(false);
        await using (var position = new NpgsqlCommand("""
            INSERT INTO replicator.position (slot_name, commit_lsn, commit_time) VALUES ($1, $2, clock_timestamp())
            ON CONFLICT (slot_name) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, commit_time = EXCLUDED.commit_time, kafka_offsets = NULL, updated_at = clock_timestamp()
            """, fromConnection))
        {
            position.Parameters.AddWithValue(options.ReverseSlot);
            position.Parameters.Add(Parameters.Lsn(TargetState.PositionBefore(start)));
            await position.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        undo.Push(("forget the reverse position", () => ExecuteAsync(fromConnection, $"DELETE FROM replicator.position WHERE slot_name = {SqlLiteral.Quote(options.ReverseSlot)}")));
        report.ReverseSlot = options.ReverseSlot;
        report.ReverseStartLsn = start.ToString();
    }

    private static async Task MakeReadyAsync(CutoverReport report, NpgsqlConnection fromConnection, NpgsqlConnection toConnection,
        Stack<(string What, Func<Task> Action)> undo, CancellationToken cancellationToken)
    {
        report.TriggersRestored = await TargetState.RestoreTriggersAsync(toConnection, cancellationToken).ConfigureAwait(false);
        if (report.TriggersRestored > 0)
            undo.Push(("disable the triggers again", () => TargetState.DisableUserTriggersAsync(toConnection, CancellationToken.None)));
        report.ConstraintsValidated = await ValidateConstraintsAsync(fromConnection, toConnection, cancellationToken).ConfigureAwait(false);

        // A rollback switches to a side an earlier cutover fenced.
        if (await WriteFence.IsDatabaseFencedAsync(toConnection, cancellationToken).ConfigureAwait(false))
        {
            string database;
            await using (var name = new NpgsqlCommand("SELECT current_database()", toConnection))
                database = (string)(await name.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            await WriteFence.LiftDatabaseAsync(toConnection, database, cancellationToken).ConfigureAwait(false);
            report.DestinationUnfenced = true;
            undo.Push(("fence the switch-to side again", () => WriteFence.FenceDatabaseAsync(toConnection, database, CancellationToken.None)));
        }
    }

    /// <summary>Constraints valid on the side being left but NOT VALID on the side switched to are validated there.</summary>
    private static async Task<int> ValidateConstraintsAsync(NpgsqlConnection fromConnection, NpgsqlConnection toConnection, CancellationToken cancellationToken)
    {
        const string sql = $"""
            SELECT n.nspname, c.relname, k.conname, k.convalidated
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE k.contype IN ('c', 'f') AND {TableCatalog.UserSchemas}
            """;
        var validOnSource = new HashSet<(string, string, string)>();
        await using (var cmd = new NpgsqlCommand(sql, fromConnection))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                if (reader.GetBoolean(3))
                    validOnSource.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2)));
            }
        }

        var toValidate = new List<(string Schema, string Table, string Constraint)>();
        await using (var cmd = new NpgsqlCommand(sql, toConnection))
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var key = (reader.GetString(0), reader.GetString(1), reader.GetString(2));
                if (!reader.GetBoolean(3) && validOnSource.Contains(key))
                    toValidate.Add(key);
            }
        }

        foreach (var (schema, table, constraint) in toValidate)
            await ExecuteAsync(toConnection, $"ALTER TABLE {Identifier.Quote(schema, table)} VALIDATE CONSTRAINT {Identifier.Quote(constraint)}").ConfigureAwait(false);
        return toValidate.Count;
    }

    private async Task SwitchAsync(CutoverReport report, NpgsqlLogSequenceNumber fenceLsn, CancellationToken cancellationToken)
    {
        var environment = ShellHook.Environment(to, direction, fenceLsn.ToString());
        if (options.SwitchCommand is { } command)
            report.SwitchHookOutput = await ShellHook.RunAsync("the switch hook (--switch-command)", command, environment, options.HookTimeout, cancellationToken).ConfigureAwait(false);
        if (options.SwitchUrl is { } url)
            report.SwitchHookOutput += await ShellHook.PostAsync(url, environment, options.HookTimeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Drops the slot of the direction just left (its capture stops with it), so the old side keeps no WAL for it.</summary>
    private async Task<bool> DropSlotAsync(NpgsqlConnection fromConnection, CancellationToken cancellationToken)
    {
        var waited = Stopwatch.StartNew();
        await using var drop = new NpgsqlCommand("""
            SELECT CASE WHEN active AND $2 THEN pg_terminate_backend(active_pid) = false
                        WHEN active THEN false
                        ELSE pg_drop_replication_slot(slot_name) IS NOT NULL END -- void, never null: true once dropped
            FROM pg_replication_slots WHERE slot_name = $1
            """, fromConnection);
        drop.Parameters.AddWithValue(options.Slot);
        var force = drop.Parameters.Add(new NpgsqlParameter { Value = false, NpgsqlDbType = NpgsqlDbType.Boolean });
        while (waited.Elapsed < TimeSpan.FromSeconds(30))
        {
            // Give the stopping capture a few seconds to let go; then end its walsender.
            force.Value = waited.Elapsed > TimeSpan.FromSeconds(5);
            try
            {
                var result = await drop.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
                if (result is null || result is true)
                {
                    _logger.LogInformation("Dropped slot {Slot} on {From}: the old direction keeps no WAL", options.Slot, from);
                    return true;
                }
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse)
            {
                // Became active between the check and the drop: look again.
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }

        _logger.LogWarning("Slot {Slot} on {From} is still in use; drop it when its capture has stopped: SELECT pg_drop_replication_slot('{Slot}')", options.Slot, from, options.Slot);
        return false;
    }

    private async Task<List<string>> UndoAsync(Stack<(string What, Func<Task> Action)> undo)
    {
        var failures = new List<string>();
        while (undo.TryPop(out var step))
        {
            try
            {
                await step.Action().ConfigureAwait(false);
                _logger.LogInformation("Undone: {Step}", step.What);
            }
            catch (Exception e) when (e is NpgsqlException or CutoverException or InvalidOperationException)
            {
                _logger.LogError("Could not {Step}: {Error}", step.What, e.Message);
                failures.Add($"{step.What} ({e.Message})");
            }
        }

        return failures;
    }

    private async Task<long> RecordStartAsync(NpgsqlConnection toConnection, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(
            "INSERT INTO replicator.cutover (slot_name, direction, started_at) VALUES ($1, $2, clock_timestamp()) RETURNING id", toConnection);
        cmd.Parameters.AddWithValue(options.Slot);
        cmd.Parameters.AddWithValue(direction);
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    private static async Task RecordEndAsync(NpgsqlConnection toConnection, long id, CutoverReport report, CancellationToken cancellationToken)
    {
        try
        {
            await using var cmd = new NpgsqlCommand("""
                UPDATE replicator.cutover SET finished_at = clock_timestamp(), outcome = $2, outage_ms = $3, fence_lsn = $4, report = $5::jsonb WHERE id = $1
                """, toConnection);
            cmd.Parameters.AddWithValue(id);
            cmd.Parameters.AddWithValue(report.Outcome);
            cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)report.OutageMilliseconds ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Double });
            cmd.Parameters.Add(new NpgsqlParameter { Value = report.FenceLsn is { } lsn ? NpgsqlLogSequenceNumber.Parse(lsn) : DBNull.Value, NpgsqlDbType = NpgsqlDbType.PgLsn });
            cmd.Parameters.AddWithValue(report.ToJson());
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // The record is for 'status'; the report on stdout is what counts. (A session that
            // broke earlier throws InvalidOperationException: it is not open any more.)
        }
    }

    private static async Task<long> EstimateRowsAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand($"""
            SELECT coalesce(sum(CASE WHEN c.reltuples < 0 THEN pg_relation_size(c.oid) / 100 ELSE c.reltuples END), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND {TableCatalog.UserSchemas}
            """, connection);
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var cmd = new NpgsqlCommand(sql, connection);
        await cmd.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
    }


    private static string Reason(Exception e) => e switch
    {
        CutoverException c => c.Message,
        VerifyException v => "the final verification could not run: " + v.Message,
        PostgresException p => $"{p.MessageText} (SQLSTATE {p.SqlState})",
        OperationCanceledException => "interrupted",
        _ => e.Message,
    };
}
