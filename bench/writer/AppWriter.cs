using System.Collections.Concurrent;
using Npgsql;
using Replicator.Core.Configuration;

namespace Replicator.Bench;

/// <summary>
/// An application-like writer: it connects to whatever endpoint the file says (the switch hook
/// rewrites it), writes one small transaction at a time at about <c>rate</c> per second, and on
/// any error reconnects (re-reading the file) and goes on. It remembers every write whose COMMIT
/// returned (acknowledged): those must all survive, once. Shared by the cutover tests and
/// bench/cutover.sh (through bench/writer/Program.cs).
/// </summary>
public sealed class AppWriter : IAsyncDisposable
{
    private readonly string _endpointFile;
    private readonly int _pauseMilliseconds;
#pragma warning disable CA2213 // cancelled, never disposed: DisposeAsync may run twice
    private readonly CancellationTokenSource _stop = new();
#pragma warning restore CA2213
    private Task? _running;
    private long _next;
    private int _uniqueViolations;

    public AppWriter(string endpointFile, int rate = 500)
    {
        _endpointFile = endpointFile;
        _pauseMilliseconds = Math.Max(0, 1000 / rate - 1);
    }

    /// <summary>n → (order id, invoice number, endpoint written to), for every acknowledged write.</summary>
    public ConcurrentDictionary<long, (long Id, long Invoice, string Endpoint)> Acknowledged { get; } = new();

    public int Errors;

    /// <summary>The longest time between two consecutive acknowledged writes: the write outage as the application saw it.</summary>
    public TimeSpan LongestGap { get; private set; }

    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    private TimeSpan _lastAck;

    public int UniqueViolations => Volatile.Read(ref _uniqueViolations);

    public void Start() => _running = Task.Run(RunAsync);

    /// <summary>Waits until at least <paramref name="count"/> more writes were acknowledged on an endpoint containing <paramref name="endpointPart"/>.</summary>
    public async Task WaitForWritesAsync(int count, string endpointPart, TimeSpan timeout)
    {
        var start = Acknowledged.Values.Count(v => v.Endpoint.Contains(endpointPart, StringComparison.Ordinal));
        var deadline = DateTime.UtcNow + timeout;
        while (Acknowledged.Values.Count(v => v.Endpoint.Contains(endpointPart, StringComparison.Ordinal)) < start + count)
        {
            if (_running is { IsFaulted: true })
                await _running;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"the writer did not get {count} writes acknowledged by {endpointPart} within {timeout} ({Errors} errors so far)");
            await Task.Delay(20);
        }
    }

    private async Task RunAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var endpoint = (await File.ReadAllTextAsync(_endpointFile)).Trim();
            if (endpoint.Length == 0)
            {
                // A hook that rewrites the file in place (printf > file) leaves it empty for a moment.
                await Task.Delay(5);
                continue;
            }

            try
            {
                await using var conn = new NpgsqlConnection(ConnectionInfo.Parse(endpoint, "app").ToNpgsqlConnectionString(b => { b.Pooling = false; b.Timeout = 5; }));
                await conn.OpenAsync(_stop.Token);
                while (!_stop.IsCancellationRequested)
                {
                    var n = Interlocked.Increment(ref _next);
                    await using var cmd = new NpgsqlCommand($"""
                        BEGIN;
                        INSERT INTO orders (n, invoice, note) VALUES ({n}, nextval('invoice_no'), 'order {n}') RETURNING id, invoice;
                        INSERT INTO order_event (n) VALUES ({n});
                        COMMIT;
                        """, conn);
                    long id, invoice;
                    await using (var reader = await cmd.ExecuteReaderAsync(_stop.Token))
                    {
                        await reader.ReadAsync(_stop.Token);
                        (id, invoice) = (reader.GetInt64(0), reader.GetInt64(1));
                        while (await reader.NextResultAsync(_stop.Token))
                        {
                            // The INSERT and the COMMIT: an error in either throws here.
                        }
                    }

                    // The COMMIT returned: acknowledged.
                    Acknowledged[n] = (id, invoice, endpoint);
                    var now = _clock.Elapsed;
                    if (_lastAck > TimeSpan.Zero && now - _lastAck > LongestGap)
                        LongestGap = now - _lastAck;
                    _lastAck = now;
                    if (_pauseMilliseconds > 0)
                        await Task.Delay(_pauseMilliseconds, _stop.Token);
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                Interlocked.Increment(ref _uniqueViolations);
            }
            catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException)
            {
                // Fenced (read-only), ended by the fence, or the server moved: reconnect.
                Interlocked.Increment(ref Errors);
                await Task.Delay(5);
            }
        }
    }

    /// <summary>Stops writing (idempotent).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
            return;
        await _stop.CancelAsync();
        if (_running is not null)
            await _running;
    }
}
