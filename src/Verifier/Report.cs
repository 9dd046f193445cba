using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Replicator.Verifier;

/// <summary>The result of one verifier pass: JSON for pipelines (<see cref="ToJson"/>), text for people (<see cref="ToText"/>).</summary>
public sealed class VerifyReport
{
    public DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset FinishedAt { get; set; }

    public double Seconds => (FinishedAt - StartedAt).TotalSeconds;

    /// <summary><c>user@host:port/db</c>, never a password.</summary>
    public string Source { get; init; } = "";

    public string Target { get; init; } = "";

    /// <summary>The source's consistent point C.</summary>
    public string CutLsn { get; set; } = "";

    /// <summary><c>barrier</c> (applier held at C) or <c>plain</c> (no replication running, or --no-barrier).</summary>
    public string CutKind { get; set; } = "";

    public string? AppliedLsn { get; set; }

    public double ApplierPauseMilliseconds { get; set; }

    public List<TableReport> Tables { get; } = [];

    public List<SchemaDifference> Schema { get; } = [];

    public RepairReport? Repair { get; set; }

    public long RowsChecked => Tables.Sum(t => Math.Max(t.SourceRows, t.TargetRows));

    public long RowDifferences => Tables.Sum(t => t.Differences);

    public int SchemaDifferences => Schema.Count(s => s.Severity == SchemaDifference.Difference);

    /// <summary>True when no row and no schema object differs (sequence values lagging are info, not differences).</summary>
    public bool Identical => RowDifferences == 0 && SchemaDifferences == 0 && Tables.All(t => t.Problem is null);

    /// <summary>
    /// True when <c>--repair</c> ran and left nothing different: every differing row was recopied and
    /// checks equal, and no schema object differs. The pass still reports what it found.
    /// </summary>
    public bool Repaired => Repair is { RemainingDifferences: 0 } && SchemaDifferences == 0 && Tables.All(t => t.Problem is null);

    public double RowsPerSecond => Seconds > 0 ? RowsChecked / Seconds : 0;

    public string ToJson() => JsonSerializer.Serialize(new ReportJson(
        Identical ? "identical" : Repaired ? "repaired" : "different",
        Identical,
        StartedAt,
        FinishedAt,
        Math.Round(Seconds, 3),
        Source,
        Target,
        new CutJson(CutLsn, CutKind, AppliedLsn, Math.Round(ApplierPauseMilliseconds, 1)),
        RowsChecked,
        Math.Round(RowsPerSecond),
        RowDifferences,
        SchemaDifferences,
        Tables,
        Schema,
        Repair), VerifierJson.Default.ReportJson);

    /// <summary>The JSON form of a report (names in snake case, nulls left out).</summary>
    internal sealed record ReportJson(
        string Result,
        bool Identical,
        DateTimeOffset StartedAt,
        DateTimeOffset FinishedAt,
        double Seconds,
        string Source,
        string Target,
        CutJson Cut,
        long RowsChecked,
        double RowsPerSecond,
        long RowDifferences,
        int SchemaDifferences,
        List<TableReport> Tables,
        List<SchemaDifference> Schema,
        RepairReport? Repair);

    internal sealed record CutJson(string Lsn, string Kind, string? AppliedLsn, double ApplierPauseMs);

    public string ToText()
    {
        var s = new StringBuilder();
        var pause = CutKind == "barrier" ? $", applier held {ApplierPauseMilliseconds:0.#} ms at applied LSN {AppliedLsn}" : "";
        s.AppendLine(CultureInfo.InvariantCulture, $"verify {Source} -> {Target}: cut at {CutLsn} ({CutKind}{pause})");
        var width = Math.Max(5, Tables.Count == 0 ? 5 : Tables.Max(t => t.Table.Length));
        s.AppendLine(CultureInfo.InvariantCulture, $"  {"table".PadRight(width)}  {"source rows",12}  {"target rows",12}  {"chunks",7}  {"differing",9}  {"differences",11}");
        foreach (var t in Tables)
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"  {t.Table.PadRight(width)}  {t.SourceRows,12:N0}  {t.TargetRows,12:N0}  {t.Chunks,7}  {t.ChunksDiffering,9}  {t.Differences,11:N0}");
            if (t.Problem is not null)
                s.AppendLine(CultureInfo.InvariantCulture, $"      {t.Problem}");
            foreach (var row in t.Rows)
                s.AppendLine(CultureInfo.InvariantCulture, $"      {row.Describe()}");
            if (t.Rows.Count < t.Differences && t.Rows.Count > 0)
                s.AppendLine(CultureInfo.InvariantCulture, $"      … and {t.Differences - t.Rows.Count:N0} more (raise --max-listed to list them)");
        }

        foreach (var d in Schema)
            s.AppendLine(CultureInfo.InvariantCulture, $"  schema {d.Severity}: {d.ObjectKind} {d.Object}: {d.Problem}");
        if (Repair is { } r)
        {
            var triggers = r.ReplicaRole ? "" : " (session_replication_role = replica not allowed: target triggers ran)";
            s.AppendLine(CultureInfo.InvariantCulture, $"  repair: {r.RowsDeleted:N0} rows deleted, {r.RowsInserted:N0} inserted on the target at cut {r.CutLsn}; {r.RemainingDifferences:N0} still differ after re-check{triggers}");
        }

        var verdict = Identical
            ? "IDENTICAL"
            : Repaired ? $"REPAIRED ({RowDifferences:N0} differing rows recopied and checked equal)"
            : $"DIFFERENT ({RowDifferences:N0} rows in {Tables.Count(t => t.Differences > 0 || t.Problem is not null)} tables, {SchemaDifferences} schema differences)";
        s.AppendLine(CultureInfo.InvariantCulture, $"result: {verdict}; {RowsChecked:N0} rows in {Tables.Count} tables checked in {Seconds:0.00} s ({RowsPerSecond:N0} rows/s)");
        return s.ToString();
    }
}

