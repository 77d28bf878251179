using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>
/// Regressions from the independent review of the workqueue subsystem: each test failed on the code
/// before its fix. (The lock-free queuer taking back another queuer's instance during a drain, and the
/// completed SEQ going backwards, were shown with hooks in a scratch copy; the hammering test below
/// covers the second without one.)
/// </summary>
public class WorkqueueRegressionTests
{
    /// <summary>
    /// The kernel creates a pool's first worker with the pool, so a MemReclaim workqueue's rescuer always
    /// has something to rescue from. Here the first worker comes from the ticker: if it cannot be
    /// created, the mayday clock must run from the creation request, not only while a manager exists.
    /// </summary>
    [Fact]
    public void The_rescuer_runs_work_on_a_pool_whose_first_worker_cannot_be_created()
    {
        using var rt = TestRuntime.Boot(1);
        rt.Wq.HoldWorkerCreation = true;
        try
        {
            var reclaim = rt.AllocWorkqueue("reclaim", WorkqueueFlags.MemReclaim | WorkqueueFlags.Unbound, attrs: new WorkqueueAttrs(nice: 5));
            using var ran = new ManualResetEventSlim();
            Assert.True(reclaim.Queue(new WorkStruct(_ => ran.Set(), "rescued")));
            Wait.For(ran, "the rescuer to run the item (mayday after 10 ms)");
        }
        finally
        {
            rt.Wq.HoldWorkerCreation = false;
        }
    }

    /// <summary>
    /// Non-reentrancy is per workqueue, and every start counts (the kernel's busy_hash and the pool in
    /// work->data): an item running for workqueue b on CPU 1 that is queued on b again from CPU 0 must
    /// wait behind that run, even when the item also ran for workqueue a meanwhile.
    /// </summary>
    [Fact]
    public void An_item_used_on_two_workqueues_never_runs_concurrently_with_itself_on_either()
    {
        using var rt = TestRuntime.Boot(2);
        var a = rt.AllocWorkqueue("a");
        var b = rt.AllocWorkqueue("b");
        var meterB = new OverlapMeter();
        var gateA = new Completion();
        var gateB = new Completion();
        int startedA = 0, startedB = 0;
        var x = new WorkStruct(_ =>
        {
            if (ReferenceEquals(Worker.Current!.CurrentPwq!.Wq, a))
            {
                Interlocked.Increment(ref startedA);
                gateA.WaitForCompletion();
            }
            else
            {
                meterB.Enter();
                Interlocked.Increment(ref startedB);
                gateB.WaitForCompletion();
                meterB.Exit();
            }
        }, "x");

        Assert.True(a.QueueOn(0, x));
        Wait.Until(() => Volatile.Read(ref startedA) == 1, "x to start for a");
        Assert.True(b.QueueOn(1, x)); // another workqueue: allowed to run alongside
        Wait.Until(() => Volatile.Read(ref startedB) == 1, "x to start for b");
        gateA.Complete();
        a.Flush();

        Assert.True(b.QueueOn(0, x)); // still running for b on CPU 1: goes behind that run
        // Sent to the worker running it (find_worker_executing_work), on its scheduled list: proof that
        // it waits behind that run, with no time window to hope a wrong start would fall in.
        Wait.Until(() => Volatile.Read(ref x.ScheduledOn) is { } worker && ReferenceEquals(worker.CurrentWork, x), "x to wait on the scheduled list of the worker running it for b");
        Assert.Equal(1, Volatile.Read(ref startedB));
        gateB.CompleteAll();
        b.Flush();
        Assert.Equal(2, Volatile.Read(ref startedB));
        Assert.Equal(1, meterB.Max);
        a.Destroy();
        b.Destroy();
    }

