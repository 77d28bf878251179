using System.Reflection;
using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Tests.Interrupts;

/// <summary>
/// Regression tests from the review of the interrupt controller. Each one names the bug it pins down.
/// They check counts and invariants only; the 30 s ceilings of Wait/Guarded only catch hangs. Tests whose
/// bug is a self-deadlock boot with PanicOnOops and, on failure, panic the runtime on purpose (a throwing
/// handler on a spare line), which is the only way to get the wedged thread out of its wait so that
/// Dispose does not hang the test run.
/// </summary>
public class IrqRegressionTests
{
    // BUG A (IrqDesc.AccountWakeLocked / IrqThread.SetRunAndWake): __irq_wake_thread()'s test_and_set of
    // IRQTF_RUNTHREAD is split in two: IsRunPending is read under the descriptor lock, RUNTHREAD is set
    // later by WakeThreads, after FinishRunLocked has already cleared in-progress and released the lock.
    // A chain run on the other CPU in that window also finds RUNTHREAD clear and raises threads_active a
    // second time; both wakes set the same flag, the thread runs once and drops the count once, and
    // threads_active never returns to 0: synchronize_irq(), disable_irq() and free_irq() wait forever,
    // and shutdown never sees the line quiescent. A stress test: a shared line with many threaded
    // actions (the window grows with each futex wake WakeThreads issues before the last action's flag).
    [Fact]
    public void Wake_accounting_never_leaks_threads_active_when_two_cpus_wake_one_thread()
    {
        var runtime = TestRuntime.Boot(configure: o => o.PanicOnOops = true);
        bool ok = false;
        try
        {
            var irqs = runtime.Irqs;
            int irq = irqs.AllocateIrq();
            const int sharers = 16;
            var actions = new IrqAction[sharers];
            for (int i = 0; i < sharers; i++)
            {
                actions[i] = irqs.RequestThreadedIrq(irq, (_, _) => IrqReturn.WakeThread, (_, _) => IrqReturn.Handled, IrqFlags.Shared, $"s{i}", new object());
            }

            // A paced device: an edge every few microseconds, so that a chain run often ends (no replay)
            // and the next edge goes to the other CPU while the first is still in WakeThreads.
            int edges = Stress.Scale(20_000, 200_000);
            Guarded.Start(() =>
            {
                var rng = new Random(1);
                for (int i = 0; i < edges; i++)
                {
                    irqs.AssertEdge(irq);
                    Thread.SpinWait(rng.Next(50, 2_000));
                }
            }, "device").Join();
            Wait.Until(() => irqs.GetStats(irq) is { InProgress: false, Pending: false } s && s.Runs + s.Coalesced == s.Asserts, "every edge run or coalesced");

            // Every woken thread finishes: synchronize_irq() must return. With the leak it never does.
            var sync = Guarded.Start(() => irqs.SynchronizeIrq(irq), "synchronize_irq");
            try
            {
                sync.Join();
            }
            catch (TimeoutException)
            {
                var desc = DescOf(irqs, irq);
                Assert.Fail($"synchronize_irq() hangs: threads_active = {desc.ThreadsActive} with {actions.Count(a => a.Thread!.IsRunPending)} thread runs pending, " +
                    $"{actions.Sum(a => a.ThreadRuns)} thread runs done for {irqs.GetStats(irq).Runs} chain runs");
            }
            ok = true;
        }
        finally
        {
            Cleanup(runtime, ok);
        }
    }

    // BUG B (IrqController.Free): free_irq() refuses to run on the action's own thread ("would wait for
    // itself") but not on the thread of another action of the same line, although it waits for every
    // thread of the line (WaitUntilIdle: threads_active includes the caller's own run). DisableIrq and
    // SynchronizeIrq check every thread of the line (CheckNotOwnThread); Free does not. The irq thread
    // spins forever in WaitUntilIdle, with the sibling already unpublished; Runtime.Dispose then times
    // out its drain and hangs for good in FreeAll joining that thread (ThrowIfDead only fires once the
    // state is Stopped, which Dispose writes after the joins).
    [Fact]
    public void FreeIrq_of_a_sibling_from_a_thread_of_the_same_line_is_refused_not_deadlocked()
    {
        var runtime = TestRuntime.Boot(configure: o => o.PanicOnOops = true);
        bool ok = false;
        try
        {
            var irqs = runtime.Irqs;
            int irq = irqs.AllocateIrq();
            var devA = new object();
            var devB = new object();
            Exception? fromThread = null;
            var done = new ManualResetEventSlim(); // not disposed: a wedged thread may still set it
            var b = irqs.RequestIrq(irq, (_, _) => IrqReturn.Handled, IrqFlags.Shared, "b", devB);
            // Not `using`: on failure, free_irq() from here would wait for the wedged thread too.
            var a = irqs.RequestThreadedIrq(irq, (_, _) => IrqReturn.WakeThread, (n, _) =>
            {
                fromThread = Record.Exception(() => irqs.FreeIrq(n, devB));
                done.Set();
                return IrqReturn.Handled;
            }, IrqFlags.Shared, "a", devA);

            irqs.AssertEdge(irq);
            Wait.For(done, "free_irq() of a sibling from the line's own thread to return or be refused");
            Assert.IsType<InvalidOperationException>(fromThread);
            Assert.False(b.IsFreed); // refused before anything changed, as DisableIrq refuses
            b.Dispose();
            a.Dispose();
            ok = true;
        }
        finally
        {
            Cleanup(runtime, ok);
        }
    }

