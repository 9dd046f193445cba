namespace Replicator.Core.Configuration;

/// <summary>Bad configuration: the message names the key and what is wrong with it.</summary>
public sealed class ConfigurationException : Exception
{
    public ConfigurationException(string key, string problem)
        : base($"configuration error: {key}: {problem}")
    {
        Key = key;
    }

    public ConfigurationException()
    {
        Key = "";
    }

    public ConfigurationException(string message)
        : base(message)
    {
        Key = "";
    }

    public ConfigurationException(string message, Exception innerException)
        : base(message, innerException)
    {
        Key = "";
    }

    /// <summary>The configuration key at fault, in <c>Section:Key</c> form.</summary>
    public string Key { get; }
}