    /// <summary>
    /// Completed and running SEQ only go up, whichever pool finishes last: an item queued alternately on
    /// two CPUs (each queue may land on the other pool the moment the previous run ends) must always be
    /// idle for cancel_work_sync() and flushed for flush_work() once its runs are done.
    /// </summary>
    [Fact]
    public void Flush_and_cancel_sync_return_for_an_item_hammered_across_two_pools()
    {
        using var rt = TestRuntime.Boot(2);
        var wq = rt.AllocWorkqueue("seq");
        long runs = 0;
        var x = new WorkStruct(_ => Interlocked.Increment(ref runs), "x");
        int rounds = Stress.Scale(2_000, 40_000);
        long accepted = 0;
        var queuers = Enumerable.Range(0, 2).Select(cpu => Guarded.Start(() =>
        {
            for (int n = 0; n < rounds; n++)
            {
                if (wq.QueueOn(cpu, x))
                {
                    Interlocked.Increment(ref accepted);
                }
                if ((n & 63) == 0)
                {
                    x.FlushWork();
                }
            }
        }, $"queuer/{cpu}")).ToList();
        queuers.ForEach(q => q.Join());
        x.FlushWork();
        x.CancelWorkSync();
        Assert.False(x.IsPending);
        Assert.Equal(WorkBusy.None, x.Busy);
        Assert.Equal(Volatile.Read(ref accepted), Volatile.Read(ref runs)); // nothing was cancelled: every accepted queue ran
        Assert.Equal(x.Seq, Volatile.Read(ref x.CompletedSeq));
        wq.Destroy();
    }

    /// <summary>set_max_active() and freeze run under one lock (the kernel's wq->mutex): neither undoes the other.</summary>
    [Fact]
    public void Set_max_active_racing_freeze_leaves_every_pwq_frozen_with_the_last_limit()
    {
        using var rt = TestRuntime.Boot(2);
        var wq = rt.AllocWorkqueue("fz", WorkqueueFlags.Freezable);
        int iterations = Stress.Scale(100, 2_000);
        for (int i = 0; i < iterations; i++)
        {
            using var go = new Barrier(2);
            var setter = Guarded.Start(() =>
            {
                go.SignalAndWait(Wait.Ceiling);
                for (int k = 0; k < 200; k++)
                {
                    wq.SetMaxActive(1 + (k % 8));
                }
            }, "setter");
            go.SignalAndWait(Wait.Ceiling);
            rt.FreezeWorkqueues();
            setter.Join();
            Assert.True(wq.Pwqs.All(p => p.Frozen), $"iteration {i}: freeze returned, yet a pwq of freezable '{wq.Name}' is not frozen");
            Assert.True(wq.Pwqs.All(p => p.MaxActive == wq.MaxActive), $"iteration {i}: max_active {wq.MaxActive}, pwqs {string.Join(",", wq.Pwqs.Select(p => p.MaxActive))}");
            rt.ThawWorkqueues();
            Assert.True(wq.Pwqs.All(p => !p.Frozen), $"iteration {i}: thawed, yet a pwq is frozen");
        }
    }

    /// <summary>
    /// Shutdown loses nothing accepted: a delayed item whose timer falls just after the drain either
    /// runs (it was linked before the workqueues stopped accepting) or is counted abandoned.
    /// </summary>
    [Fact]
    public void A_delayed_item_due_around_shutdown_either_runs_or_is_counted_abandoned()
    {
        int iterations = Stress.Scale(200, 2_000);
        for (int i = 0; i < iterations; i++)
        {
            var rt = TestRuntime.Boot(1);
            int ran = 0;
            var item = new DelayedWork(_ => Interlocked.Increment(ref ran), "late");
            rt.SystemWq.QueueDelayed(item, 1 + (i % 6)); // jiffies (1 ms): about when the drain ends
            rt.Dispose();
            long abandoned = rt.AbandonedDelayedWorkCount;
            Assert.True(Volatile.Read(ref ran) + abandoned == 1,
                $"iteration {i}: ran {ran}, abandoned {abandoned}; faults: {string.Join(" | ", rt.Faults.Recent.Select(f => f.Exception.Message))}");
        }
    }

    /// <summary>Two cancel_work_sync() calls racing on an item that was never queued: no runtime to sleep on, and nothing to wait for.</summary>
    [Fact]
    public void Concurrent_cancel_sync_of_a_never_queued_item_returns_false_on_both_sides()
    {
        using var rt = TestRuntime.Boot(1);
        int iterations = Stress.Scale(50, 1_000);
        for (int i = 0; i < iterations; i++)
        {
            var item = new WorkStruct(_ => { }, "never");
            using var go = new Barrier(2);
            int stolen = 0;
            void Body()
            {
                go.SignalAndWait(Wait.Ceiling);
                for (int k = 0; k < 500; k++)
                {
                    if (item.CancelWorkSync())
                    {
                        Interlocked.Increment(ref stolen);
                    }
                }
            }
            var other = Guarded.Start(Body, "canceler");
            Body();
            other.Join();
            Assert.Equal(0, stolen);
            Assert.False(item.IsPending);
        }
    }

