using System.Collections.Concurrent;

namespace Replicator.Core.Hosting;

/// <summary>
/// What /healthz and /readyz report. Each component registers a named state; the process is ready
/// when every registered component says it is ready, and live unless one says it is broken for
/// good (a restart would help). Thread-safe.
/// </summary>
public sealed class HealthState
{
    private readonly ConcurrentDictionary<string, (bool Ready, bool Live, string Detail)> _components = new(StringComparer.Ordinal);

    public void Set(string component, bool ready, string detail = "", bool live = true) =>
        _components[component] = (ready, live, detail);

    public void Remove(string component) => _components.TryRemove(component, out _);

    public bool IsReady => !_components.IsEmpty && _components.Values.All(c => c.Ready && c.Live);

    public bool IsLive => _components.Values.All(c => c.Live);

    /// <summary>One line per component: <c>name: ready|not ready|broken (detail)</c>.</summary>
    public string Describe() => _components.IsEmpty
        ? "no components started\n"
        : string.Concat(_components.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c =>
            $"{c.Key}: {(!c.Value.Live ? "broken" : c.Value.Ready ? "ready" : "not ready")}{(c.Value.Detail.Length > 0 ? " (" + c.Value.Detail + ")" : "")}\n"));
}
