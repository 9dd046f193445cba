namespace Replicator.Core.Sql;

/// <summary>
/// A string as an SQL literal, for the few statements that cannot take parameters (DDL, utility
/// commands). Values travel as parameters everywhere else (DESIGN invariant 6).
/// </summary>
public static class SqlLiteral
{
    /// <summary>
    /// <c>'…'</c> with quotes doubled; <c>E'…'</c> with backslashes doubled too when there are any,
    /// so the result means the same whatever <c>standard_conforming_strings</c> says.
    /// </summary>
    public static string Quote(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException("a string literal cannot hold a NUL character", nameof(value));
        var quoted = value.Replace("'", "''", StringComparison.Ordinal);
        return value.Contains('\\', StringComparison.Ordinal)
            ? "E'" + quoted.Replace("\\", "\\\\", StringComparison.Ordinal) + "'"
            : "'" + quoted + "'";
    }
}