    // BUG C (IrqDesc.FinishThreadRun): irq_finalize_oneshot() re-checks IRQTF_RUNTHREAD under the lock
    // and keeps the thread's threads_oneshot bit when another run is already queued ("otherwise we would
    // clear the threads_oneshot bit of this thread which was just set"). FinishThreadRun clears it
    // unconditionally, so a OneShot line is unmasked while its thread still has a run pending: a level
    // line still asserted by its device fires again (and again) before the thread that services the
    // device has run. Interleaving: two deliveries of a level line are in flight (CPU 1's held behind its
    // irq gate); CPU 0 runs the chain and the thread starts run 1; CPU 1 then runs the chain, which queues
    // run 2 (RUNTHREAD clear, bit already set); run 1 returns -> bit cleared -> unmask -> the still
    // asserted line is delivered -> a third primary run, while kernel semantics allow exactly two.
    [Fact]
    public void A_OneShot_line_stays_masked_while_its_thread_has_a_run_pending()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq(IrqTrigger.Level);
        int primaries = 0, threadRuns = 0;
        using var firstRunEntered = new ManualResetEventSlim();
        using var releaseFirstRun = new ManualResetEventSlim();
        using var gateHeld = new ManualResetEventSlim();
        using var releaseGate = new ManualResetEventSlim();
        Guarded? gateHolder = null;
        try
        {
            using var action = irqs.RequestThreadedIrq(irq, (_, _) =>
            {
                Interlocked.Increment(ref primaries);
                return IrqReturn.WakeThread;
            }, (n, _) =>
            {
                if (Interlocked.Increment(ref threadRuns) == 1)
                {
                    firstRunEntered.Set();
                    releaseFirstRun.Wait(Wait.Ceiling);
                }
                else
                {
                    irqs.DeassertLevel(n); // run 2 services the device
                }
                return IrqReturn.Handled;
            }, IrqFlags.OneShot | IrqFlags.TriggerHigh, "oneshot-level");

            // CPU 1 takes local interrupts off, so a delivery to it stays pending.
            gateHolder = Guarded.Start(() =>
            {
                using var binding = runtime.Cpus[1].BindCurrentThread();
                var flags = CpuContext.LocalIrqSave();
                gateHeld.Set();
                releaseGate.Wait(Wait.Ceiling);
                CpuContext.LocalIrqRestore(flags);
            }, "cpu1-irqs-off");
            Wait.For(gateHeld, "CPU 1's irq gate");

            irqs.IrqSetAffinity(irq, 1);
            Assert.Equal(IrqAssertResult.Delivered, irqs.AssertLevel(irq)); // pending on CPU 1
            irqs.DeassertLevel(irq);                                          // the device pulses its line
            irqs.IrqSetAffinity(irq, 0);
            Assert.Equal(IrqAssertResult.Delivered, irqs.AssertLevel(irq)); // CPU 0: primary 1, thread run 1
            Wait.For(firstRunEntered, "thread run 1");
            Assert.True(irqs.GetStats(irq).Masked); // OneShot: masked while the thread runs

            releaseGate.Set(); // CPU 1 takes its pending delivery: primary 2 queues thread run 2
            gateHolder.Join();
            gateHolder = null;
            Wait.Until(() => Volatile.Read(ref primaries) == 2 && !irqs.GetStats(irq).InProgress, "primary 2 on CPU 1");

            releaseFirstRun.Set();
            Wait.Until(() => Volatile.Read(ref threadRuns) >= 2, "thread run 2");
            for (int i = 0; i < 2; i++)
            {
                runtime.OnCpu(0, static () => { });
                runtime.OnCpu(1, static () => { });
            }
            irqs.SynchronizeIrq(irq);

            // The line stayed masked from primary 1 until run 2 (which deasserted the device) returned.
            Assert.Equal(2, Volatile.Read(ref primaries));
            Assert.Equal(2, Volatile.Read(ref threadRuns));
        }
        finally
        {
            releaseFirstRun.Set();
            releaseGate.Set();
            gateHolder?.Join();
        }
    }

    // BUG D (IrqController.Request): the thread_mask bit is chosen from desc.UsedThreadMask() outside the
    // descriptor lock, and the action is published later by TryAdd (after starting its thread), so two
    // concurrent requests on a shared line get the same bit (__setup_irq allocates it under desc->lock
    // and request_mutex). Then a WakeThread from one primary wakes both threads (WakeThreads and
    // AccountWakeLocked select by mask), and on a OneShot line the first thread to finish clears the
    // shared threads_oneshot bit and unmasks while the other still runs. Made deterministic by holding
    // the descriptor lock (reflection) until both requesters have started their irq threads.
    [Fact]
    public void Concurrent_threaded_requests_on_a_shared_line_get_distinct_thread_mask_bits()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        var descLock = (Lock)typeof(IrqDesc).GetField("_lock", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(DescOf(irqs, irq))!;

        int aThread = 0, bThread = 0;
        IrqAction? a = null, b = null;
        Guarded[] requesters;
        descLock.Enter();
        try
        {
            requesters =
            [
                Guarded.Start(() => a = irqs.RequestThreadedIrq(irq, (_, _) => IrqReturn.WakeThread, (_, _) => { Interlocked.Increment(ref aThread); return IrqReturn.Handled; }, IrqFlags.Shared, "a", new object()), "request-a"),
                Guarded.Start(() => b = irqs.RequestThreadedIrq(irq, (_, _) => IrqReturn.Handled, (_, _) => { Interlocked.Increment(ref bThread); return IrqReturn.Handled; }, IrqFlags.Shared, "b", new object()), "request-b"),
            ];
            // Both requesters chose their bit before starting their thread; the thread records its placement.
            Wait.Until(() => runtime.Placements.Count(p => p.Thread == $"irq/{irq}-a" || p.Thread == $"irq/{irq}-b") == 2, "both irq threads started");
        }
        finally
        {
            descLock.Exit();
        }
        foreach (var r in requesters)
        {
            r.Join();
        }
        using var actionA = a!;
        using var actionB = b!;

        irqs.AssertEdge(irq);
        Wait.Until(() => Volatile.Read(ref aThread) == 1, "a's thread");
        irqs.SynchronizeIrq(irq);

        Assert.NotEqual(actionA.ThreadMask, actionB.ThreadMask);
        Assert.Equal(0, Volatile.Read(ref bThread)); // b's primary did not ask for its thread
    }

    // BUG E (IrqDesc.HandleLevel / Unmask / SetTrigger): the edge latch (HwLatched) is only ever cleared
    // by handle_edge_irq. A line that latched an edge while it had no driver (the documented "latched,
    // not lost" behaviour) and is then requested as level keeps HwLatched forever: handle_level_irq never
    // acks it, and Unmask delivers whenever HwLatched|HwLevel is set, so every chain run's unmask
    // re-delivers the line - an endless interrupt storm on a level line whose device is quiet (a handler
    // that returns IRQ_NONE then gets the line disabled as spurious after 100,000 runs). The same happens
    // to any AssertEdge on a level line.
    [Fact]
    public void An_edge_latched_before_a_level_driver_loads_does_not_storm_the_line()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        irqs.IrqSetAffinity(irq, 0);
        Assert.Equal(IrqAssertResult.Latched, irqs.AssertEdge(irq)); // a glitch before any driver: latched

        long runs = 0;
        using var action = irqs.RequestIrq(irq, (n, _) =>
        {
            Interlocked.Increment(ref runs);
            irqs.DeassertLevel(n); // serviced: the device lets go of the line
            return IrqReturn.Handled;
        }, IrqFlags.TriggerHigh, "level-driver");
        irqs.AssertLevel(irq);
        Wait.Until(() => Volatile.Read(ref runs) >= 1, "the level interrupt");

        // Each IPI to CPU 0 is taken in a hard-IRQ entry that also services a pending line vector, so
        // three of them flush every delivery the test made; three more see any storm go on.
        for (int i = 0; i < 3; i++)
        {
            runtime.OnCpu(0, static () => { });
        }
        long settled = Volatile.Read(ref runs);
        for (int i = 0; i < 3; i++)
        {
            runtime.OnCpu(0, static () => { });
        }
        Assert.Equal(settled, Volatile.Read(ref runs)); // the device is quiet: the line must be too
    }

    private static IrqDesc DescOf(IrqController irqs, int irq) =>
        ((IrqDesc[])typeof(IrqController).GetField("_descs", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(irqs)!)[irq];

    /// <summary>After a failure that wedged a thread in a wait, panic so that Dispose can return.</summary>
    private static void Cleanup(Runtime runtime, bool ok)
    {
        if (!ok && runtime.Panic is null)
        {
            var irqs = runtime.Irqs;
            int spare = irqs.AllocateIrq();
            irqs.RequestIrq(spare, (_, _) => throw new InvalidOperationException("review test: panic to release a wedged wait"), IrqFlags.None, "panic");
            irqs.AssertEdge(spare);
            Wait.Until(() => runtime.Panic is not null, "the panic");
        }
        runtime.Dispose();
    }
}
