using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Replicator.Core.Logging;

public static class ReplicatorLogging
{
    /// <summary>Console logging to stderr (stdout is kept for command output and reports).</summary>
    public static ILoggerFactory CreateFactory(string level) => LoggerFactory.Create(b =>
    {
        b.SetMinimumLevel(Enum.Parse<LogLevel>(level, ignoreCase: true));
        b.AddFilter("Microsoft", LogLevel.Warning);
        b.AddFilter("Npgsql", LogLevel.Warning);
        b.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
            o.ColorBehavior = LoggerColorBehavior.Disabled;
        });
        b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    });
}
