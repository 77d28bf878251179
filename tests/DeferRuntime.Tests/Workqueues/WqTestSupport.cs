using System.Runtime.CompilerServices;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>Helpers for workqueue tests: gates the test opens, counters, and waits on internal state.</summary>
internal static class WqTest
{
    /// <summary>
    /// Waits for an armed delayed item's timer to fire and queue it, then flush_work()s it: flush_work()
    /// does not wait for an instance its timer still holds (it is on no queue yet), only for a queued or
    /// running one. The timer leaves the wheel before its callback queues the item, so "not pending" is
    /// not enough: wait for the callback to let go of the instance.
    /// </summary>
    public static void FlushAfterTimer(DelayedWork work)
    {
        Wait.Until(() => !work.IsTimerPending && !work.IsTimerHeld, $"the timer of '{work.Name}' to fire and queue it");
        work.FlushWork();
    }

    /// <summary>Waits until <paramref name="count"/> threads sleep in a flush, cancel or freeze of <paramref name="rt"/>.</summary>
    public static void UntilWaiters(Runtime rt, int count, string what) =>
        Wait.Until(() => rt.Wq.WaiterCount >= count, what);

    /// <summary>
    /// Once CPU 0's normal pool of <paramref name="rt"/> is idle, holds back worker creation and occupies
    /// every worker but one with a blocker on <paramref name="gate"/> (each starts while another worker is
    /// in reserve): the next item wakes the last worker, which finds no idle worker in reserve, becomes the
    /// manager and fails to create one, so only a rescuer can run it.
    /// </summary>
    public static void OccupyAllButOneWorker(Runtime rt, WorkerPool pool, Completion gate)
    {
        rt.SystemWq.Flush();
        Wait.Until(() => pool.Counts.Idle == pool.Counts.Workers, "the pool to go idle");
        int workers = pool.Counts.Workers;
        rt.Wq.HoldWorkerCreation = true;
        var started = new StrongBox<int>();
        for (int i = 0; i < workers - 1; i++)
        {
            rt.SystemWq.Queue(Blocker(gate, started, $"occupier{i}"));
            int expected = i + 1;
            Wait.Until(() => started.Value == expected, "an occupier to start");
        }
    }

    /// <summary>
    /// Starts drain_workqueue() of <paramref name="wq"/> on a thread of its own and returns once the drain
    /// has begun; it is held open by an item of the workqueue blocked on <paramref name="release"/>.
    /// </summary>
    public static Thread StartDrainHeldOpen(Workqueue wq, Completion release)
    {
        Assert.True(wq.Queue(new WorkStruct(_ => release.WaitForCompletion(), "holds the drain open")));
        var drain = new Thread(wq.Drain) { IsBackground = true };
        drain.Start();
        Wait.Until(() => wq.IsDraining, "the drain to begin");
        return drain;
    }

    /// <summary>
    /// Stalls CPU 0's normal pool of <paramref name="rt"/>: with worker creation held back, one blocker
    /// per existing worker; all but the last start, and the last finds no idle worker in reserve, so its
    /// worker becomes the manager and fails to create one. Returns the pool and the number of blockers.
    /// </summary>
    public static (WorkerPool Pool, int Blockers) StallCpu0Pool(Runtime rt, Completion gate, StrongBox<int> started)
    {
        var warm = new WorkStruct(_ => { }, "warm");
        rt.SystemWq.Queue(warm);
        warm.FlushWork();
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        Wait.Until(() => pool.Counts.Idle == pool.Counts.Workers, "the pool to go idle");
        int workers = pool.Counts.Workers;
        rt.Wq.HoldWorkerCreation = true;
        for (int i = 0; i < workers; i++)
        {
            rt.SystemWq.Queue(Blocker(gate, started, $"stuck{i}"));
            if (i < workers - 1)
            {
                int expected = i + 1;
                Wait.Until(() => started.Value == expected, "a blocker to start");
            }
        }
        return (pool, workers);
    }

    /// <summary>An item that counts its runs and then blocks on <paramref name="gate"/> (a runtime primitive, so the pool sees it sleep).</summary>
    public static WorkStruct Blocker(Completion gate, StrongBox<int> started, string name) =>
        new(_ =>
        {
            Interlocked.Increment(ref started.Value);
            gate.WaitForCompletion();
        }, name);
}

/// <summary>Counts how many callers are inside at once and remembers the worst.</summary>
internal sealed class OverlapMeter
{
    private int _inside;
    private int _max;

    public int Max => Volatile.Read(ref _max);

    public int Inside => Volatile.Read(ref _inside);

    public void Enter()
    {
        int now = Interlocked.Increment(ref _inside);
        int seen = Volatile.Read(ref _max);
        while (now > seen)
        {
            int prev = Interlocked.CompareExchange(ref _max, now, seen);
            if (prev == seen)
            {
                break;
            }
            seen = prev;
        }
    }

    public void Exit() => Interlocked.Decrement(ref _inside);
}

/// <summary>
/// A bound thread of CPU <c>cpu</c> holding its bh gate (local_bh_disable) until disposed: that CPU's
/// softirqs (TIMER_SOFTIRQ included) stay pending meanwhile, whatever the timing of the test thread.
/// </summary>
internal sealed class BhGateHolder : IDisposable
{
    private readonly ManualResetEventSlim _held = new();
    private readonly ManualResetEventSlim _release = new();
    private readonly Guarded _thread;

    private BhGateHolder(Runtime rt, int cpu)
    {
        _thread = Guarded.Start(() => rt.Bound(cpu, () =>
        {
            using (DeferRuntime.Cpus.CpuContext.LocalBhDisable())
            {
                _held.Set();
                Wait.For(_release, "the test to release the bh gate");
            }
        }), $"bh-holder/{cpu}");
        Wait.For(_held, "the bh gate to be held");
    }

    public static BhGateHolder Hold(Runtime rt, int cpu) => new(rt, cpu);

    /// <summary>Releases the gate (local_bh_enable runs what is pending) and joins the holder.</summary>
    public void Dispose()
    {
        _release.Set();
        _thread.Join();
        _held.Dispose();
        _release.Dispose();
    }
}
