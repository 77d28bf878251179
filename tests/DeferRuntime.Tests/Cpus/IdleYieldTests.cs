using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;
using DeferRuntime.Locking;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Cpus;

/// <summary>
/// A CPU's idle loop never competes with its own runnable tasks, under every idle policy: the tasks keep
/// their core's run queue (<see cref="CoreRunQueue"/>) and cpu/N's poll gives way to it, parking instead.
/// Nothing here is timed: each test holds a task runnable (spinning on a flag) or blocked, and waits for
/// the state that must follow.
/// </summary>
public class IdleYieldTests
{
    private static Runtime Boot(IdlePolicy policy, int cpus = 2, TimeSpan? pollWindow = null) =>
        TestRuntime.Boot(cpus, o =>
        {
            o.IdlePolicy = policy;
            if (pollWindow is { } window)
            {
                o.PollWindow = window;
            }
        });

    /// <summary>Runs one item on CPU 0's normal pool and waits until the pool's workers are all back to idle, so later counts start from an empty run queue.</summary>
    private static void WarmCpu0Pool(Runtime rt)
    {
        var warm = new WorkStruct(_ => { }, "warm");
        Assert.True(rt.SystemWq.QueueOn(0, warm));
        warm.FlushWork();
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        Wait.Until(() => pool.Counts.Idle == pool.Counts.Workers, "CPU 0's pool to go idle");
        Wait.Until(() => rt.Cpus[0].RunQueue.NrRunnable == 0, "core 0's run queue to empty");
    }

    private static WorkStruct Spinner(StrongFlag started, StrongFlag release, string name) => new(_ =>
    {
        started.Set();
        while (!release.IsSet)
        {
            Thread.SpinWait(20); // runnable all along: never blocks
        }
    }, name);

    [Fact]
    public void Under_poll_cpu_N_parks_while_a_kworker_of_its_core_runs_an_item_and_polls_again_after()
    {
        using var rt = Boot(IdlePolicy.Poll);
        WarmCpu0Pool(rt);
        var cpu = rt.Cpus[0];
        var started = new StrongFlag();
        var release = new StrongFlag();
        using var onExit = new OnExit(release.Set);
        long parks = cpu.ParkCount, yields = cpu.IdleYieldCount;

        var item = Spinner(started, release, "spinner");
        Assert.True(rt.SystemWq.QueueOn(0, item));
        Wait.Until(started.Get, "the item to start");
        Assert.True(cpu.RunQueue.NrRunnable >= 1, "a kworker running an item is on its core's run queue");
        Wait.Until(() => cpu.ParkCount > parks && cpu.IdleYieldCount > yields, "cpu/0 to stop polling and park while the kworker runs");
        Wait.Until(() => Volatile.Read(ref cpu.Line.IdleState) == VirtualCpu.Parked, "cpu/0 to stay parked while the kworker runs");

        release.Set();
        item.FlushWork();
        Wait.Until(() => cpu.RunQueue.NrRunnable == 0, "the kworker to leave the run queue when it idles");
        // idle=poll: once nothing else is runnable, the idle loop polls again (the last task out kicked it).
        Wait.Until(() => Volatile.Read(ref cpu.Line.IdleState) == VirtualCpu.Running, "cpu/0 to go back to polling");
    }

    [Fact]
    public void Under_hybrid_cpu_N_gives_way_at_once_to_a_kworker_it_kicked_itself()
    {
        // A poll window of a second: had cpu/0 polled on after queueing, its park would come only from the
        // window's end, which is not a yield. The yield count says which it was.
        using var rt = Boot(IdlePolicy.Hybrid, pollWindow: TimeSpan.FromSeconds(1));
        WarmCpu0Pool(rt);
        var cpu = rt.Cpus[0];
        var started = new StrongFlag();
        var release = new StrongFlag();
        using var onExit = new OnExit(release.Set);
        var item = Spinner(started, release, "spinner");
        long yields = cpu.IdleYieldCount;

        // Queued in hard-IRQ context on cpu/0 itself, which goes idle right after the handler.
        rt.OnCpu(0, () => Assert.True(rt.SystemWq.QueueOn(0, item)));
        Wait.Until(started.Get, "the item to start");
        Wait.Until(() => cpu.IdleYieldCount > yields, "cpu/0's idle to give way to the kworker it kicked");

        release.Set();
        item.FlushWork();
        Wait.Until(() => cpu.RunQueue.NrRunnable == 0, "the kworker to leave the run queue");
    }

