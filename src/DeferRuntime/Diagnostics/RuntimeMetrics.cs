using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Diagnostics;

/// <summary>
/// The runtime's counters as <see cref="System.Diagnostics.Metrics"/> instruments on a <see cref="Meter"/>
/// named "DeferRuntime" (what /proc/interrupts, /proc/softirqs and the workqueue sysfs show, as
/// dotnet-counters, dotnet-trace/EventPipe and OpenTelemetry read meters: no extra code). Create it with
/// <see cref="Create"/> once per runtime; dispose it to detach.
/// </summary>
/// <remarks>
/// <para>Counts and gauges are observable instruments: their callbacks read counters the runtime keeps
/// anyway (per-CPU, per-line, per-pool_workqueue, written by their owners with plain stores), only when
/// a listener collects. They add nothing to the hot paths.</para>
/// <para>The two latency histograms need a timestamp per event, so they are fed only while a listener
/// has them enabled: the queue path and the raise path then read the clock once (one stamp per stage).
/// While nobody listens, each costs a few loads and a predictable branch.</para>
/// <para>Instruments, in the kernel's nouns (tags in brackets):
/// <c>deferruntime.irq.count</c> chain runs per line and CPU [line, cpu] plus LOC and CAL as /proc/interrupts;
/// <c>deferruntime.softirq.count</c> [vector, cpu]; <c>deferruntime.softirq.ksoftirqd_wakeups</c> (budget
/// overflows handed to ksoftirqd) [cpu]; <c>deferruntime.tasklet.count</c> [cpu];
/// <c>deferruntime.work.queued</c> and <c>deferruntime.work.executed</c> [workqueue];
/// <c>deferruntime.workqueue.workers</c> gauge [pool, state: total, idle, running];
/// <c>deferruntime.faults</c> (oopses and warnings); histograms <c>deferruntime.work.queue_latency</c> (s,
/// queue_work() to the function's start) [workqueue] and <c>deferruntime.softirq.raise_latency</c> (s,
/// first raise to the vector's entry) [vector].</para>
/// </remarks>
public sealed class RuntimeMetrics : IDisposable
{
    /// <summary>The meter's name, "DeferRuntime".</summary>
    public const string MeterName = "DeferRuntime";

    private readonly Runtime _runtime;
    private readonly bool _ownsMeter;
    private readonly Histogram<double> _workLatency;
    private readonly Histogram<double> _softirqLatency;
    private readonly string[] _cpuTags; // I: "0", "1", ...: tag values made once, not per observation
    private readonly string[] _lineTags; // I
    private static readonly double SecondsPerTick = 1.0 / Stopwatch.Frequency;

    private RuntimeMetrics(Runtime runtime, Meter meter, bool ownsMeter)
    {
        _runtime = runtime;
        Meter = meter;
        _ownsMeter = ownsMeter;
        _cpuTags = Enumerable.Range(0, runtime.Cpus.Count).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();
        _lineTags = Enumerable.Range(0, runtime.Irqs.LineCount).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();

        meter.CreateObservableCounter("deferruntime.irq.count", ObserveIrqs, "{interrupt}",
            "Hard-IRQ handler chain runs per line and CPU (/proc/interrupts), with LOC (local timer) and CAL (function-call IPIs).");
        meter.CreateObservableCounter("deferruntime.softirq.count", ObserveSoftirqs, "{softirq}",
            "Softirq action runs per vector and CPU (/proc/softirqs).");
        meter.CreateObservableCounter("deferruntime.softirq.ksoftirqd_wakeups", () => PerCpu(c => c.KsoftirqdWakeupCount), "{wakeup}",
            "Times __do_softirq exhausted its budget (10 restarts or 2 ms) and handed the rest to ksoftirqd/N.");
        meter.CreateObservableCounter("deferruntime.tasklet.count", () => PerCpu(c => c.TaskletRunCount), "{tasklet}",
            "Tasklet callbacks run per CPU (TASKLET and HI softirqs).");
        meter.CreateObservableCounter("deferruntime.work.queued", () => PerWorkqueue(static p => Volatile.Read(ref p.Queued)), "{work}",
            "Work items accepted by queue_work() per workqueue.");
        meter.CreateObservableCounter("deferruntime.work.executed", () => PerWorkqueue(static p => Volatile.Read(ref p.Executed)), "{work}",
            "Work item functions that returned, per workqueue.");
        meter.CreateObservableGauge("deferruntime.workqueue.workers", ObserveWorkers, "{worker}",
            "kworkers per worker pool: total (nr_workers), idle (nr_idle), running (nr_running, concurrency managed).");
        meter.CreateObservableCounter("deferruntime.faults", () => runtime.Faults.Count, "{fault}",
            "Oopses and kernel warnings reported in Runtime.Faults.");
        _workLatency = meter.CreateHistogram<double>("deferruntime.work.queue_latency", "s",
            "From queue_work() to the start of the item's function (fed only while a listener has it enabled).");
        _softirqLatency = meter.CreateHistogram<double>("deferruntime.softirq.raise_latency", "s",
            "From a vector's first raise to the entry of its action (fed only while a listener has it enabled).");
    }

    /// <summary>The meter the instruments live on.</summary>
    public Meter Meter { get; }

