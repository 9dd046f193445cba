using System.Globalization;
using System.Text;
using Npgsql;

namespace Replicator.Core.Configuration;

/// <summary>
/// A PostgreSQL connection as PostgreSQL users write it: a libpq URI
/// (<c>postgres://user@host:5432/db?sslmode=require</c>) or a libpq keyword/value string
/// (<c>host=… port=… dbname=…</c>). Npgsql's own <c>Key=Value;</c> form is accepted too.
/// The password never leaves this type except inside the Npgsql connection string:
/// <see cref="ToString"/> and <see cref="Redacted"/> mask it.
/// </summary>
public sealed class ConnectionInfo
{
    private static readonly Dictionary<string, Action<NpgsqlConnectionStringBuilder, string, string>> Keywords =
        new(StringComparer.Ordinal)
        {
            ["host"] = (b, _, v) => b.Host = v,
            ["hostaddr"] = (b, _, v) => b.Host ??= v,
            ["port"] = (b, k, v) => b.Port = ParseInt(k, v),
            ["dbname"] = (b, _, v) => b.Database = v,
            ["user"] = (b, _, v) => b.Username = v,
            ["password"] = (b, _, v) => b.Password = v,
            ["passfile"] = (b, _, v) => b.Passfile = v,
            ["sslmode"] = (b, k, v) => b.SslMode = ParseSslMode(k, v),
            ["sslrootcert"] = (b, _, v) => b.RootCertificate = v,
            ["sslcert"] = (b, _, v) => b.SslCertificate = v,
            ["sslkey"] = (b, _, v) => b.SslKey = v,
            ["sslpassword"] = (b, _, v) => b.SslPassword = v,
            ["application_name"] = (b, _, v) => b.ApplicationName = v,
            ["fallback_application_name"] = (b, _, v) => b.ApplicationName ??= v,
            ["connect_timeout"] = (b, k, v) => b.Timeout = Math.Max(1, ParseInt(k, v)),
            ["options"] = (b, _, v) => b.Options = v,
            ["target_session_attrs"] = (b, _, v) => b.TargetSessionAttributes = v,
            ["keepalives_idle"] = (b, k, v) => b.TcpKeepAliveTime = ParseInt(k, v),
            ["keepalives_interval"] = (b, k, v) => b.TcpKeepAliveInterval = ParseInt(k, v),
            ["keepalives"] = (b, _, v) => b.TcpKeepAlive = v != "0",
            ["client_encoding"] = (b, _, v) => b.ClientEncoding = v,
            ["krbsrvname"] = (b, _, v) => b.KerberosServiceName = v,
            ["channel_binding"] = (b, k, v) => b.ChannelBinding = v switch
            {
                "disable" => ChannelBinding.Disable,
                "prefer" => ChannelBinding.Prefer,
                "require" => ChannelBinding.Require,
                _ => throw new ConfigurationException(k, $"'{v}' is not a channel_binding value (disable, prefer, require)"),
            },
        };

    private readonly NpgsqlConnectionStringBuilder _builder;
    private readonly string _redacted;

    private ConnectionInfo(NpgsqlConnectionStringBuilder builder, string redacted)
    {
        _builder = builder;
        _redacted = redacted;
    }

    /// <summary>Database name the connection points at.</summary>
    public string Database => _builder.Database ?? _builder.Username ?? "postgres";

    /// <summary>Host and port, for messages: <c>db.example.com:5432</c>.</summary>
    public string Endpoint => $"{_builder.Host ?? "localhost"}:{_builder.Port}";

    public string? Username => _builder.Username;

    public bool HasPassword => !string.IsNullOrEmpty(_builder.Password);

    /// <summary>The user's string with the password masked, safe for logs and reports.</summary>
    public string Redacted => _redacted;

    /// <summary>A short description for messages: <c>user@host:port/db</c>.</summary>
    public override string ToString() => $"{(_builder.Username is { } u ? u + "@" : "")}{Endpoint}/{Database}";

    /// <summary>The Npgsql connection string. Contains the password: never log it.</summary>
    public string ToNpgsqlConnectionString(Action<NpgsqlConnectionStringBuilder>? adjust = null)
    {
        var b = new NpgsqlConnectionStringBuilder(_builder.ConnectionString);
        adjust?.Invoke(b);
        return b.ConnectionString;
    }

    /// <summary>
    /// Startup options fixing the settings that shape how a session prints values as text, for
    /// sessions whose text reaches another server: pgoutput prints with the walsender session's
    /// settings, which the source's database or roles may set otherwise (and PostgreSQL 10 and 11
    /// print floats to 15 digits by default). Given after the user's own options, so they win.
    /// </summary>
    public const string CanonicalTextOptions = "-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex -c TimeZone=UTC -c lc_monetary=C";