    [Fact]
    public void A_kworker_blocked_in_a_runtime_primitive_is_off_the_run_queue_until_it_runs_again()
    {
        using var rt = Boot(IdlePolicy.Poll);
        WarmCpu0Pool(rt);
        var queue = rt.Cpus[0].RunQueue;
        var entered = new StrongFlag();
        var gate = new Completion();
        var spinAfter = new StrongFlag();
        var woke = new StrongFlag();
        using var onExit = new OnExit(gate.Complete, spinAfter.Set);
        var item = new WorkStruct(_ =>
        {
            entered.Set();
            gate.WaitForCompletion(); // wq_worker_sleeping(): not runnable
            woke.Set();
            while (!spinAfter.IsSet)
            {
                Thread.SpinWait(20);
            }
        }, "sleeper");

        Assert.True(rt.SystemWq.QueueOn(0, item));
        Wait.Until(entered.Get, "the item to start");
        Wait.Until(() => queue.NrRunnable == 0, "the blocked kworker to leave the run queue");
        // Nothing runnable on core 0: under idle=poll, cpu/0 polls.
        Wait.Until(() => Volatile.Read(ref rt.Cpus[0].Line.IdleState) == VirtualCpu.Running, "cpu/0 to poll while the kworker sleeps");

        gate.Complete();
        Wait.Until(woke.Get, "the item to wake");
        Assert.True(queue.NrRunnable >= 1, "a kworker that runs again is back on the run queue");
        spinAfter.Set();
        item.FlushWork();
        Wait.Until(() => queue.NrRunnable == 0, "the kworker to leave the run queue when it idles");
    }