    /// <summary>
    /// Publishes <paramref name="runtime"/>'s counters on <paramref name="meter"/> (its name should be
    /// <see cref="MeterName"/>; one from an <c>IMeterFactory</c> is scoped to its container), or on a new
    /// meter named "DeferRuntime" that the returned object owns. One per runtime.
    /// </summary>
    public static RuntimeMetrics Create(Runtime runtime, Meter? meter = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        var metrics = new RuntimeMetrics(runtime, meter ?? new Meter(MeterName), ownsMeter: meter is null);
        if (!runtime.AttachMetrics(metrics))
        {
            metrics.Dispose();
            throw new InvalidOperationException("RuntimeMetrics.Create(): this runtime already publishes its metrics; dispose the other RuntimeMetrics first.");
        }
        return metrics;
    }

    /// <summary>Stops feeding the histograms and, if it made the meter, disposes it (its instruments go with it).</summary>
    public void Dispose()
    {
        _runtime.DetachMetrics(this);
        if (_ownsMeter)
        {
            Meter.Dispose();
        }
    }

    /// <summary>The queue-latency histogram has a listener. PERF: inlined into the queue path.</summary>
    internal bool WorkLatencyOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _workLatency.Enabled;
    }

    /// <summary>The raise-latency histogram has a listener. PERF: inlined into the raise path.</summary>
    internal bool SoftirqLatencyOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _softirqLatency.Enabled;
    }

    /// <summary>One queue-to-start sample, on the worker, outside any lock (a listener runs here).</summary>
    internal void RecordWorkLatency(Workqueue wq, long ticks) =>
        _workLatency.Record(ticks * SecondsPerTick, new KeyValuePair<string, object?>("workqueue", wq.Name));

    /// <summary>One raise-to-entry sample, in softirq context (a listener runs here).</summary>
    internal void RecordSoftirqLatency(int nr, long ticks) =>
        _softirqLatency.Record(ticks * SecondsPerTick, new KeyValuePair<string, object?>("vector", SoftirqTable.Names[nr]));

    // ---- observations: collection time, never a hot path ----

    private List<Measurement<long>> ObserveIrqs()
    {
        var result = new List<Measurement<long>>();
        var cpus = _runtime.Cpus;
        foreach (var desc in _runtime.Irqs.Lines)
        {
            for (int c = 0; c < cpus.Count; c++)
            {
                long runs = desc.GetCpuRuns(c);
                if (runs != 0)
                {
                    result.Add(new Measurement<long>(runs, new("line", _lineTags[desc.Irq]), new("cpu", _cpuTags[c])));
                }
            }
        }
        foreach (var cpu in cpus)
        {
            result.Add(new Measurement<long>(cpu.LocalTimerInterruptCount, new("line", "LOC"), new("cpu", _cpuTags[cpu.Id])));
            result.Add(new Measurement<long>(cpu.IpiCallCount, new("line", "CAL"), new("cpu", _cpuTags[cpu.Id])));
        }
        return result;
    }

    private List<Measurement<long>> ObserveSoftirqs()
    {
        var result = new List<Measurement<long>>();
        foreach (var cpu in _runtime.Cpus)
        {
            for (int nr = 0; nr < SoftirqTable.VectorCount; nr++)
            {
                result.Add(new Measurement<long>(cpu.GetSoftirqCount((SoftirqVector)nr), new("vector", SoftirqTable.Names[nr]), new("cpu", _cpuTags[cpu.Id])));
            }
        }
        return result;
    }

    private List<Measurement<long>> PerCpu(Func<Cpus.VirtualCpu, long> read)
    {
        var result = new List<Measurement<long>>();
        foreach (var cpu in _runtime.Cpus)
        {
            result.Add(new Measurement<long>(read(cpu), new KeyValuePair<string, object?>("cpu", _cpuTags[cpu.Id])));
        }
        return result;
    }

    private List<Measurement<long>> PerWorkqueue(Func<PoolWorkqueue, long> read)
    {
        var result = new List<Measurement<long>>();
        foreach (var wq in _runtime.Wq.SnapshotWorkqueues())
        {
            long sum = 0;
            foreach (var pwq in wq.Pwqs)
            {
                sum += read(pwq);
            }
            result.Add(new Measurement<long>(sum, new KeyValuePair<string, object?>("workqueue", wq.Name)));
        }
        return result;
    }

    private List<Measurement<int>> ObserveWorkers()
    {
        var result = new List<Measurement<int>>();
        foreach (var pool in _runtime.Wq.Pools)
        {
            if (pool.IsBh)
            {
                continue; // bh pools have no threads
            }
            // Racy reads of lock-protected counts: a gauge is a snapshot anyway.
            string name = pool.HighPri && pool.Cpu is not null ? pool.NamePrefix + "H" : pool.NamePrefix;
            result.Add(new Measurement<int>(Volatile.Read(ref pool.Hot.NrWorkers), new("pool", name), new("state", "total")));
            result.Add(new Measurement<int>(Volatile.Read(ref pool.Hot.NrIdle), new("pool", name), new("state", "idle")));
            result.Add(new Measurement<int>(Volatile.Read(ref pool.Hot.NrRunning), new("pool", name), new("state", "running")));
        }
        return result;
    }
}
