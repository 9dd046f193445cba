using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using Replicator.Core.Configuration;

namespace Replicator.Cutover;

/// <summary>
/// The user's switch hook (and pooler fence commands): a shell command run with the new endpoint in
/// its environment, or an HTTP POST of it as JSON. A non-zero exit, a non-2xx answer or the time
/// limit fails the step (and so the cutover, which then lifts the fence). A command still running at
/// the time limit or when the cutover is interrupted is killed with every process it started.
/// </summary>
internal static class ShellHook
{
    /// <summary>
    /// What a hook learns about the side switched to: <c>REPLICATOR_NEW_HOST</c>, <c>_PORT</c>,
    /// <c>_DATABASE</c>, <c>_USER</c>, <c>REPLICATOR_NEW_ENDPOINT</c> (a libpq URI without the password),
    /// <c>REPLICATOR_DIRECTION</c> and <c>REPLICATOR_FENCE_LSN</c>.
    /// </summary>
    public static Dictionary<string, string> Environment(ConnectionInfo to, string direction, string? fenceLsn)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(to.ToNpgsqlConnectionString());
        var host = builder.Host ?? "localhost";
        var user = builder.Username ?? "";
        var environment = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["REPLICATOR_NEW_HOST"] = host,
            ["REPLICATOR_NEW_PORT"] = builder.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["REPLICATOR_NEW_DATABASE"] = to.Database,
            ["REPLICATOR_NEW_USER"] = user,
            ["REPLICATOR_NEW_ENDPOINT"] = $"postgresql://{(user.Length > 0 ? Uri.EscapeDataString(user) + "@" : "")}{(host.Contains(':', StringComparison.Ordinal) ? "[" + host + "]" : host)}:{builder.Port}/{Uri.EscapeDataString(to.Database)}",
            ["REPLICATOR_DIRECTION"] = direction,
        };
        if (fenceLsn is not null)
            environment["REPLICATOR_FENCE_LSN"] = fenceLsn;
        return environment;
    }

    /// <summary>Runs <paramref name="command"/> with <c>/bin/sh -c</c>; returns its output, or throws naming <paramref name="what"/>.</summary>
    public static async Task<string> RunAsync(string what, string command, IReadOnlyDictionary<string, string> environment, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        foreach (var (key, value) in environment)
            start.Environment[key] = value;
        using var process = Process.Start(start) ?? throw new CutoverException($"{what}: could not start /bin/sh");
        var output = new StringBuilder();
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The caller's cancellation too (Ctrl-C): its undo lifts the fence next, and a switch
            // script still running then would point the application at one side while the other
            // takes writes again.
            process.Kill(entireProcessTree: true);
            if (cancellationToken.IsCancellationRequested)
                throw;
            throw new CutoverException($"{what} did not finish within {timeout.TotalSeconds:0} s (raise --hook-timeout if it needs longer)");
        }

        output.Append(await stdout.ConfigureAwait(false)).Append(await stderr.ConfigureAwait(false));
        if (process.ExitCode != 0)
            throw new CutoverException($"{what} exited with code {process.ExitCode}: {Last(output.ToString())}");
        return output.ToString();
    }

    /// <summary>POSTs the new endpoint as JSON; returns the answer's body, or throws on a non-2xx status.</summary>
    public static async Task<string> PostAsync(Uri url, IReadOnlyDictionary<string, string> environment, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = timeout };
        var body = environment.ToDictionary(e => e.Key.Replace("REPLICATOR_", "", StringComparison.Ordinal).ToLowerInvariant(), e => e.Value);
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsJsonAsync(url, body, Core.CoreJson.Default.DictionaryStringString, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw new CutoverException($"--switch-url {url.GetLeftPart(UriPartial.Path)} failed: {e.Message}");
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
                throw new CutoverException($"--switch-url {url.GetLeftPart(UriPartial.Path)} answered {(int)response.StatusCode} {response.ReasonPhrase}: {Last(text)}");
            return text;
        }
    }

    private static string Last(string text)
    {
        var trimmed = text.Trim();
        return trimmed.Length <= 500 ? trimmed : "…" + trimmed[^500..];
    }
}
