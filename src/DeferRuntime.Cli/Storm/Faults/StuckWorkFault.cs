using System.Diagnostics;
using DeferRuntime.Diagnostics;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Cli.Storm.Faults;

/// <summary>
/// --fault stuck-work: a work item on CPU 0's bound pool that blocks in a plain .NET wait, with the
/// runtime's look at the OS's thread state turned off for the run
/// (<see cref="RuntimeOptions.WorkqueueDetectBlockedOutside"/> false, set by whoever boots the runtime for
/// this fault): the user-space version of a work function that blocks without telling the scheduler. The
/// pool believes its worker is running, starts nobody for the items queued behind it, and the stall
/// watchdog reports "BUG: workqueue lockup". Other pools (high priority on the same CPU,
/// unbound) must keep running meanwhile: probe items are queued on them. The stuck item is released
/// once the watchdog has reported and both probes have run (or at a hang-guard ceiling).
/// </summary>
internal sealed class StuckWorkFault : IDisposable
{
    private const string WatchdogSource = "workqueue watchdog";

    private readonly Runtime _runtime;
    private readonly Workqueue _wq;
    private readonly ManualResetEventSlim _started = new();
    private readonly ManualResetEventSlim _release = new();
    private readonly WorkStruct _stuck, _victim, _probeHighpri, _probeUnbound;
    private readonly TimeSpan _ceiling;
    private Thread? _monitor;
    private volatile string? _watchdogReport;
    private long _stuckAt, _releasedAt, _victimRanAt, _highpriRanAt, _unboundRanAt;

    public StuckWorkFault(Runtime runtime, Workqueue wq, TimeSpan ceiling)
    {
        _runtime = runtime;
        _wq = wq;
        _ceiling = ceiling;
        // PERF is irrelevant here; what matters is that this wait is not a runtime primitive, so the
        // worker never calls wq_worker_sleeping() and its pool keeps counting it as running.
        _stuck = new WorkStruct(_ =>
        {
            Volatile.Write(ref _stuckAt, Stopwatch.GetTimestamp());
            _started.Set();
            _release.Wait(_ceiling);
        }, "storm-stuck");
        _victim = new WorkStruct(_ => Volatile.Write(ref _victimRanAt, Stopwatch.GetTimestamp()), "storm-victim");
        _probeHighpri = new WorkStruct(_ => Volatile.Write(ref _highpriRanAt, Stopwatch.GetTimestamp()), "storm-probe-highpri");
        _probeUnbound = new WorkStruct(_ => Volatile.Write(ref _unboundRanAt, Stopwatch.GetTimestamp()), "storm-probe-unbound");
        runtime.Faults.Faulted += OnFault;
    }

    private void OnFault(object? sender, FaultRecord record)
    {
        // Only the report naming our item: on a loaded machine another pool may be reported too.
        if (record.Source == WatchdogSource && _watchdogReport is null && record.Exception.Message.Contains("'storm-stuck'", StringComparison.Ordinal))
        {
            _watchdogReport = record.Exception.Message;
        }
    }

    /// <summary>Queues the stuck item on CPU 0 and, once it runs, the victim behind it and the probes elsewhere.</summary>
    public void Start()
    {
        _wq.QueueOn(0, _stuck);
        _monitor = new Thread(Monitor) { Name = "stuck-work", IsBackground = true };
        _monitor.Start();
    }

    private void Monitor()
    {
        var clock = Stopwatch.StartNew();
        if (_started.Wait(_ceiling))
        {
            _wq.QueueOn(0, _victim);
            _runtime.SystemHighpriWq.QueueOn(0, _probeHighpri);
            _runtime.SystemUnboundWq.Queue(_probeUnbound);
            while (clock.Elapsed < _ceiling &&
                   (_watchdogReport is null || Volatile.Read(ref _highpriRanAt) == 0 || Volatile.Read(ref _unboundRanAt) == 0))
            {
                Thread.Sleep(5);
            }
        }
        Volatile.Write(ref _releasedAt, Stopwatch.GetTimestamp());
        _release.Set();
    }

    /// <summary>Waits for the stall to end and the victim to run (hang guard only).</summary>
    public StuckWorkReport Finish()
    {
        _monitor?.Join();
        _victim.FlushWork();
        long stuck = Volatile.Read(ref _stuckAt), released = Volatile.Read(ref _releasedAt);
        bool OtherRanDuringStall(long at) => at != 0 && at < released;
        return new StuckWorkReport(
            _watchdogReport is not null, _watchdogReport,
            stuck == 0 ? 0 : Stopwatch.GetElapsedTime(stuck, released).TotalMilliseconds,
            OtherRanDuringStall(Volatile.Read(ref _highpriRanAt)), OtherRanDuringStall(Volatile.Read(ref _unboundRanAt)),
            Volatile.Read(ref _victimRanAt) >= released && released != 0);
    }

    /// <summary>Releases the item whatever happened (shutdown must not wait for the ceiling).</summary>
    public void Dispose()
    {
        _runtime.Faults.Faulted -= OnFault;
        _release.Set();
        _monitor?.Join();
        _started.Dispose();
    }
}

/// <summary>What the stall watchdog saw.</summary>
/// <param name="WatchdogReported">The watchdog reported the stuck pool.</param>
/// <param name="Report">Its "BUG: workqueue lockup" message.</param>
/// <param name="StallMs">How long the item was stuck.</param>
/// <param name="HighpriPoolRan">A probe on CPU 0's high-priority pool ran during the stall.</param>
/// <param name="UnboundPoolRan">A probe on an unbound pool ran during the stall.</param>
/// <param name="VictimRanAfter">The item queued behind the stuck one ran once it was released.</param>
internal sealed record StuckWorkReport(bool WatchdogReported, string? Report, double StallMs, bool HighpriPoolRan, bool UnboundPoolRan, bool VictimRanAfter);
