using System.Diagnostics;
using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;
using DeferRuntime.Locking;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests;

/// <summary>
/// No CPU can make shutdown hang: whatever a handler does, Shutdown(timeout) and Dispose() return (the
/// 5 s bound below only catches a hang, it measures nothing), name each thread they left behind with what
/// it runs, and make the runtime's own waits on such a thread give up, but only once the drain is over.
/// </summary>
public class RuntimeShutdownBoundTests
{
    private static readonly TimeSpan Timeout = ShutdownTesting.Timeout;
    private static readonly TimeSpan HangBound = ShutdownTesting.HangBound;

    private static RuntimeShutdownReport ShutdownWithinBound(Runtime rt) => ShutdownTesting.ShutdownWithinBound(rt);

    [Fact]
    public void A_hard_irq_handler_that_never_returns_is_left_behind_and_named()
    {
        var rt = TestRuntime.Boot(2);
        using var stuck = new StuckCallback();
        int irq = rt.Irqs.AllocateIrq();
        rt.Irqs.IrqSetAffinity(irq, 0);
        rt.Irqs.RequestIrq(irq, (_, _) => { stuck.Spin(); return IrqReturn.Handled; }, IrqFlags.None, "spinner");
        rt.Irqs.AssertEdge(irq);
        stuck.WaitEntered();

        var report = ShutdownWithinBound(rt);

        Assert.False(report.Completed);
        Assert.NotNull(report.Abandoned);
        var t = Assert.Single(report.StuckThreads, t => t.Thread == "cpu/0");
        Assert.Equal(0, t.Cpu);
        Assert.Equal(ThreadRole.Cpu, t.Role);
        Assert.Equal("hard-IRQ", t.Context);
        Assert.Equal($"irq {irq} handler 'spinner'", t.Running);
        Assert.Null(t.Softirq);
        Assert.Equal($"cpu/0 (CPU 0, hard-IRQ) running irq {irq} handler 'spinner'", t.ToString());
        Assert.True(rt.IsShutDown);
    }

