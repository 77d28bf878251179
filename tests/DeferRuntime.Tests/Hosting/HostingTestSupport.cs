using System.Collections.Concurrent;
using DeferRuntime.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DeferRuntime.Tests.Hosting;

/// <summary>One log entry as a test provider saw it.</summary>
internal sealed record LogEntry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

/// <summary>Collects every log entry of a host, so tests can assert on event ids and messages.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<LogEntry> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new CapturingLogger(this, categoryName);

    public void Dispose()
    {
    }

    public IEnumerable<LogEntry> For(int eventId) => Entries.Where(e => e.Category == "DeferRuntime" && e.EventId.Id == eventId);

    private sealed class CapturingLogger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Entries.Enqueue(new LogEntry(category, logLevel, eventId, formatter(state, exception), exception));
    }
}

internal static class TestHost
{
    /// <summary>
    /// A real generic host with the runtime (2 CPUs, priorities left alone so parallel tests share the
    /// machine evenly) and a log capture; <paramref name="configure"/> adds workqueues and services.
    /// </summary>
    public static IHost Build(CapturingLoggerProvider logs, Action<IDeferRuntimeBuilder>? configure = null, Action<RuntimeOptions>? options = null, TimeSpan? shutdownTimeout = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Trace);
        builder.Logging.AddProvider(logs);
        builder.Services.AddMetrics();
        if (shutdownTimeout is { } timeout)
        {
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = timeout);
        }
        var runtime = builder.Services.AddDeferRuntime(o =>
        {
            o.CpuCount = 2;
            o.Priorities = PriorityPolicy.None;
            options?.Invoke(o);
        });
        configure?.Invoke(runtime);
        return builder.Build();
    }
}
