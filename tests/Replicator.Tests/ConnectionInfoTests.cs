using Npgsql;
using Replicator.Core.Configuration;

namespace Replicator.Tests;

public class ConnectionInfoTests
{
    private static NpgsqlConnectionStringBuilder Npgsql(string text, string? password = null) =>
        new(ConnectionInfo.Parse(text, "Source:ConnectionString", password).ToNpgsqlConnectionString());

    [Fact]
    public void A_libpq_uri_maps_every_part()
    {
        var b = Npgsql("postgres://bob:p%40ss@db.example.com:5433/app%20db?sslmode=require&application_name=mig&connect_timeout=7");
        Assert.Equal("db.example.com", b.Host);
        Assert.Equal(5433, b.Port);
        Assert.Equal("app db", b.Database);
        Assert.Equal("bob", b.Username);
        Assert.Equal("p@ss", b.Password);
        Assert.Equal(SslMode.Require, b.SslMode);
        Assert.Equal("mig", b.ApplicationName);
        Assert.Equal(7, b.Timeout);
    }

    [Fact]
    public void A_postgresql_scheme_uri_with_ipv6_and_several_hosts_parses()
    {
        Assert.Equal("::1", Npgsql("postgresql://[::1]:6000/x").Host);
        Assert.Equal("h1:5432,h2:5433", Npgsql("postgresql://u@h1:5432,h2:5433/x?target_session_attrs=read-write").Host);
    }

    [Fact]
    public void A_keyword_value_string_with_quoted_values_parses()
    {
        var b = Npgsql(@"host=localhost port = 6543 dbname='my db' user=alice password='it\'s secret' sslmode=verify-full");
        Assert.Equal("localhost", b.Host);
        Assert.Equal(6543, b.Port);
        Assert.Equal("my db", b.Database);
        Assert.Equal("it's secret", b.Password);
        Assert.Equal(SslMode.VerifyFull, b.SslMode);
    }

    [Fact]
    public void The_redacted_form_never_shows_the_password()
    {
        var uri = ConnectionInfo.Parse("postgres://bob:hunter2@h/db?password=hunter3", "k");
        var kv = ConnectionInfo.Parse("host=h password='hunter 4' user=bob", "k");
        var npgsql = ConnectionInfo.Parse("Host=h;Password=hunter5;Username=bob", "k");
        foreach (var text in new[] { uri.Redacted, uri.ToString(), kv.Redacted, kv.ToString(), npgsql.Redacted, npgsql.ToString() })
        {
            Assert.DoesNotContain("hunter", text, StringComparison.Ordinal);
        }

        Assert.Contains("*****", uri.Redacted, StringComparison.Ordinal);
        Assert.Equal("bob@h:5432/db", uri.ToString());
    }

    [Fact]
    public void A_password_given_apart_from_the_string_is_used()
    {
        Assert.Equal("fromfile", Npgsql("host=h user=u", password: "fromfile").Password);
    }

    [Theory]
    [InlineData("host=h hots=x", "unknown connection keyword 'hots' (did you mean 'host'?)")]
    [InlineData("host=h sslmode=sometimes", "'sometimes' is not an sslmode")]
    [InlineData("postgres://h:notaport/db", "'notaport' is not a whole number")]
    [InlineData("host=h dbname", "'dbname' is missing '=value'")]
    [InlineData("host=h password='unterminated", "has no closing quote")]
    [InlineData("mysql://root@h/db", "only PostgreSQL sources and targets are supported")]
    [InlineData("  ", "is empty")]
    public void A_bad_connection_string_names_the_key_and_the_problem(string text, string expected)
    {
        var e = Assert.Throws<ConfigurationException>(() => ConnectionInfo.Parse(text, "Source:ConnectionString"));
        Assert.StartsWith("configuration error: Source:ConnectionString", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }
}
