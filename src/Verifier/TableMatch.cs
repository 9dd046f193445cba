using Replicator.Core.Catalog;

namespace Replicator.Verifier;

/// <summary>A table present on both sides, with the canonical row built for each side over the columns both have.</summary>
internal sealed class TableMatch
{
    public TableMatch(TableInfo source, TableInfo target)
    {
        SourceTable = source;
        TargetTable = target;
        var targetColumns = target.Columns.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        var columns = source.Columns.Select(c => c.Name).Where(targetColumns.Contains).ToList();
        var keys = source.KeyColumns.Count > 0 && source.KeyColumns.All(targetColumns.Contains) ? source.KeyColumns : [];
        var wholeRow = source.Columns.Select(c => c.Name).SequenceEqual(columns) && target.Columns.Select(c => c.Name).SequenceEqual(columns)
            && !columns.Contains(CanonicalRow.RowAlias);
        Source = new CanonicalRow(source, columns, keys, wholeRow);
        Target = new CanonicalRow(target, columns, keys, wholeRow);
    }

    public TableInfo SourceTable { get; }

    public TableInfo TargetTable { get; }

    public CanonicalRow Source { get; }

    public CanonicalRow Target { get; }

    public string DisplayName => SourceTable.DisplayName;
}