/// <summary>One table's result.</summary>
public sealed class TableReport
{
    public string Table { get; init; } = "";

    /// <summary><c>key ranges</c> (bisected by key) or <c>multiset</c> (no key: multiset of row hashes).</summary>
    public string Method { get; init; } = "";

    public IReadOnlyList<string> KeyColumns { get; init; } = [];

    public long SourceRows { get; set; }

    public long TargetRows { get; set; }

    public int Chunks { get; set; }

    public int ChunksDiffering { get; set; }

    /// <summary>Rows that differ: missing on the target, extra on the target, or changed.</summary>
    public long Differences { get; set; }

    /// <summary>A table-level problem (missing on the target); counted as a difference.</summary>
    public string? Problem { get; set; }

    /// <summary>The first <see cref="VerifyRequest.MaxListedDifferences"/> differences.</summary>
    public List<RowDifference> Rows { get; } = [];
}

/// <summary>One differing row.</summary>
public sealed class RowDifference
{
    public const string Missing = "missing";
    public const string Extra = "extra";
    public const string Changed = "changed";

    /// <summary><c>missing</c> (on the target), <c>extra</c> (on the target) or <c>changed</c>.</summary>
    public string Kind { get; init; } = "";

    /// <summary>Key column → value (text); null for a table without a key.</summary>
    public Dictionary<string, string?>? Key { get; init; }

    /// <summary>For <c>changed</c>: the columns whose values differ.</summary>
    public List<string>? Columns { get; init; }

    /// <summary>For <c>changed</c>: those columns' values on each side (long values shortened).</summary>
    public Dictionary<string, string?>? SourceValues { get; init; }

    public Dictionary<string, string?>? TargetValues { get; init; }

    /// <summary>For a table without a key: the whole row, and how many more copies one side has (<see cref="Count"/>, also set for a duplicated key).</summary>
    public Dictionary<string, string?>? Row { get; init; }

    public long? Count { get; init; }

    /// <summary>
    /// For a key held by more than one row on a side (a target without the primary key): how many
    /// rows hold it on each side. <see cref="Count"/> is then the number of rows that differ.
    /// </summary>
    public long? SourceRowsWithKey { get; init; }

    public long? TargetRowsWithKey { get; init; }

    public string Describe()
    {
        string Pairs(Dictionary<string, string?> d) => string.Join(", ", d.Select(p => $"{p.Key}={p.Value ?? "NULL"}"));
        var where = Key is not null ? Pairs(Key) : Row is not null ? "row (" + Pairs(Row) + ")" : "";
        if (TargetRowsWithKey is not null)
            where += $" (key held by {SourceRowsWithKey} source row(s), {TargetRowsWithKey} target row(s))";
        return Kind switch
        {
            Missing => $"missing on target: {where}{(Count > 1 ? $" ×{Count}" : "")}",
            Extra => $"extra on target: {where}{(Count > 1 ? $" ×{Count}" : "")}",
            _ => $"changed: {where}: columns {string.Join(", ", Columns ?? [])}",
        };
    }
}

/// <summary>A schema object that differs between the sides.</summary>
public sealed record SchemaDifference(string ObjectKind, string Object, string Problem, string Severity)
{
    public const string Difference = "difference";

    /// <summary>Expected during replication (sequence values lag); not a failure.</summary>
    public const string Info = "info";
}

/// <summary>What <c>--repair</c> did.</summary>
public sealed class RepairReport
{
    public string CutLsn { get; set; } = "";

    public long RowsDeleted { get; set; }

    public long RowsInserted { get; set; }

    /// <summary>Whether the repair ran with <c>session_replication_role = replica</c> (triggers and FK checks off).</summary>
    public bool ReplicaRole { get; set; }

    /// <summary>Repaired rows that still differ when checked again in the repair's cut (0 = repaired).</summary>
    public long RemainingDifferences { get; set; }

    public List<string> Tables { get; } = [];
}

/// <summary>JSON contracts generated at compile time (the CLI is compiled ahead of time).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(VerifyReport.ReportJson))]
internal sealed partial class VerifierJson : JsonSerializerContext;
