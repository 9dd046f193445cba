using Microsoft.Extensions.Logging;

namespace Replicator.Cli;

internal static partial class CliLog
{
    [LoggerMessage(9001, LogLevel.Warning, "Metrics endpoint not started on {Listen}: {Reason}")]
    public static partial void MetricsUnavailable(ILogger logger, string listen, string reason);
}
