using System.CommandLine;
using Replicator.Core.Configuration;

namespace Replicator.Cli;

/// <summary>
/// Flags every subcommand understands. Each maps to one configuration key, so a flag, an
/// environment variable and the config file are three ways to set the same thing (flags win).
/// </summary>
public sealed class GlobalOptions
{
    private readonly Dictionary<Option<string?>, string> _keys = [];

    public GlobalOptions()
    {
        Source = Flag("--source", "Source:ConnectionString", "Source PostgreSQL: libpq URI (postgres://user@host:5432/db) or 'host=… dbname=…'.");
        Target = Flag("--target", "Target:ConnectionString", "Target PostgreSQL: libpq URI or keyword/value string.");
        Flag("--source-password-file", "Source:PasswordFile", "File holding the source password (e.g. a mounted Secret).");
        Flag("--target-password-file", "Target:PasswordFile", "File holding the target password.");
        Flag("--slot", "SlotName", "Logical replication slot name on the source (default: replicator).");
        Flag("--publication", "PublicationName", "Publication name on the source (default: replicator).");
        Flag("--metrics-listen", "Metrics:Listen", "host:port for /metrics, /healthz, /readyz (default 127.0.0.1:9187; port 0 picks one).");
        Flag("--log-level", "Logging:Level", "Trace, Debug, Information, Warning or Error.");
    }

    public Option<FileInfo?> Config { get; } = new("--config", "-c")
    {
        Description = "JSON configuration file.",
        Recursive = true,
    };

    public Option<string[]> Set { get; } = new("--set")
    {
        Description = "Any setting as Section:Key=value (repeatable), e.g. --set Apply:MaxBatchChanges=50000.",
        Recursive = true,
    };

    public Option<string?> Source { get; }

    public Option<string?> Target { get; }

    public IEnumerable<Option> All => [Config, .. _keys.Keys, Set];

    /// <summary>A string flag bound to configuration <paramref name="key"/>; add it to a command yourself unless made here.</summary>
    public Option<string?> Flag(string name, string key, string description, bool recursive = true)
    {
        var option = new Option<string?>(name) { Description = description, Recursive = recursive };
        _keys[option] = key;
        return option;
    }

    /// <summary>Loads the configuration: file, then REPLICATOR_* environment, then flags.</summary>
    /// <exception cref="ConfigurationException">Bad configuration.</exception>
    public ReplicatorOptions Load(ParseResult parse)
    {
        var overrides = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var set in parse.GetValue(Set) ?? [])
        {
            var eq = set.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
                throw new ConfigurationException("--set", $"'{set}' is not Section:Key=value");
            overrides[set[..eq]] = set[(eq + 1)..];
        }

        foreach (var (option, key) in _keys)
        {
            if (parse.GetResult(option) is not null && parse.GetValue(option) is { } value)
                overrides[key] = value;
        }

        return ConfigLoader.Load(parse.GetValue(Config)?.FullName, overrides);
    }
}
