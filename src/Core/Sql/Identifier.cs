namespace Replicator.Core.Sql;

/// <summary>
/// Identifier quoting (DESIGN invariant 6). Every schema, table and column name that reaches SQL
/// text goes through <see cref="Quote(string)"/>; values never do — they travel as parameters or COPY.
/// </summary>
public static class Identifier
{
    /// <summary>Double-quotes <paramref name="name"/>, doubling embedded quotes.</summary>
    public static string Quote(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException($"identifier contains a NUL character: {name.Replace("\0", "\\0", StringComparison.Ordinal)}", nameof(name));
        return "\"" + name.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    }

    /// <summary><c>"schema"."table"</c>.</summary>
    public static string Quote(string schema, string table) => Quote(schema) + "." + Quote(table);
}
