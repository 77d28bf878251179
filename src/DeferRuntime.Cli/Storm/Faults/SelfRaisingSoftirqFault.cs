using System.Diagnostics;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Cli.Storm.Faults;

/// <summary>
/// --fault self-raising-softirq: an IRQ_POLL action that raises itself every time it runs, started on
/// CPU 0. __do_softirq() restarts it ten times (MAX_SOFTIRQ_RESTART) or for 2 ms, then wakes ksoftirqd/0,
/// which runs it from then on at nice 19 while irq exit leaves it alone; work items on CPU 0 must still
/// run. At the end of generation the fault waits for ksoftirqd to have taken over and for a probe work item
/// queued on CPU 0 to have run while the flood went on, then stops raising.
/// </summary>
internal sealed class SelfRaisingSoftirqFault
{
    public const SoftirqVector Vector = SoftirqVector.IrqPoll;

    private readonly Runtime _runtime;
    private readonly WorkStruct _probe;
    private volatile bool _active;
    private long _runs; // A
    private long _probeRanAt; // the probe's start stamp
    private long _wakeupsBefore;

    public SelfRaisingSoftirqFault(Runtime runtime)
    {
        _runtime = runtime;
        runtime.OpenSoftirq(Vector, () =>
        {
            if (_active)
            {
                Interlocked.Increment(ref _runs);
                _runtime.RaiseSoftirq(Vector);
            }
        });
        _probe = new WorkStruct(_ => Volatile.Write(ref _probeRanAt, Stopwatch.GetTimestamp()), "storm-probe");
    }

    public void Start()
    {
        _wakeupsBefore = _runtime.Cpus[0].KsoftirqdWakeupCount;
        _active = true;
        _runtime.SmpCallFunctionSingle(0, () => _runtime.RaiseSoftirqIrqOff(Vector));
    }

    /// <summary>Waits (a hang guard only) for the take-over and the probe, then stops the flood.</summary>
    public SelfRaisingReport Finish(TimeSpan ceiling)
    {
        var clock = Stopwatch.StartNew();
        while (_runtime.Cpus[0].KsoftirqdWakeupCount == _wakeupsBefore && clock.Elapsed < ceiling)
        {
            Thread.Sleep(1);
        }
        long takeovers = _runtime.Cpus[0].KsoftirqdWakeupCount - _wakeupsBefore;
        long queued = Stopwatch.GetTimestamp();
        _runtime.SystemWq.QueueOn(0, _probe);
        while (Volatile.Read(ref _probeRanAt) == 0 && clock.Elapsed < ceiling)
        {
            Thread.Sleep(1);
        }
        long ranAt = Volatile.Read(ref _probeRanAt);
        bool stillFlooding = _active;
        _active = false;
        return new SelfRaisingReport(
            Interlocked.Read(ref _runs), takeovers, ranAt != 0 && stillFlooding,
            ranAt == 0 ? null : Stopwatch.GetElapsedTime(queued, ranAt).TotalMicroseconds);
    }

    public void Stop() => _active = false;
}

/// <summary>What the self-raising softirq did.</summary>
/// <param name="Runs">Runs of the action while it kept raising itself.</param>
/// <param name="KsoftirqdTakeovers">Times CPU 0's softirq processing gave up and woke ksoftirqd/0 during the fault.</param>
/// <param name="WorkProgressed">A work item queued on CPU 0 ran while the flood went on.</param>
/// <param name="ProbeLatencyUs">queue_work -> start of that probe item, µs.</param>
internal sealed record SelfRaisingReport(long Runs, long KsoftirqdTakeovers, bool WorkProgressed, double? ProbeLatencyUs);
