using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Replicator.Core.Configuration;
using Replicator.Core.Metrics;

namespace Replicator.Core.Hosting;

/// <summary>Kestrel serving <c>/metrics</c>, <c>/healthz</c> and <c>/readyz</c>.</summary>
public sealed class MonitoringServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly PrometheusExporter _exporter;

    private MonitoringServer(WebApplication app, PrometheusExporter exporter, Uri address)
    {
        _app = app;
        _exporter = exporter;
        Address = address;
    }

    /// <summary>The bound address (the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>Starts listening on <paramref name="listen"/> (<c>host:port</c>; port 0 picks a free one).</summary>
    public static async Task<MonitoringServer> StartAsync(string listen, HealthState health, CancellationToken cancellationToken)
    {
        if (!ConfigLoader.TryParseListen(listen, out var host, out var port))
            throw new ConfigurationException("Metrics:Listen", $"'{listen}' is not host:port");
        // No configuration files are read here, so none is watched: by default the builder watches
        // its content root (the working directory, recursively) for appsettings changes, and every
        // file written below it (logs, spool, the user's own files) costs the process a wake-up.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            var ip = host is "localhost" ? IPAddress.Loopback
                : host is "*" or "" ? IPAddress.Any
                : IPAddress.TryParse(host, out var parsed) ? parsed
                : throw new ConfigurationException("Metrics:Listen", $"'{host}' is not an IP address (use 127.0.0.1, 0.0.0.0 or ::)");
            k.Listen(ip, port);
        });
        var exporter = new PrometheusExporter();
        var app = builder.Build();
        app.MapGet("/metrics", () => Results.Text(exporter.Render(), PrometheusExporter.ContentType));
        app.MapGet("/healthz", () => health.IsLive
            ? Results.Text("ok\n" + health.Describe())
            : Results.Text("broken\n" + health.Describe(), statusCode: StatusCodes.Status503ServiceUnavailable));
        app.MapGet("/readyz", () => health.IsReady
            ? Results.Text("ready\n" + health.Describe())
            : Results.Text("not ready\n" + health.Describe(), statusCode: StatusCodes.Status503ServiceUnavailable));
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            exporter.Dispose();
            await app.DisposeAsync().ConfigureAwait(false);
            throw new ConfigurationException("Metrics:Listen", $"cannot listen on {listen}: {e.Message} (choose another port, or --metrics-listen 127.0.0.1:0)");
        }

        var bound = app.Urls.First();
        var uri = new Uri(bound.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal).Replace("[::]", "[::1]", StringComparison.Ordinal));
        return new MonitoringServer(app, exporter, uri);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _exporter.Dispose();
    }
}
