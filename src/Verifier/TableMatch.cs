using Replicator.Core.Catalog;

namespace Replicator.Verifier;

/// <summary>A table present on both sides, with the canonical row built for each side over the columns both have.</summary>
internal sealed class TableMatch
{
    /// <param name="typedHash">Both servers are PostgreSQL 14+ (<c>hash_record_extended</c>): hash columns whose type is the same on both sides and <see cref="CanonicalRow.HashesLikeText"/> by value, not through text.</param>
    public TableMatch(TableInfo source, TableInfo target, bool typedHash = false)
    {
        SourceTable = source;
        TargetTable = target;
        var targetColumns = target.Columns.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        var columns = source.Columns.Select(c => c.Name).Where(targetColumns.Contains).ToList();
        MissingOnTarget = source.Columns.Select(c => c.Name).Where(c => !targetColumns.Contains(c)).ToList();
        var keys = source.KeyColumns.Count > 0 && source.KeyColumns.All(targetColumns.Contains) ? source.KeyColumns : [];
        var wholeRow = source.Columns.Select(c => c.Name).SequenceEqual(columns) && target.Columns.Select(c => c.Name).SequenceEqual(columns)
            && !columns.Contains(CanonicalRow.RowAlias);
        var typed = typedHash
            ? columns.Where(c => source.Column(c) is var s && target.Column(c) is var t && s.TypeOid == t.TypeOid && s.TypeName == t.TypeName && CanonicalRow.HashesLikeText(s))
                .ToHashSet(StringComparer.Ordinal)
            : null;
        Source = new CanonicalRow(source, columns, keys, wholeRow, typed);
        Target = new CanonicalRow(target, columns, keys, wholeRow, typed);
    }

    public TableInfo SourceTable { get; }

    /// <summary>
    /// Source columns the target lacks: their values cannot be compared, so the table is a problem
    /// whatever the schema check says. Columns only the target has are not (see docs/verify.md).
    /// </summary>
    public IReadOnlyList<string> MissingOnTarget { get; }

    public TableInfo TargetTable { get; }

    public CanonicalRow Source { get; }

    public CanonicalRow Target { get; }

    public string DisplayName => SourceTable.DisplayName;
}
