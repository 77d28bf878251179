using System.Diagnostics.Metrics;
using DeferRuntime.Diagnostics;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace DeferRuntime.Hosting;

/// <summary>
/// The DeferRuntime of one DI container: boots it (on the host's start, or on first resolution of
/// <see cref="Runtime"/>), allocates the workqueues registered with <see cref="IDeferRuntimeBuilder.AddWorkqueue"/>,
/// publishes its metrics and forwards its reports to <c>ILogger</c>; the hosted service shuts it down.
/// </summary>
/// <remarks>
/// Shutdown order (<see cref="StopAsync"/>, run by the hosted service after every other hosted service
/// has stopped, so producers such as the web server are already quiet): <see cref="Runtime.ShutdownAsync(TimeSpan, CancellationToken)"/>:
/// threads of no CPU are refused (device assertions included, so no new top half feeds the bottom
/// halves), pending hard IRQs, softirqs, tasklets and every workqueue's items run (work they chain
/// included), bounded by <see cref="RuntimeOptions.ShutdownTimeout"/> and by the host's shutdown token;
/// then the lines still requested are freed and the threads joined. What did not finish is logged item
/// by item (not started, or still running on a thread left behind) and kept in <see cref="ShutdownReport"/>.
/// </remarks>
public sealed class DeferRuntimeHost : IDisposable, IAsyncDisposable
{
    private readonly RuntimeOptions _options;
    private readonly WorkqueueRegistration[] _registrations;
    private readonly IMeterFactory? _meterFactory;
    private readonly ILogger _logger;
    private readonly LockValidator _validator;
    private readonly Lock _bootLock = new();
    private Runtime? _runtime; // written once under _bootLock, read lock-free
    private Dictionary<string, Workqueue> _workqueues = new(StringComparer.Ordinal); // written once with _runtime
    private RuntimeMetrics? _metrics;
    private ReportForwarder? _forwarder;
    private RuntimeShutdownReport? _report;
    private int _stopStarted; // A: 1 once StopAsync or Dispose began the shutdown

    /// <summary>Made by the container (AddDeferRuntime); <paramref name="meterFactory"/> and <paramref name="loggerFactory"/> may be null; <paramref name="validator"/> is the lock validator whose reports are logged.</summary>
    internal DeferRuntimeHost(IOptions<RuntimeOptions> options, IEnumerable<WorkqueueRegistration> workqueues, IMeterFactory? meterFactory, ILoggerFactory? loggerFactory, LockValidator validator)
    {
        _validator = validator;
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _registrations = workqueues.ToArray();
        _meterFactory = meterFactory;
        _logger = (ILogger?)loggerFactory?.CreateLogger("DeferRuntime") ?? NullLogger.Instance;
    }

    /// <summary>The runtime; booted on first use.</summary>
    public Runtime Runtime => Volatile.Read(ref _runtime) ?? Boot();

    /// <summary>The workqueues registered by name, allocated at boot.</summary>
    public IReadOnlyDictionary<string, Workqueue> Workqueues
    {
        get
        {
            _ = Runtime;
            return _workqueues;
        }
    }

    /// <summary>What the shutdown did, once the hosted service (or <see cref="Dispose"/>) has run it; else null.</summary>
    public RuntimeShutdownReport? ShutdownReport => Volatile.Read(ref _report);

    /// <summary>
    /// A workqueue by name: one registered with <see cref="IDeferRuntimeBuilder.AddWorkqueue"/>, or a
    /// system workqueue by its kernel name ("events", "events_highpri", "events_long", "events_unbound",
    /// "events_freezable", "events_bh", "events_bh_highpri").
    /// </summary>
    public Workqueue GetWorkqueue(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var runtime = Runtime;
        if (_workqueues.TryGetValue(name, out var wq))
        {
            return wq;
        }
        return name switch
        {
            "events" => runtime.SystemWq,
            "events_highpri" => runtime.SystemHighpriWq,
            "events_long" => runtime.SystemLongWq,
            "events_unbound" => runtime.SystemUnboundWq,
            "events_freezable" => runtime.SystemFreezableWq,
            "events_bh" => runtime.SystemBhWq,
            "events_bh_highpri" => runtime.SystemBhHighpriWq,
            _ => throw new KeyNotFoundException($"no workqueue named '{name}': register it with AddDeferRuntime().AddWorkqueue(\"{name}\", ...), or use a system workqueue's name (events, events_unbound, ...)."),
        };
    }

