using DeferRuntime.Hosting;
using DeferRuntime.Workqueues;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DeferRuntime.Samples.WebService;

/// <summary>The service: POST /readings runs the top half and answers 202 at once; GET /stats shows the pipeline.</summary>
public static partial class IngestApp
{
    /// <summary>
    /// Builds the app on <c>--urls</c> (default http://127.0.0.1:5080). <paramref name="configureRuntime"/>
    /// may change the runtime's options after the defaults here (tests use it).
    /// </summary>
    public static WebApplication Build(string[] args, Action<RuntimeOptions>? configureRuntime = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        if (string.IsNullOrEmpty(builder.Configuration["urls"]))
        {
            builder.WebHost.UseUrls("http://127.0.0.1:5080"); // loopback only
        }
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning); // not a line per request
        builder.Services.AddDeferRuntime(o =>
        {
            o.CpuCount = Math.Min(Environment.ProcessorCount, 4);
            configureRuntime?.Invoke(o);
        }).AddWorkqueue(IngestPipeline.StoreWorkqueue, WorkqueueFlags.Unbound, maxActive: 8);
        builder.Services.AddSingleton<IngestPipeline>();

        var app = builder.Build();
        app.MapPost("/readings", (string device, double value, IngestPipeline pipeline) =>
            Results.Accepted(value: new { seq = pipeline.Accept(device, value) }));
        app.MapGet("/stats", (IngestPipeline pipeline) =>
            Results.Ok(new { accepted = pipeline.Accepted, stored = pipeline.Stored, batches = pipeline.Batches, taskletRuns = pipeline.TaskletRuns }));

        // The graceful-shutdown report: ApplicationStopped fires after the hosting's drain, so every
        // reading accepted before the server stopped has been stored by now.
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        lifetime.ApplicationStopped.Register(() =>
        {
            if (app.Services.GetService<IngestPipeline>() is { } pipeline)
            {
                LogDrained(app.Logger, pipeline.Accepted, pipeline.Stored, pipeline.Batches, pipeline.TaskletRuns);
            }
        });
        return app;
    }

    /// <summary>
    /// The graceful-shutdown demonstration: serves on a free loopback port, sends <paramref name="requests"/>
    /// requests to itself, stops while the bottom halves are still busy, and shows that the drain stored
    /// every accepted reading. Returns the process exit code (0: nothing lost).
    /// </summary>
    public static async Task<int> RunDemoAsync(int requests)
    {
        var app = Build(["--urls", "http://127.0.0.1:0"]);
        await app.StartAsync().ConfigureAwait(false);
        var pipeline = app.Services.GetRequiredService<IngestPipeline>();
        using (var handler = new SocketsHttpHandler { MaxConnectionsPerServer = 16 })
        using (var client = new HttpClient(handler) { BaseAddress = new Uri(app.Urls.First()) })
        {
            var sends = Enumerable.Range(0, requests).Select(i => client.PostAsync(new Uri($"/readings?device=sensor{i % 4}&value={i}", UriKind.Relative), null));
            foreach (var response in await Task.WhenAll(sends).ConfigureAwait(false))
            {
                response.EnsureSuccessStatusCode();
                response.Dispose();
            }
        }
        long storedAtStop = pipeline.Stored;
        Console.WriteLine($"demo: {pipeline.Accepted} readings accepted, {storedAtStop} stored when the stop begins");
        await app.StopAsync().ConfigureAwait(false);
        Console.WriteLine($"demo: after the graceful stop: {pipeline.Stored} of {pipeline.Accepted} stored ({pipeline.Stored - storedAtStop} by the drain)");
        await app.DisposeAsync().ConfigureAwait(false);
        return pipeline.Stored == pipeline.Accepted ? 0 : 1;
    }

    [LoggerMessage(1, LogLevel.Information, "ingest: accepted {Accepted}, stored {Stored} in {Batches} batches by {TaskletRuns} tasklet runs")]
    private static partial void LogDrained(ILogger logger, long accepted, long stored, long batches, long taskletRuns);
}