    /// <summary>
    /// The settings that change how a session reads such text, fixed to match
    /// <see cref="CanonicalTextOptions"/>: run as statements on target sessions (a pooler in front of
    /// the target may refuse startup options).
    /// </summary>
    public const string CanonicalTextInputSql = "SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; SET lc_monetary = 'C'";

    /// <summary><see cref="ToNpgsqlConnectionString"/> with <see cref="CanonicalTextOptions"/> added.</summary>
    public string ToCanonicalTextConnectionString(Action<NpgsqlConnectionStringBuilder>? adjust = null) => ToNpgsqlConnectionString(b =>
    {
        b.Options = string.IsNullOrWhiteSpace(b.Options) ? CanonicalTextOptions : b.Options + " " + CanonicalTextOptions;
        adjust?.Invoke(b);
    });

    /// <summary>The same server and credentials, another database.</summary>
    public ConnectionInfo WithDatabase(string database)
    {
        var b = new NpgsqlConnectionStringBuilder(_builder.ConnectionString) { Database = database };
        return new ConnectionInfo(b, $"{_redacted} (database {database})");
    }

    /// <summary>Parses <paramref name="text"/>; <paramref name="key"/> names the setting in errors.</summary>
    /// <exception cref="ConfigurationException">The string is not a valid connection string.</exception>
    public static ConnectionInfo Parse(string text, string key, string? password = null)
    {
        if (string.IsNullOrWhiteSpace(text))
            throw new ConfigurationException(key, "is empty; give a libpq URI (postgres://user@host:5432/db) or keyword/value string (host=… dbname=…)");
        text = text.Trim();
        var builder = new NpgsqlConnectionStringBuilder();
        string redacted;
        if (text.StartsWith("postgres://", StringComparison.Ordinal) || text.StartsWith("postgresql://", StringComparison.Ordinal))
            redacted = ParseUri(text, key, builder);
        else if (text.Contains("://", StringComparison.Ordinal))
            throw new ConfigurationException(key, $"'{text[..text.IndexOf("://", StringComparison.Ordinal)]}://' is not a PostgreSQL URI scheme: only PostgreSQL sources and targets are supported (postgres:// or postgresql://)");
        else if (text.Contains(';', StringComparison.Ordinal) && !text.Contains('\'', StringComparison.Ordinal))
            redacted = ParseNpgsql(text, key, builder);
        else
            redacted = ParseKeywordValue(text, key, builder);

        if (password is not null)
            builder.Password = password;
        builder.ApplicationName ??= "replicator";
        return new ConnectionInfo(builder, redacted);
    }

    private static string ParseUri(string text, string key, NpgsqlConnectionStringBuilder builder)
    {
        var rest = text[(text.IndexOf("://", StringComparison.Ordinal) + 3)..];
        var redacted = new StringBuilder(text[..(text.IndexOf("://", StringComparison.Ordinal) + 3)]);
        var query = "";
        var q = rest.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            query = rest[(q + 1)..];
            rest = rest[..q];
        }

        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var authority = slash >= 0 ? rest[..slash] : rest;
        var path = slash >= 0 ? rest[(slash + 1)..] : "";
        var at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            var userInfo = authority[..at];
            authority = authority[(at + 1)..];
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0)
            {
                builder.Username = Unescape(userInfo[..colon], key);
                builder.Password = Unescape(userInfo[(colon + 1)..], key);
                redacted.Append(userInfo[..colon]).Append(":*****@");
            }
            else
            {
                builder.Username = Unescape(userInfo, key);
                redacted.Append(userInfo).Append('@');
            }
        }

        if (authority.Length > 0)
        {
            var hosts = authority.Split(',').Select(part => SplitHostPort(Unescape(part, key), key)).ToList();
            if (hosts.Count == 1)
            {
                if (hosts[0].Host.Length > 0)
                    builder.Host = hosts[0].Host;
                if (hosts[0].Port is { } port)
                    builder.Port = ParseInt(key + " (port)", port);
            }
            else
            {
                // Npgsql takes a multi-host list with a port per host, like libpq.
                builder.Host = string.Join(',', hosts.Select(h => h.Port is null ? h.Host : $"{h.Host}:{ParseInt(key + " (port)", h.Port)}"));
            }
        }

        redacted.Append(authority);
        if (path.Length > 0)
        {
            builder.Database = Unescape(path, key);
            redacted.Append('/').Append(path);
        }

        if (query.Length > 0)
        {
            var redactedQuery = new List<string>();
            foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq < 0)
                    throw new ConfigurationException(key, $"URI parameter '{pair}' has no value (expected name=value)");
                var name = Unescape(pair[..eq], key);
                var value = Unescape(pair[(eq + 1)..], key);
                Apply(builder, key, name, value);
                redactedQuery.Add(IsSecretKeyword(name) ? $"{pair[..eq]}=*****" : pair);
            }

            redacted.Append('?').Append(string.Join('&', redactedQuery));
        }

        return redacted.ToString();
    }

    private static (string Host, string? Port) SplitHostPort(string part, string key)
    {
        if (part.StartsWith('['))
        {
            var close = part.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
                throw new ConfigurationException(key, $"IPv6 host '{part}' has no closing ']'");
            var host = part[1..close];
            var after = part[(close + 1)..];
            return (host, after.StartsWith(':') ? after[1..] : null);
        }

        var colon = part.IndexOf(':', StringComparison.Ordinal);
        return colon >= 0 ? (part[..colon], part[(colon + 1)..]) : (part, null);
    }

    private static string ParseKeywordValue(string text, string key, NpgsqlConnectionStringBuilder builder)
    {
        var redacted = new StringBuilder();
        var i = 0;
        while (true)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i]))
                i++;
            if (i >= text.Length)
                break;
            var start = i;
            while (i < text.Length && text[i] != '=' && !char.IsWhiteSpace(text[i]))
                i++;
            var name = text[start..i];
            while (i < text.Length && char.IsWhiteSpace(text[i]))
                i++;
            if (i >= text.Length || text[i] != '=')
                throw new ConfigurationException(key, $"'{name}' is missing '=value' (libpq keyword/value strings look like: host=db.example.com port=5432 dbname=app)");
            i++;
            while (i < text.Length && char.IsWhiteSpace(text[i]))
                i++;
            var value = new StringBuilder();
            if (i < text.Length && text[i] == '\'')
            {
                i++;
                var closed = false;
                while (i < text.Length)
                {
                    if (text[i] == '\\' && i + 1 < text.Length)
                    {
                        value.Append(text[i + 1]);
                        i += 2;
                    }
                    else if (text[i] == '\'')
                    {
                        i++;
                        closed = true;
                        break;
                    }
                    else
                    {
                        value.Append(text[i++]);
                    }
                }

                if (!closed)
                    throw new ConfigurationException(key, $"the quoted value of '{name}' has no closing quote");
            }
            else
            {
                while (i < text.Length && !char.IsWhiteSpace(text[i]))
                {
                    if (text[i] == '\\' && i + 1 < text.Length)
                        i++;
                    value.Append(text[i++]);
                }
            }

            Apply(builder, key, name, value.ToString());
            if (redacted.Length > 0)
                redacted.Append(' ');
            redacted.Append(name).Append('=').Append(IsSecretKeyword(name) ? "*****" : Quote(value.ToString()));
        }

        return redacted.ToString();
    }

    private static string ParseNpgsql(string text, string key, NpgsqlConnectionStringBuilder builder)
    {
        try
        {
            builder.ConnectionString = text;
        }
        catch (ArgumentException e)
        {
            throw new ConfigurationException(key, $"is not a valid connection string: {e.Message}");
        }

        var copy = new NpgsqlConnectionStringBuilder(builder.ConnectionString);
        if (!string.IsNullOrEmpty(copy.Password))
            copy.Password = "*****";
        return copy.ConnectionString;
    }

    private static void Apply(NpgsqlConnectionStringBuilder builder, string key, string name, string value)
    {
        if (!Keywords.TryGetValue(name, out var apply))
        {
            var hint = Keywords.Keys.FirstOrDefault(k => Distance(k, name) <= 2);
            throw new ConfigurationException(key, $"unknown connection keyword '{name}'" + (hint is null ? "" : $" (did you mean '{hint}'?)"));
        }

        apply(builder, $"{key} ({name})", value);
    }

    private static bool IsSecretKeyword(string name) => name is "password" or "sslpassword";

    private static string Quote(string value) =>
        value.Length > 0 && !value.Any(c => char.IsWhiteSpace(c) || c is '\'' or '\\')
            ? value
            : "'" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";

    private static string Unescape(string s, string key)
    {
        try
        {
            return Uri.UnescapeDataString(s);
        }
        catch (UriFormatException e)
        {
            throw new ConfigurationException(key, $"bad percent-encoding in '{s}': {e.Message}");
        }
    }

    private static int ParseInt(string key, string value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new ConfigurationException(key, $"'{value}' is not a whole number");

    private static SslMode ParseSslMode(string key, string value) => value switch
    {
        "disable" => SslMode.Disable,
        "allow" => SslMode.Allow,
        "prefer" => SslMode.Prefer,
        "require" => SslMode.Require,
        "verify-ca" => SslMode.VerifyCA,
        "verify-full" => SslMode.VerifyFull,
        _ => throw new ConfigurationException(key, $"'{value}' is not an sslmode (disable, allow, prefer, require, verify-ca, verify-full)"),
    };

    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++)
            d[i, 0] = i;
        for (var j = 0; j <= b.Length; j++)
            d[0, j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
        }

        return d[a.Length, b.Length];
    }
}