    private Runtime Boot()
    {
        lock (_bootLock)
        {
            if (_runtime is { } booted)
            {
                return booted;
            }
            var runtime = Runtime.Boot(_options);
            try
            {
                var workqueues = new Dictionary<string, Workqueue>(StringComparer.Ordinal);
                foreach (var r in _registrations)
                {
                    workqueues.Add(r.Name, r.Ordered
                        ? runtime.AllocOrderedWorkqueue(r.Name, r.Flags)
                        : runtime.AllocWorkqueue(r.Name, r.Flags, r.MaxActive, r.Attrs));
                }
                // A meter from the factory is scoped to this container (and disposed with it), so two
                // hosts in one process never mix their instruments.
                _metrics = RuntimeMetrics.Create(runtime, _meterFactory?.Create(RuntimeMetrics.MeterName));
                _forwarder = new ReportForwarder(runtime, _validator, _logger);
                _workqueues = workqueues;
            }
            catch
            {
                _forwarder?.Dispose();
                _metrics?.Dispose();
                runtime.Dispose();
                throw;
            }
            Log.Booted(_logger, runtime.Cpus.Count, runtime.Hz, _workqueues.Count == 0 ? "none" : string.Join(", ", _workqueues.Keys));
            foreach (var p in runtime.Placements)
            {
                if ((p.Core is not null && !p.Pinned) || !p.PriorityGranted)
                {
                    Log.PlacementRefused(_logger, p.ToString());
                }
            }
            Volatile.Write(ref _runtime, runtime);
            return runtime;
        }
    }

    /// <summary>
    /// The hosted service's stop: <see cref="Runtime.ShutdownAsync(TimeSpan, CancellationToken)"/> bounded by
    /// <see cref="RuntimeOptions.ShutdownTimeout"/> and by <paramref name="cancellationToken"/> (the host's
    /// shutdown timeout), awaited without blocking a thread; then logs the report and keeps it in
    /// <see cref="ShutdownReport"/>. The runtime's bound holds whatever a handler does, so this returns
    /// within the earlier of the two plus a few tens of milliseconds; once it has, no callback of the
    /// runtime starts. Does nothing if the runtime never booted.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var runtime = Volatile.Read(ref _runtime);
        if (runtime is null || Interlocked.Exchange(ref _stopStarted, 1) != 0)
        {
            return;
        }
        Log.Stopping(_logger, _options.ShutdownTimeout.TotalSeconds);
        // Lines drivers left requested are freed by the shutdown itself, after its drain and without
        // waiting for a handler that may never return (free_irq() would): count them first, for the log.
        int requested = runtime.Irqs.RequestedActionCount;
        var report = await runtime.ShutdownAsync(_options.ShutdownTimeout, cancellationToken).ConfigureAwait(false);
        Published(report, requested);
        if (_forwarder is { } forwarder)
        {
            await forwarder.FlushAsync().ConfigureAwait(false);
        }
    }

    private void ShutdownNow(Runtime runtime, CancellationToken cancellationToken)
    {
        int requested = runtime.Irqs.RequestedActionCount;
        Published(runtime.Shutdown(_options.ShutdownTimeout, cancellationToken), requested);
    }

    private void Published(RuntimeShutdownReport report, int irqActionsLeft)
    {
        if (irqActionsLeft > 0)
        {
            Log.IrqsFreed(_logger, irqActionsLeft);
        }
        Volatile.Write(ref _report, report);
        LogReport(report);
    }

    private void LogReport(RuntimeShutdownReport report)
    {
        if (report.Panic is { } panic)
        {
            Log.ShutdownAfterPanic(_logger, panic.Message);
        }
        else if (report.Abandoned is not null || report.StuckThreads.Count > 0)
        {
            string notFinished = string.Join("; ", new[]
            {
                report.Abandoned,
                report.StuckThreads.Count > 0 ? $"threads left running: {string.Join(", ", report.StuckThreads)}" : null,
            }.OfType<string>());
            Log.ShutdownIncomplete(_logger, report.Elapsed.TotalMilliseconds, report.Cancelled ? "the host's shutdown timeout" : $"ShutdownTimeout ({_options.ShutdownTimeout.TotalSeconds:0.#} s)", notFinished);
            // One structured entry per item, so a log pipeline can act on each (re-queue what never started).
            foreach (var item in report.StillRunning.Concat(report.NotStarted))
            {
                Log.ShutdownItem(_logger, item.State, item.Kind, item.Name, item.Workqueue, item.Cpu, item.Thread);
            }
        }
        else
        {
            Log.ShutdownComplete(_logger, report.Elapsed.TotalMilliseconds);
        }
        if (report.AbandonedTimers > 0)
        {
            Log.TimersLeftArmed(_logger, report.AbandonedTimers, report.AbandonedDelayedWork);
        }
    }

    /// <summary>Shuts the runtime down if no host did (a container used without a host), then detaches the metrics and the log forwarding.</summary>
    public void Dispose()
    {
        ShutdownIfNobodyDid();
        _forwarder?.Dispose(); // flushes synchronously: the reader only logs
        _metrics?.Dispose();
    }

    /// <inheritdoc cref="Dispose"/>
    public async ValueTask DisposeAsync()
    {
        ShutdownIfNobodyDid();
        if (_forwarder is { } forwarder)
        {
            await forwarder.FlushAsync().ConfigureAwait(false);
            forwarder.Dispose();
        }
        _metrics?.Dispose();
    }

    private void ShutdownIfNobodyDid()
    {
        var runtime = Volatile.Read(ref _runtime);
        if (runtime is not null && Interlocked.Exchange(ref _stopStarted, 1) == 0)
        {
            ShutdownNow(runtime, CancellationToken.None);
        }
    }
}
