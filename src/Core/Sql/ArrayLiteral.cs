using System.Text;

namespace Replicator.Core.Sql;

/// <summary>
/// PostgreSQL array literals of text elements (<c>{"a","b",NULL}</c>): every element in double
/// quotes with <c>"</c> and <c>\</c> escaped, NULL bare, so that any text survives, and the server's
/// <c>array_in</c> reads it back element for element.
/// </summary>
public static class ArrayLiteral
{
    /// <summary>Appends one element (no separator).</summary>
    public static void AppendElement(StringBuilder literal, string? text)
    {
        if (text is null)
        {
            literal.Append("NULL");
            return;
        }

        literal.Append('"');
        var span = text.AsSpan();
        int special;
        while ((special = span.IndexOfAny('"', '\\')) >= 0)
        {
            literal.Append(span[..special]).Append('\\').Append(span[special]);
            span = span[(special + 1)..];
        }

        literal.Append(span).Append('"');
    }

    /// <summary>The whole literal, braces included.</summary>
    public static string Format(IEnumerable<string?> elements)
    {
        var literal = new StringBuilder("{");
        var first = true;
        foreach (var element in elements)
        {
            if (!first)
                literal.Append(',');
            first = false;
            AppendElement(literal, element);
        }

        return literal.Append('}').ToString();
    }
}