    /// <summary>
    /// manage_workers() returns true only when it dropped the pool lock: a manager that finds nothing it
    /// may do (shutdown began while it cooled down after a failed creation) must not spin holding the lock.
    /// </summary>
    [Fact]
    public void A_manager_caught_by_shutdown_does_not_spin_holding_the_pool_lock()
    {
        var rt = TestRuntime.Boot(1, o => o.ShutdownTimeout = TimeSpan.FromMilliseconds(500));
        var gate = new Completion();
        var started = new StrongBox<int>();
        var pool = WqTest.StallCpu0Pool(rt, gate, started).Pool;
        Wait.Until(() => { pool.Lock(); bool managing = pool.ManagerActive; pool.Unlock(); return managing; }, "a worker to become the manager");
        Assert.Throws<TimeoutException>(rt.Dispose); // the drain times out: the blockers are stuck

        // The pool lock must be free now and then: take it (a spinning manager would hold it for ever).
        var taker = Guarded.Start(() =>
        {
            pool.Lock();
            pool.Unlock();
        }, "lock taker");
        taker.Join();
        gate.CompleteAll();
    }

    /// <summary>
    /// current_wq_worker() is null outside task context: a tasklet that local_bh_enable() runs inline on
    /// a worker's thread is not the work item that thread was running, so its queue during a drain of
    /// that item's workqueue is not chained work and is refused.
    /// </summary>
    [Fact]
    public void A_tasklet_run_inline_on_a_worker_is_not_chained_work_during_a_drain()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("drained");
        var x = new WorkStruct(_ => { }, "x");
        Exception? refused = null;
        bool accepted = false;
        var tasklet = rt.CreateTasklet(_ =>
        {
            try
            {
                accepted = wq.Queue(x);
            }
            catch (InvalidOperationException e)
            {
                refused = e;
            }
        }, "inline");
        bool chainedAccepted = false;
        var item = new WorkStruct(_ =>
        {
            Wait.Until(() => wq.IsDraining, "the drain to begin");
            chainedAccepted = wq.Queue(new WorkStruct(_ => { }, "chained")); // the item itself: chained, allowed
            using (CpuContext.LocalBhDisable())
            {
                tasklet.Schedule();
            }
            // local_bh_enable() ran the tasklet here, in softirq context on this worker's thread.
        }, "drained item");
        Assert.True(wq.Queue(item));
        wq.Drain();
        Assert.True(chainedAccepted);
        Assert.False(accepted);
        Assert.NotNull(refused);
        Assert.Contains("is being drained", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// queue_delayed_work() during a drain arms the timer as the kernel's __queue_delayed_work() does (it
    /// was refused here before); the item runs when it is queued after the drain has ended.
    /// </summary>
    [Fact]
    public void Delayed_work_may_be_armed_during_a_drain_and_runs_after_it()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("drained");
        var release = new Completion();
        int ran = 0;
        var delayed = new DelayedWork(_ => Interlocked.Increment(ref ran), "armed during the drain");
        var drain = WqTest.StartDrainHeldOpen(wq, release);
        Assert.True(wq.QueueDelayed(delayed, TimeSpan.FromHours(1))); // from a thread of no CPU: not chained, armed anyway
        Assert.True(delayed.IsTimerPending);
        release.Complete();
        Assert.True(drain.Join(TimeSpan.FromSeconds(60)), "the drain ends");
        delayed.FlushDelayedWork(); // queues it now, the drain being over, and waits (false if it already ran by the look)
        Assert.Equal(1, Volatile.Read(ref ran));
        Assert.Equal(0, rt.Faults.Count);
        wq.Destroy();
    }

