using System.Buffers;
using System.Text;

namespace Replicator.Core.Sql;

/// <summary>
/// Rows in COPY's text format (<c>COPY … FROM STDIN</c>): fields separated by a tab, rows ended by
/// a newline, NULL as <c>\N</c>, and in a value the backslash and the characters that would end a
/// field or a row written as backslash escapes. Every other character goes as it is, so a value
/// reads back as the same string.
/// </summary>
public static class CopyText
{
    private static readonly SearchValues<char> Special = SearchValues.Create("\\\t\n\r");

    /// <summary>Appends one field (no separator); <paramref name="text"/> null is NULL.</summary>
    public static void AppendField(StringBuilder row, string? text)
    {
        if (text is null)
        {
            row.Append("\\N");
            return;
        }

        var span = text.AsSpan();
        int special;
        while ((special = span.IndexOfAny(Special)) >= 0)
        {
            row.Append(span[..special]).Append(span[special] switch
            {
                '\t' => "\\t",
                '\n' => "\\n",
                '\r' => "\\r",
                _ => "\\\\",
            });
            span = span[(special + 1)..];
        }

        row.Append(span);
    }
}
