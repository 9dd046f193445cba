using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;

namespace Replicator.Verifier;

/// <summary>What the continuous verifier is doing and what it found last; immutable, swapped whole.</summary>
/// <param name="State"><c>waiting</c>, <c>running</c>, <c>stopped</c>.</param>
/// <param name="LastResult"><c>identical</c>, <c>different</c>, <c>error</c>, or null before the first pass.</param>
public sealed record VerifierStatus(
    string State,
    int Passes,
    string? LastResult,
    DateTimeOffset? LastPassAt,
    DateTimeOffset? LastCleanPassAt,
    long LastRowDifferences,
    string? LastError,
    DateTimeOffset? NextPassAt)
{
    public static readonly VerifierStatus Initial = new("waiting", 0, null, null, null, 0, null, null);

    /// <summary>One line for <c>replicator status</c>.</summary>
    public string Describe() =>
        $"verifier: {State}; {Passes} passes; last {LastResult ?? "none"}" +
        (LastPassAt is { } at ? $" at {at:u}" : "") +
        (LastResult == "different" ? $" ({LastRowDifferences} rows differ)" : "") +
        (LastError is { } e ? $" ({e})" : "") +
        $"; last clean pass {(LastCleanPassAt is { } c ? c.ToString("u", System.Globalization.CultureInfo.InvariantCulture) : "never")}" +
        (NextPassAt is { } next && State == "waiting" ? $"; next at {next:u}" : "");
}

/// <summary>
/// Runs verifier passes one after another with <see cref="Interval"/> between the end of one and
/// the start of the next (so passes never overlap and a slow pass does not pile up), beside
/// <c>replicator run</c>. A failed pass is logged and reported in <see cref="Status"/>; the loop
/// goes on. Stops when the token is cancelled (not an error).
/// </summary>
public sealed class ContinuousVerifier(VerifyRequest request, ConnectionInfo source, ConnectionInfo target, TimeSpan interval, ILoggerFactory loggerFactory)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger<ContinuousVerifier>();
    private VerifierStatus _status = VerifierStatus.Initial;

    public TimeSpan Interval { get; } = interval;

    /// <summary>Latest status; safe to read from any thread.</summary>
    public VerifierStatus Status => Volatile.Read(ref _status);

    /// <summary>The last finished pass's report, or null.</summary>
    public VerifyReport? LastReport { get; private set; }

    /// <summary>Raised after every pass (report, or null when it failed).</summary>
    public event Action<VerifyReport?>? PassCompleted;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await RunOnceAsync(cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref _status, _status with { State = "waiting", NextPassAt = DateTimeOffset.UtcNow + Interval });
                await Task.Delay(Interval, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            Volatile.Write(ref _status, _status with { State = "stopped", NextPassAt = null });
        }
    }

    /// <summary>Runs one pass now and updates the status (also used by <see cref="RunAsync"/>).</summary>
    public async Task<VerifyReport?> RunOnceAsync(CancellationToken cancellationToken)
    {
        Volatile.Write(ref _status, _status with { State = "running", NextPassAt = null });
        VerifyReport? report = null;
        try
        {
            report = await Verification.RunPassAsync(request, source, target, loggerFactory, cancellationToken).ConfigureAwait(false);
            LastReport = report;
            var s = _status;
            Volatile.Write(ref _status, s with
            {
                Passes = s.Passes + 1,
                LastResult = report.Identical ? "identical" : "different",
                LastPassAt = report.FinishedAt,
                LastCleanPassAt = report.Identical ? report.FinishedAt : s.LastCleanPassAt,
                LastRowDifferences = report.RowDifferences,
                LastError = null,
            });
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            LogMessages.PassFailed(_logger, e.Message);
            var s = _status;
            Volatile.Write(ref _status, s with { Passes = s.Passes + 1, LastResult = "error", LastPassAt = DateTimeOffset.UtcNow, LastError = e.Message });
        }

        PassCompleted?.Invoke(report);
        return report;
    }
}