    [Fact]
    public void A_tasklet_that_spins_forever_is_left_behind_and_named()
    {
        var rt = TestRuntime.Boot(2);
        using var stuck = new StuckCallback();
        var tasklet = rt.CreateTasklet(_ => stuck.Spin(), "spinner");
        rt.OnCpu(0, tasklet.Schedule); // runs on CPU 0, on irq exit
        stuck.WaitEntered();

        var report = ShutdownWithinBound(rt);

        Assert.False(report.Completed);
        var t = Assert.Single(report.StuckThreads, t => t.Running == "tasklet 'spinner'");
        Assert.Contains(t.Thread, new[] { "cpu/0", "ksoftirqd/0" }); // cpu/0, unless ksoftirqd/0 had the softirqs then
        Assert.Equal(0, t.Cpu);
        Assert.Equal("softirq", t.Context);
        Assert.Equal(SoftirqVector.Tasklet, t.Softirq);
        Assert.Contains("(CPU 0, softirq TASKLET) running tasklet 'spinner'", t.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_work_item_blocked_forever_is_left_behind_and_named()
    {
        var rt = TestRuntime.Boot(2);
        using var stuck = new StuckCallback();
        rt.SystemWq.QueueOn(0, new WorkStruct(_ => stuck.Block(), "blocked"));
        stuck.WaitEntered();

        var report = ShutdownWithinBound(rt);

        Assert.False(report.Completed);
        var running = Assert.Single(report.StillRunning);
        Assert.Equal("blocked", running.Name);
        Assert.Equal("events", running.Workqueue);
        Assert.Contains("0 item(s) not started, 1 still running: work 'blocked' on workqueue 'events' (CPU 0): still running on kworker/0:", report.Abandoned, StringComparison.Ordinal);
        var t = Assert.Single(report.StuckThreads, t => t.Running == "work item 'blocked'");
        Assert.StartsWith("kworker/0:", t.Thread, StringComparison.Ordinal);
        Assert.Equal(0, t.Cpu);
        Assert.Equal(ThreadRole.Worker, t.Role);
        Assert.Equal("task", t.Context);
        Assert.Null(t.Softirq);
    }

    [Fact]
    public void A_softirq_action_blocked_forever_is_left_behind_and_named_by_its_vector()
    {
        var rt = TestRuntime.Boot(2);
        using var stuck = new StuckCallback();
        rt.OpenSoftirq(SoftirqVector.NetRx, stuck.Block);
        rt.OnCpu(0, () => rt.RaiseSoftirq(SoftirqVector.NetRx));
        stuck.WaitEntered();

        var report = ShutdownWithinBound(rt);

        var t = Assert.Single(report.StuckThreads, t => t.Softirq == SoftirqVector.NetRx);
        Assert.Contains(t.Thread, new[] { "cpu/0", "ksoftirqd/0" });
        Assert.Equal("softirq", t.Context);
        Assert.Null(t.Running); // the action's state is a value: the vector names it
        Assert.Contains("(CPU 0, softirq NET_RX) running its action", t.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void An_irq_thread_function_that_never_returns_is_left_behind_and_named()
    {
        var rt = TestRuntime.Boot(2);
        using var stuck = new StuckCallback();
        int irq = rt.Irqs.AllocateIrq();
        rt.Irqs.IrqSetAffinity(irq, 1);
        rt.Irqs.RequestThreadedIrq(irq, null, (_, _) => { stuck.Block(); return IrqReturn.Handled; }, IrqFlags.OneShot, "slow");
        rt.Irqs.AssertEdge(irq);
        stuck.WaitEntered();

        var report = ShutdownWithinBound(rt);

        var t = Assert.Single(report.StuckThreads, t => t.Thread == $"irq/{irq}-slow");
        Assert.Equal(1, t.Cpu);
        Assert.Equal(ThreadRole.IrqThread, t.Role);
        Assert.Equal("task", t.Context);
        Assert.Equal($"irq {irq} thread function 'slow'", t.Running);
    }

    [Fact]
    public void Dispose_returns_and_its_timeout_names_the_stuck_thread_and_what_it_runs()
    {
        var rt = TestRuntime.Boot(2, o => o.ShutdownTimeout = Timeout);
        using var stuck = new StuckCallback();
        rt.SmpCallFunctionSingle(0, stuck.Spin, wait: false);
        stuck.WaitEntered();

        Exception? thrown = null;
        var clock = Stopwatch.StartNew();
        Guarded.Run(() => thrown = Record.Exception(rt.Dispose), "disposer");
        Assert.True(clock.Elapsed < HangBound, $"Dispose() with ShutdownTimeout {Timeout.TotalMilliseconds} ms took {clock.Elapsed}");

        var e = Assert.IsType<TimeoutException>(thrown);
        Assert.Contains("was abandoned", e.Message, StringComparison.Ordinal);
        Assert.Contains("threads left running: ", e.Message, StringComparison.Ordinal);
        Assert.Contains("cpu/0 (CPU 0, hard-IRQ) running IPI call function", e.Message, StringComparison.Ordinal);
        rt.Dispose(); // twice: harmless, and at once
    }

    [Fact]
    public void A_second_shutdown_returns_the_first_report_at_once()
    {
        var rt = TestRuntime.Boot(1);
        using var stuck = new StuckCallback();
        var tasklet = rt.CreateTasklet(_ => stuck.Spin(), "spinner");
        rt.OnCpu(0, tasklet.Schedule);
        stuck.WaitEntered();

        var first = ShutdownWithinBound(rt);
        var second = ShutdownWithinBound(rt);

        Assert.Same(first, second);
        Assert.Contains(first.StuckThreads, t => t.Running == "tasklet 'spinner'");
        Assert.Null(Record.Exception(rt.Dispose)); // after Shutdown: nothing more to report
    }

    [Fact]
    public void A_spinlock_waiter_gives_up_once_shutdown_does_and_a_thread_of_no_cpu_keeps_its_place()
    {
        var rt = TestRuntime.Boot(2);
        using var stuck = new StuckCallback();
        // A lock taken in hard-IRQ context and by a thread of no CPU (which cannot disable interrupts) is
        // the irq-unsafe mix the validator reports; this test needs exactly that, so its lock is kept out
        // of the suite-wide validator.
        var spin = new KernelSpinlock("shutdown.held-by-a-stuck-handler", new LockValidator(enabled: false));
        rt.SmpCallFunctionSingle(0, () =>
        {
            spin.Lock();
            stuck.Spin();
            spin.Unlock();
        }, wait: false);
        stuck.WaitEntered();

        Exception? gaveUp = null;
        bool waiterTookIt = false;
        var waiter = rt.CreateTasklet(_ =>
        {
            try
            {
                var flags = spin.LockIrqSave();
                waiterTookIt = true;
                spin.UnlockIrqRestore(flags);
            }
            catch (ObjectDisposedException e)
            {
                Volatile.Write(ref gaveUp, e);
            }
        }, "waiter");
        rt.OnCpu(1, waiter.Schedule);
        Wait.Until(() => spin.QueuedWaiters == 1, "the tasklet to queue on the lock");
        // A thread of no CPU queues behind it: it has no runtime to give up with, and keeps waiting.
        bool foreignTookIt = false;
        var foreign = Guarded.Start(() =>
        {
            spin.Lock();
            foreignTookIt = true;
            spin.Unlock();
        }, "foreign-locker");
        Wait.Until(() => spin.QueuedWaiters == 2, "the thread of no CPU to queue behind the tasklet");
        Assert.Null(Volatile.Read(ref gaveUp));

        var report = ShutdownWithinBound(rt);

        Assert.Single(report.StuckThreads, t => t.Thread == "cpu/0" && t.Running == "IPI call function");
        Wait.Until(() => Volatile.Read(ref gaveUp) is not null, "the tasklet's spin_lock() to give up");
        Assert.Contains("spin_lock(): the runtime's shutdown gave up", gaveUp!.Message, StringComparison.Ordinal);
        Assert.False(waiterTookIt);
        // The waiter left the queue as a taker would: the thread of no CPU is head now, still waiting.
        Wait.Until(() => spin.QueuedWaiters == 1, "the waiter to leave the queue");
        Assert.False(Volatile.Read(ref foreignTookIt));

        stuck.Release();
        foreign.Join();
        Assert.True(foreignTookIt);
        Assert.False(spin.IsLocked);
    }

    [Fact]
    public void During_the_drain_a_spinlock_waiter_keeps_waiting_and_gets_the_lock()
    {
        var rt = TestRuntime.Boot(2);
        using var holder = new StuckCallback();
        var spin = new KernelSpinlock("shutdown.held-during-the-drain");
        rt.SmpCallFunctionSingle(0, () =>
        {
            spin.Lock();
            holder.Spin();
            spin.Unlock();
        }, wait: false);
        holder.WaitEntered();
        Exception? fault = null;
        bool tookIt = false;
        var waiter = rt.CreateTasklet(_ =>
        {
            try
            {
                var flags = spin.LockIrqSave(); // irq-safe: its holder below is a hard-IRQ function
                tookIt = true;
                spin.UnlockIrqRestore(flags);
            }
            catch (ObjectDisposedException e)
            {
                fault = e;
            }
        }, "waiter");
        rt.OnCpu(1, waiter.Schedule);
        Wait.Until(() => spin.QueuedWaiters == 1, "the tasklet to queue on the lock");

        RuntimeShutdownReport? report = null;
        var shutdown = Guarded.Start(() => report = rt.Shutdown(Wait.Ceiling), "shutdown");
        Wait.Until(() => rt.IsShutDown, "the drain to begin");
        // Napping: past the point where a dead runtime's waiter would give up, yet it waits on.
        long naps = Volatile.Read(ref rt.Cpus[1].CpuContext.SpinWaitNaps);
        Wait.Until(() => Volatile.Read(ref rt.Cpus[1].CpuContext.SpinWaitNaps) > naps + 10, "the waiter to nap during the drain");
        holder.Release();
        shutdown.Join();

        Assert.True(report!.Completed, report.ToString());
        Assert.True(tookIt);
        Assert.Null(fault);
    }

    /// <summary>Shutdown(250 ms) on a guarded thread; a shutdown still running after 5 s is a hang.</summary>
}