    /// <summary>A delayed item whose timer fires while the drain still runs is refused then, reported, and not left pending.</summary>
    [Fact]
    public void Delayed_work_firing_during_a_drain_is_reported_and_dropped()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("drained");
        var release = new Completion();
        int ran = 0;
        var delayed = new DelayedWork(_ => Interlocked.Increment(ref ran), "fires during the drain");
        var drain = WqTest.StartDrainHeldOpen(wq, release);
        Assert.True(wq.QueueDelayed(delayed, 1));
        Wait.Until(() => rt.Faults.Recent.Any(f => f.Source == "workqueue 'drained'"), "the timer to fire into the drain");
        Assert.False(delayed.IsPending);
        Assert.False(delayed.FlushWork()); // nothing to wait for: the instance was refused
        release.Complete();
        Assert.True(drain.Join(TimeSpan.FromSeconds(60)), "the drain ends");
        var fault = rt.Faults.Recent.Single(f => f.Source == "workqueue 'drained'");
        Assert.Contains("is being drained", fault.Exception.Message, StringComparison.Ordinal);
        Assert.Contains("delayed_work_timer_fn()", fault.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(0, Volatile.Read(ref ran));
        Assert.True(wq.QueueDelayed(delayed, 0)); // usable again
        wq.Flush();
        Assert.Equal(1, Volatile.Read(ref ran));
        wq.Destroy();
    }

