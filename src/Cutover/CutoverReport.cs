using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Replicator.Cutover;

/// <summary>One precondition as checked: its name, whether it holds, and what was seen (or what to do).</summary>
public sealed record PreconditionResult(string Name, bool Ok, string Detail);

/// <summary>What a cutover (or rollback) did, step by step, and the write outage it measured.</summary>
public sealed class CutoverReport
{
    /// <summary><c>cutover</c> (source → target) or <c>rollback</c> (target → source).</summary>
    public required string Direction { get; init; }

    /// <summary>The side being left and the side switched to (no passwords).</summary>
    public required string From { get; init; }

    public required string To { get; init; }

    public List<PreconditionResult> Preconditions { get; } = [];

    /// <summary><c>dry-run</c>, <c>preconditions-failed</c>, <c>aborted</c> or <c>switched</c>.</summary>
    public string Outcome { get; set; } = "started";

    public string? AbortReason { get; set; }

    /// <summary>The source WAL position behind which every write made before the fence lies.</summary>
    public string? FenceLsn { get; set; }

    /// <summary>Sessions the fence ended.</summary>
    public int SessionsEnded { get; set; }

    /// <summary>Each step and how long it took, in order.</summary>
    public List<PhaseTime> Phases { get; } = [];

    /// <summary>Fence up → target writable and the switch hook done, in milliseconds.</summary>
    public double? OutageMilliseconds { get; set; }

    public int SequencesSet { get; set; }

    /// <summary>Tables compared while writes were fenced, and why those.</summary>
    public List<string> VerifiedTables { get; } = [];

    public string? VerifyScope { get; set; }

    public long RowsVerified { get; set; }

    public int TriggersRestored { get; set; }

    public int ConstraintsValidated { get; set; }

    public bool DestinationUnfenced { get; set; }

    public string? SwitchHookOutput { get; set; }

    /// <summary>Whether writes that got through the fence were looked for before the switch, and what was found (or why not).</summary>
    public string? WritesAfterFence { get; set; }

    /// <summary>Switched, but a write got through the fence while the switch hook ran: it is not on the target.</summary>
    [JsonIgnore]
    public bool WriteLost => WritesAfterFence?.StartsWith(LostPrefix, StringComparison.Ordinal) == true;

    internal const string LostPrefix = "LOST: ";

    /// <summary>Reverse replication prepared: slot on the new primary and the LSN it starts from.</summary>
    public string? ReverseSlot { get; set; }

    public string? ReverseStartLsn { get; set; }

    public bool SlotDropped { get; set; }

    public sealed record PhaseTime(string Phase, double Milliseconds);

    public string ToJson() => JsonSerializer.Serialize(this, CutoverJson.Default.CutoverReport);

    public string ToText()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"replicator {Direction}: {From} → {To}");
        if (Preconditions.Count > 0)
        {
            text.AppendLine("Preconditions:");
            foreach (var check in Preconditions)
                text.AppendLine(c, $"  [{(check.Ok ? "ok" : "FAIL")}] {check.Name}: {check.Detail}");
        }

        foreach (var phase in Phases)
            text.AppendLine(c, $"  {phase.Phase,-10} {phase.Milliseconds,8:0.0} ms");
        if (FenceLsn is not null)
            text.AppendLine(c, $"Fence LSN {FenceLsn}; {SessionsEnded} session(s) ended by the fence.");
        if (Outcome == "switched" || SequencesSet > 0)
            text.AppendLine(c, $"Sequences set: {SequencesSet}. Triggers enabled again: {TriggersRestored}. Constraints validated: {ConstraintsValidated}.");
        if (VerifyScope is not null)
            text.AppendLine(c, $"Final verification: {VerifyScope}{(VerifiedTables.Count > 0 ? $" ({VerifiedTables.Count} table(s), {RowsVerified} rows)" : "")}.");
        if (WritesAfterFence is not null)
            text.AppendLine(c, $"Writes after the fence: {WritesAfterFence}.");
        if (ReverseSlot is not null)
            text.AppendLine(c, $"Reverse replication prepared: slot {ReverseSlot} on the new primary, from {ReverseStartLsn}.");
        if (SwitchHookOutput is { Length: > 0 } output)
            text.AppendLine(c, $"Switch hook said: {output.Trim()}");
        text.AppendLine(Outcome switch
        {
            "switched" => string.Create(c, $"SWITCHED. Write outage: {OutageMilliseconds:0} ms (fence up → target writable, switch hook done).{(SlotDropped ? " The old slot was dropped." : "")}"),
            "dry-run" => Preconditions.All(p => p.Ok) ? "Dry run: every precondition holds; nothing was changed." : "Dry run: preconditions fail (see above); nothing was changed.",
            "preconditions-failed" => "NOT STARTED: preconditions fail (see above). Nothing was changed; the source stays writable.",
            _ => $"ABORTED: {AbortReason}",
        });
        return text.ToString();
    }
}

/// <summary>JSON contracts generated at compile time (the CLI is compiled ahead of time).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(CutoverReport))]
internal sealed partial class CutoverJson : JsonSerializerContext;