    [Fact]
    public void A_kworker_blocked_outside_the_runtime_leaves_the_run_queue_once_the_ticker_counts_it_out()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the OS's view of a thread's state is read from /proc
        }
        using var rt = Boot(IdlePolicy.Poll, cpus: 1);
        WarmCpu0Pool(rt);
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        var queue = rt.Cpus[0].RunQueue;
        using var gate = new ManualResetEventSlim();
        using var onExit = new OnExit(gate.Set);
        var entered = new StrongFlag();
        var item = new WorkStruct(_ =>
        {
            entered.Set();
            gate.Wait(Wait.Ceiling); // a .NET wait the runtime does not see
        }, "blocked-outside");
        long countedOut = pool.BlockedOutside;

        Assert.True(rt.SystemWq.QueueOn(0, item));
        Wait.Until(entered.Get, "the item to start");
        Wait.Until(() => Volatile.Read(ref pool.BlockedOutside) > countedOut, "the ticker to count the blocked worker out");
        Wait.Until(() => queue.NrRunnable == 0, "the worker counted out to leave the run queue");

        gate.Set();
        item.FlushWork();
        Wait.Until(() => queue.NrRunnable == 0, "the run queue to stay balanced after the item returns");
    }

    [Fact]
    public void Under_poll_cpu_N_parks_while_its_ksoftirqd_runs()
    {
        using var rt = Boot(IdlePolicy.Poll);
        var cpu = rt.Cpus[0];
        int stop = 0;
        using var onExit = new OnExit(() => Volatile.Write(ref stop, 1));
        var ksoftirqdRan = new StrongFlag();
        rt.OpenSoftirq(SoftirqVector.NetRx, () =>
        {
            if (Thread.CurrentThread.Name == "ksoftirqd/0")
            {
                ksoftirqdRan.Set();
            }
            if (Volatile.Read(ref stop) == 0)
            {
                rt.RaiseSoftirq(SoftirqVector.NetRx); // re-raises itself: ksoftirqd/0 takes over and keeps running
            }
        });
        long parks = cpu.ParkCount;

        rt.OnCpu(0, () => rt.RaiseSoftirq(SoftirqVector.NetRx));
        Wait.Until(ksoftirqdRan.Get, "ksoftirqd/0 to take over");
        // It keeps re-raising, so ksoftirqd/0 stays running (woken, TASK_RUNNING) until told to stop.
        Wait.Until(() => cpu.RunQueue.NrRunnable >= 1, "the running ksoftirqd/0 to be on its core's run queue");
        Wait.Until(() => cpu.ParkCount > parks, "cpu/0 to park while ksoftirqd/0 runs");

        Volatile.Write(ref stop, 1);
        Wait.Until(() => !cpu.Ksoftirqd.IsRunning, "ksoftirqd/0 to go back to sleep");
        Wait.Until(() => cpu.RunQueue.NrRunnable == 0, "ksoftirqd/0 to leave the run queue");
        Wait.Until(() => Volatile.Read(ref cpu.Line.IdleState) == VirtualCpu.Running, "cpu/0 to go back to polling");
    }

    [Fact]
    public void Under_poll_cpu_N_parks_while_a_woken_irq_thread_of_its_core_runs_and_not_while_it_sleeps()
    {
        using var rt = Boot(IdlePolicy.Poll);
        var irqs = rt.Irqs;
        int irq = irqs.AllocateIrq();
        irqs.IrqSetAffinity(irq, [0]);
        var cpu = rt.Cpus[0];
        var spinning = new StrongFlag();
        var stopSpinning = new StrongFlag();
        var sleeping = new StrongFlag();
        var gate = new Completion();
        using var action = irqs.RequestThreadedIrq(irq, null, (_, _) =>
        {
            spinning.Set();
            while (!stopSpinning.IsSet)
            {
                Thread.SpinWait(20);
            }
            sleeping.Set();
            gate.WaitForCompletion(); // blocks in a runtime primitive: off the run queue
            return IrqReturn.Handled;
        }, IrqFlags.OneShot, "yield-test");
        using var onExit = new OnExit(stopSpinning.Set, gate.Complete); // disposed first: free_irq() waits for the thread function
        long parks = cpu.ParkCount, yields = cpu.IdleYieldCount;

        irqs.AssertEdge(irq);
        Wait.Until(spinning.Get, "the thread function to run");
        Assert.True(cpu.RunQueue.NrRunnable >= 1, "a woken irq thread is on its core's run queue");
        Wait.Until(() => cpu.ParkCount > parks && cpu.IdleYieldCount > yields, "cpu/0 to park while its irq thread runs");

        stopSpinning.Set();
        Wait.Until(sleeping.Get, "the thread function to block");
        Wait.Until(() => cpu.RunQueue.NrRunnable == 0, "the blocked irq thread to leave the run queue");
        Wait.Until(() => Volatile.Read(ref cpu.Line.IdleState) == VirtualCpu.Running, "cpu/0 to poll while the irq thread sleeps");

        gate.Complete();
        Wait.Until(() => action.ThreadRuns == 1, "the thread function to return");
        Wait.Until(() => cpu.RunQueue.NrRunnable == 0, "the irq thread to leave the run queue when it sleeps again");
    }

    [Fact]
    public void An_unbound_worker_is_runnable_on_every_core_of_its_mask_while_it_runs()
    {
        using var rt = Boot(IdlePolicy.Poll);
        var wq = rt.AllocWorkqueue("yield_unbound", WorkqueueFlags.Unbound);
        var started = new StrongFlag();
        var release = new StrongFlag();
        using var onExit = new OnExit(release.Set);
        var item = Spinner(started, release, "unbound-spinner");
        var queues = rt.Cpus.Select(c => c.RunQueue).Distinct().ToArray();

        Assert.True(wq.Queue(item));
        Wait.Until(started.Get, "the unbound item to start");
        Assert.All(queues, q => Assert.True(q.NrRunnable >= 1, $"{q}: an unbound worker counts on every core it may run on"));

        release.Set();
        item.FlushWork();
        Wait.Until(() => queues.All(q => q.NrRunnable == 0), "the unbound worker to leave every run queue");
        wq.Destroy();
    }

    [Fact]
    public void Run_queues_balance_to_zero_after_a_mix_of_bound_unbound_sleeping_and_cross_cpu_work()
    {
        using var rt = Boot(IdlePolicy.Poll);
        var unbound = rt.AllocWorkqueue("yield_mix_unbound", WorkqueueFlags.Unbound);
        var highpri = rt.AllocWorkqueue("yield_mix_highpri", WorkqueueFlags.HighPri);
        int items = Stress.Scale(2_000, 50_000);
        long ran = 0;
        var work = new WorkStruct[64];
        for (int i = 0; i < work.Length; i++)
        {
            bool sleeps = i % 16 == 0;
            work[i] = new WorkStruct(_ =>
            {
                if (sleeps)
                {
                    Delay.Msleep(1); // through the sleeping hooks
                }
                Interlocked.Increment(ref ran);
            }, $"mix{i}");
        }
        long queued = 0;
        var producers = Enumerable.Range(0, 2).Select(cpu => Guarded.Start(() =>
        {
            for (int i = 0; i < items; i++)
            {
                var w = work[(i * 7 + cpu) % work.Length];
                var wq = (i % 3) switch { 0 => rt.SystemWq, 1 => unbound, _ => highpri };
                // From hard-IRQ context on one CPU, onto either CPU's pool (cross-CPU queues included).
                rt.OnCpu(cpu, () =>
                {
                    if (wq == unbound ? wq.Queue(w) : wq.QueueOn(i % 2, w))
                    {
                        Interlocked.Increment(ref queued);
                    }
                });
            }
        }, $"producer{cpu}")).ToArray();
        foreach (var p in producers)
        {
            p.Join();
        }
        rt.SystemWq.Flush();
        unbound.Flush();
        highpri.Flush();
        Assert.Equal(Interlocked.Read(ref queued), Interlocked.Read(ref ran));
        Wait.Until(() => rt.Cpus.All(c => c.RunQueue.NrRunnable == 0), "every core's run queue to empty once all work is done");
        unbound.Destroy();
        highpri.Destroy();
    }

    /// <summary>
    /// Releases what a test holds (spinning items, blocked thread functions) when it ends, failed or not,
    /// so that a failed wait never leaves the runtime's shutdown waiting for them. Declared after the
    /// runtime, so disposed before it.
    /// </summary>
    private sealed class OnExit(params Action[] releases) : IDisposable
    {
        public void Dispose()
        {
            foreach (var release in releases)
            {
                release();
            }
        }
    }

    /// <summary>A flag set once, read by waiters (Volatile).</summary>
    private sealed class StrongFlag
    {
        private int _value;

        public bool IsSet => Volatile.Read(ref _value) != 0;

        public void Set() => Volatile.Write(ref _value, 1);

        public bool Get() => IsSet;
    }
}
