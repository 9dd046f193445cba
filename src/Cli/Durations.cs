using System.Globalization;
using Replicator.Core.Configuration;

namespace Replicator.Cli;

/// <summary>Durations as operators write them: <c>500ms</c>, <c>90s</c>, <c>15m</c>, <c>6h</c>, or plain seconds.</summary>
public static class Durations
{
    /// <exception cref="ConfigurationException">Not a positive duration.</exception>
    public static TimeSpan Parse(string text, string key)
    {
        var t = text.Trim();
        if (t.EndsWith("ms", StringComparison.OrdinalIgnoreCase)
            && double.TryParse(t[..^2], NumberStyles.Float, CultureInfo.InvariantCulture, out var milliseconds) && milliseconds > 0)
            return TimeSpan.FromMilliseconds(milliseconds);
        var (number, unit) = t.Length > 0 && char.IsLetter(t[^1]) ? (t[..^1], char.ToLowerInvariant(t[^1])) : (t, 's');
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value <= 0 || unit is not ('s' or 'm' or 'h' or 'd'))
            throw new ConfigurationException(key, $"'{text}' is not a duration (e.g. 500ms, 90s, 15m, 6h)");
        return unit switch
        {
            'm' => TimeSpan.FromMinutes(value),
            'h' => TimeSpan.FromHours(value),
            'd' => TimeSpan.FromDays(value),
            _ => TimeSpan.FromSeconds(value),
        };
    }
}