    /// <summary>
    /// queue_delayed_work() while destroy_workqueue() drains, even from the workqueue's own item (chained):
    /// its timer could only fire into the destroyed workqueue, so the call is refused where the caller sees it.
    /// </summary>
    [Fact]
    public void Delayed_work_armed_during_a_destroy_is_refused_at_the_call()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("destroyed");
        var release = new Completion();
        var delayed = new DelayedWork(_ => { }, "armed during the destroy");
        Exception? refused = null;
        var holder = new WorkStruct(_ =>
        {
            release.WaitForCompletion();
            try
            {
                wq.QueueDelayed(delayed, 10); // chained, yet doomed: refused
            }
            catch (ObjectDisposedException e)
            {
                refused = e;
            }
        }, "holds the destroy open");
        Assert.True(wq.Queue(holder));
        var destroy = new Thread(wq.Destroy) { IsBackground = true };
        destroy.Start();
        Wait.Until(() => wq.IsDraining, "the destroy's drain to begin");
        var foreign = Assert.Throws<ObjectDisposedException>(() => wq.QueueDelayed(delayed, TimeSpan.FromSeconds(1)));
        Assert.Contains("is being destroyed", foreign.Message, StringComparison.Ordinal);
        release.Complete();
        Assert.True(destroy.Join(TimeSpan.FromSeconds(60)), "the destroy ends");
        Assert.NotNull(refused);
        Assert.False(delayed.IsPending);
        Assert.Equal(0, rt.Faults.Count);
    }

    // From the third review (2026-12-04): an item used on two workqueues at once.

    /// <summary>
    /// flush_work() waits for the instance queued (or running) at the call. An item running for
    /// workqueue a, then queued and run to completion on workqueue b alongside (the kernel allows it),
    /// must not make a flush_work() of the instance for a return while that instance still runs: the
    /// kernel's start_flush_work() puts its barrier behind the worker running it.
    /// </summary>
    [Fact]
    public void Flush_work_of_an_instance_still_running_is_not_satisfied_by_a_later_instance_on_another_workqueue()
    {
        using var rt = TestRuntime.Boot(2);
        var a = rt.AllocWorkqueue("a");
        var b = rt.AllocWorkqueue("b");
        var gateA = new Completion();
        int startedA = 0, finishedA = 0, runsB = 0;
        var x = new WorkStruct(_ =>
        {
            if (ReferenceEquals(Worker.Current!.CurrentPwq!.Wq, a))
            {
                Interlocked.Increment(ref startedA);
                gateA.WaitForCompletion();
                Interlocked.Increment(ref finishedA);
            }
            else
            {
                Interlocked.Increment(ref runsB);
            }
        }, "x");

        Guarded? flusher = null;
        bool flushedWhileRunning = false;
        try
        {
            Assert.True(a.QueueOn(0, x));
            Wait.Until(() => Volatile.Read(ref startedA) == 1, "x to start for a");
            long target = x.Seq; // the instance flush_work() below is called for: running for a
            flusher = Guarded.Start(() =>
            {
                Assert.True(x.FlushWork());
                flushedWhileRunning = Volatile.Read(ref finishedA) == 0;
            }, "flusher");
            WqTest.UntilWaiters(rt, 1, "the flusher to wait for x's run on a");

            Assert.True(b.QueueOn(1, x)); // another workqueue: runs alongside, and finishes first
            b.Flush();
            Assert.Equal(1, Volatile.Read(ref runsB));
            Assert.Equal(0, Volatile.Read(ref finishedA)); // the instance for a still runs...
            Assert.False(x.IsFlushed(target)); // ...so the flusher's condition must not hold
        }
        finally
        {
            gateA.CompleteAll(); // let shutdown drain even when an assertion failed
        }
        flusher.Join();
        Assert.False(flushedWhileRunning);
        a.Destroy();
        b.Destroy();
    }

    /// <summary>
    /// Non-reentrancy on one workqueue survives a run for another workqueue in between: x runs for a on
    /// CPU 0, then also starts for b on CPU 1 (the pool it last started on is now CPU 1's), then is queued on a from
    /// CPU 1. That queue must go behind x's run for a on CPU 0, not to CPU 1's pool, where it would start
    /// as soon as the run for b ends, alongside the run for a.
    /// </summary>
    [Fact]
    public void A_requeue_on_a_after_a_run_for_b_started_elsewhere_still_waits_behind_the_run_for_a()
    {
        using var rt = TestRuntime.Boot(2);
        var a = rt.AllocWorkqueue("a");
        var b = rt.AllocWorkqueue("b");
        var meterA = new OverlapMeter();
        var gateA = new Completion();
        var gateB = new Completion();
        int startedA = 0, startedB = 0;
        var x = new WorkStruct(_ =>
        {
            if (ReferenceEquals(Worker.Current!.CurrentPwq!.Wq, a))
            {
                meterA.Enter();
                Interlocked.Increment(ref startedA);
                gateA.WaitForCompletion();
                meterA.Exit();
            }
            else
            {
                Interlocked.Increment(ref startedB);
                gateB.WaitForCompletion();
            }
        }, "x");
        try
        {
            Assert.True(a.QueueOn(0, x));
            Wait.Until(() => Volatile.Read(ref startedA) == 1, "x to start for a on CPU 0");
            Assert.True(b.QueueOn(1, x)); // another workqueue: allowed alongside
            Wait.Until(() => Volatile.Read(ref startedB) == 1, "x to start for b on CPU 1");

            Assert.True(a.QueueOn(1, x)); // x still runs for a on CPU 0
            Wait.Until(() => Volatile.Read(ref x.ScheduledOn) is not null, "x to be handed to a worker running it");
            var holder = Volatile.Read(ref x.ScheduledOn)!;
            // It must wait behind the run for a (on CPU 0's pool), not behind the run for b.
            Assert.Same(a, holder.CurrentPwq?.Wq);
        }
        finally
        {
            gateB.CompleteAll();
            gateA.CompleteAll();
        }
        a.Flush();
        b.Flush();
        Assert.Equal(1, meterA.Max);
        a.Destroy();
        b.Destroy();
    }

    /// <summary>
    /// flush_work() that lands between the CAS with which queue_delayed_work() takes PENDING and the
    /// arming of the timer: the kernel's start_flush_work() finds that instance on no pwq and not running,
    /// exactly as once the timer is armed, so it returns false at once. It used to wait for the instance,
    /// i.e. for the whole delay.
    /// </summary>
    [Fact]
    public void Flush_work_between_the_pending_cas_and_the_timer_arming_returns_at_once()
    {
        using var rt = TestRuntime.Boot(2);
        var dw = new DelayedWork(_ => { }, "arming");
        Assert.True(rt.SystemWq.QueueDelayed(dw, 0)); // one run: the item now has a runtime to flush on
        dw.FlushWork();
        using var inWindow = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        rt.Wq.ArmingWindowHook = _ =>
        {
            inWindow.Set();
            Wait.For(release, "the test to let the timer be armed");
        };
        var queuer = Guarded.Start(() => Assert.True(rt.SystemWq.QueueDelayed(dw, 10_000_000)), "queuer");
        int flushed = -1;
        Guarded? flusher = null;
        try
        {
            Wait.For(inWindow, "queue_delayed_work() to hold PENDING with its timer not armed yet");
            Assert.True(dw.IsPending);
            Assert.False(dw.IsTimerPending);
            // Nobody may steal or claim it meanwhile either: the queuer owns it until the timer holds it
            // (try_to_grab_pending()'s -EAGAIN, on which cancel spins).
            Assert.Equal(-1, dw.TryGrabPending());
            flusher = Guarded.Start(() => Volatile.Write(ref flushed, dw.FlushWork() ? 1 : 0), "flusher");
            // The flush either returns or goes to sleep waiting for the instance: no time window decides.
            Wait.Until(() => Volatile.Read(ref flushed) >= 0 || rt.Wq.WaiterCount > 0, "flush_work() to return or to sleep");
            Assert.Equal(0, Volatile.Read(ref flushed));
        }
        finally
        {
            rt.Wq.ArmingWindowHook = null;
            release.Set();
            queuer.Join();
            // The armed instance is cancelled (a flush still sleeping on it, before the fix, wakes up).
            Assert.True(dw.CancelDelayedWorkSync());
            flusher?.Join();
        }
        Assert.False(dw.IsPending);
        Assert.False(dw.IsTimerPending);
    }

    /// <summary>
    /// The other side of the arming window: once the timer has fired and queued the item, it is on a
    /// worklist, and flush_work() must wait for it (here it waits behind a blocker on a max_active 1
    /// workqueue, so "waited" is shown by the flusher sleeping, not by timing).
    /// </summary>
    [Fact]
    public void Flush_work_waits_for_a_delayed_item_its_timer_has_queued()
    {
        using var rt = TestRuntime.Boot(1);
        using var wq = rt.AllocWorkqueue("behind", WorkqueueFlags.None, maxActive: 1);
        var gate = new Completion();
        var started = new StrongBox<int>();
        wq.QueueOn(0, WqTest.Blocker(gate, started, "blocker"));
        Wait.Until(() => started.Value == 1, "the blocker to start");
        int runs = 0;
        var dw = new DelayedWork(_ => Interlocked.Increment(ref runs), "fired");
        Assert.True(wq.QueueDelayedOn(0, dw, 1));
        Wait.Until(() => Volatile.Read(ref dw.QueuedPool) is not null, "the timer to fire and queue the item behind the blocker");
        Assert.False(dw.IsTimerPending);
        bool waited = false;
        var flusher = Guarded.Start(() => waited = dw.FlushWork(), "flusher");
        WqTest.UntilWaiters(rt, 1, "flush_work() to sleep on the queued instance");
        Assert.Equal(0, Volatile.Read(ref runs));
        gate.Complete();
        flusher.Join();
        Assert.True(waited);
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    // ---- from the review of the TIMER bit and the atomic cancel of bh items ----

    /// <summary>
    /// queue_delayed_work() from a thread of no CPU is inside the target CPU's rundown protection from
    /// before its CAS; shutdown begins while it is in the arming window. Arming the timer enters the
    /// rundown protection a second time (add_timer_on() from a thread of no CPU), which shutdown now
    /// refuses. The call may fail (the runtime is shutting down), but it must not leave the item holding
    /// PENDING and TIMER with no timer armed: every later queue would return false, flush_work() would
    /// take it for an armed one, and cancel_delayed_work_sync() would spin forever waiting for a queuer
    /// that already gave up.
    /// </summary>
    [Fact]
    public void An_arming_refused_by_the_start_of_shutdown_leaves_the_item_idle()
    {
        var rt = TestRuntime.Boot(2);
        var dw = new DelayedWork(_ => { }, "armed at shutdown");
        using var inWindow = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        rt.Wq.ArmingWindowHook = _ =>
        {
            inWindow.Set();
            Wait.For(release, "the test to let the timer be armed");
        };
        Exception? thrown = null;
        bool queued = false;
        var queuer = Guarded.Start(() =>
        {
            try
            {
                queued = rt.SystemWq.QueueDelayed(dw, 10_000_000);
            }
            catch (ObjectDisposedException e)
            {
                thrown = e;
            }
        }, "queuer");
        Guarded? shutdown = null;
        try
        {
            Wait.For(inWindow, "queue_delayed_work() to hold PENDING with its timer not armed yet");
            // Shutdown waits for the queuer's rundown protection; it has begun once the state says so.
            shutdown = Guarded.Start(rt.Dispose, "shutdown");
            Wait.Until(() => rt.IsShutDown, "shutdown to begin");
        }
        finally
        {
            rt.Wq.ArmingWindowHook = null;
            release.Set();
            queuer.Join();
            shutdown?.Join();
        }
        if (thrown is not null)
        {
            // Refused: nothing may be left behind.
            Assert.False(queued);
            Assert.False(dw.IsPending, "a refused arming left PENDING set with no timer armed");
            Assert.False(dw.IsTimerHeld, "a refused arming left TIMER set");
            Assert.Equal(0, rt.AbandonedDelayedWorkCount);
        }
        else
        {
            // Accepted: the timer is armed (and abandoned by the shutdown, as a timer not due).
            Assert.True(queued);
            Assert.True(dw.IsTimerPending);
            Assert.Equal(1, rt.AbandonedDelayedWorkCount);
        }
        // Either way the item can be cancelled after shutdown without hanging.
        bool cancelled = false;
        Guarded.Run(() => cancelled = dw.CancelDelayedWorkSync(), "canceler");
        Assert.Equal(thrown is null, cancelled);
        Assert.False(dw.IsPending);
    }

    /// <summary>
    /// An item armed on a bh workqueue while it still runs, sleeping, for a normal workqueue (an item may
    /// be on two workqueues at once). cancel_delayed_work_sync() from atomic context (a spinlock held)
    /// stops the timer and then has a sleeping run to wait for. The kernel decides after the grab, from
    /// the work data, which names the pool the item last ran on (the normal one: arming leaves the data
    /// alone), so __cancel_work_sync() calls might_sleep() and reports the call. The decision here was
    /// made at the call from the workqueue the timer was armed for (bh), so the canceler busy-waited, in
    /// atomic context, for as long as the other run slept (forever, had that run needed the canceler's
    /// lock), and nothing was reported.
    /// </summary>
    [Fact]
    public void Atomic_cancel_sync_of_a_bh_armed_item_running_on_a_normal_workqueue_reports_might_sleep_instead_of_spinning()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0, release = 0;
        var dw = new DelayedWork(_ =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                Wait.Until(() => Volatile.Read(ref release) != 0, "the test to release the run on the normal workqueue");
            }
        }, "two-workqueues");
        Guarded? canceler = null;
        Exception? failure = null;
        bool? result = null;
        try
        {
            Assert.True(rt.SystemWq.Queue(dw));
            Wait.Until(() => Volatile.Read(ref runs) == 1, "the item to run (and sleep) on system_wq");
            Assert.True(rt.SystemBhWq.QueueDelayed(dw, 10_000_000));
            Assert.True(dw.IsTimerPending);
            var spinlock = new KernelSpinlock("cancel-under-lock");
            canceler = Guarded.Start(() => rt.Bound(0, () =>
            {
                using (spinlock.Enter())
                {
                    try
                    {
                        result = dw.CancelDelayedWorkSync();
                    }
                    catch (InvalidOperationException e)
                    {
                        Volatile.Write(ref failure, e);
                    }
                }
            }), "canceler");
            // The canceler is refused, or owns the item and waits for the sleeping run: no timing decides.
            Wait.Until(() => Volatile.Read(ref failure) is not null || Volatile.Read(ref dw.SyncCancelers) != 0, "the canceler to be refused or to wait");
            Assert.Equal(0, Volatile.Read(ref dw.SyncCancelers));
        }
        finally
        {
            Volatile.Write(ref release, 1);
            canceler?.Join();
        }
        Assert.Null(result);
        Assert.NotNull(failure);
        Assert.Contains("sleeping function called from invalid context", failure!.Message, StringComparison.Ordinal);
        // As in the kernel, whose __cancel_work() ran before the warning: the armed instance is cancelled.
        Assert.False(dw.IsPending);
        Assert.False(dw.IsTimerPending);
        Wait.Until(() => dw.Busy == WorkBusy.None, "the run on system_wq to end");
        Assert.Equal(1, Volatile.Read(ref runs));
    }
}
