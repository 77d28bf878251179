using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>delayed_work on the timer wheel: queue, mod, cancel, flush, and shutdown.</summary>
public class DelayedWorkTests
{
    [Fact]
    public void Fires_once_after_at_least_its_delay()
    {
        using var rt = TestRuntime.Boot(2);
        foreach (var wq in new[] { rt.SystemWq, rt.SystemUnboundWq, rt.SystemBhWq })
        {
            long ranAt = -1;
            int runs = 0;
            var dw = new DelayedWork(_ =>
            {
                ranAt = rt.Jiffies;
                Interlocked.Increment(ref runs);
            }, "delayed");
            // Far out first, so the pending checks cannot race with the timer however slow this thread is.
            Assert.True(wq.QueueDelayed(dw, 10_000_000));
            Assert.True(dw.IsPending);
            Assert.True(dw.IsTimerPending);
            Assert.False(wq.QueueDelayed(dw, 1)); // pending (armed): no-op
            Assert.False(wq.Queue(dw));
            long before = rt.Jiffies;
            Assert.True(wq.ModDelayed(dw, 20));
            long expires = dw.TimerExpires;
            Assert.True(expires >= before + 20);
            // flush_work() of an armed item: nothing queued or running to wait for, so it returns at once
            // (false) and leaves the timer armed.
            Assert.False(dw.FlushWork());
            Assert.True(dw.IsPending);
            Wait.Until(() => Volatile.Read(ref runs) == 1 && !dw.IsPending && dw.Busy == WorkBusy.None, "the timer to fire and the item to run");
            Assert.Equal(1, Volatile.Read(ref runs));
            Assert.True(ranAt >= expires, $"ran at jiffy {ranAt}, before its expiry {expires}");
            Assert.False(dw.IsPending);
            Assert.False(dw.IsTimerPending);
        }
    }

    [Fact]
    public void Zero_delay_queues_at_once_and_queue_delayed_on_uses_that_cpu()
    {
        using var rt = TestRuntime.Boot(2);
        int cpuSeen = -1;
        var dw = new DelayedWork(_ => cpuSeen = CpuContext.CurrentCpuId, "on-cpu");
        Assert.True(rt.SystemWq.QueueDelayed(dw, 0));
        Assert.False(dw.IsTimerPending);
        dw.FlushWork();
        Assert.InRange(cpuSeen, 0, 1);
        for (int cpu = 0; cpu < 2; cpu++)
        {
            Assert.True(rt.SystemWq.QueueDelayedOn(cpu, dw, 3));
            WqTest.FlushAfterTimer(dw);
            Assert.Equal(cpu, cpuSeen);
        }
        Assert.True(rt.SystemWq.QueueDelayed(dw, TimeSpan.FromMilliseconds(2)));
        WqTest.FlushAfterTimer(dw);
    }

    [Fact]
    public void Cancel_before_expiry_prevents_it()
    {
        using var rt = TestRuntime.Boot(1);
        int runs = 0, sentinelRuns = 0;
        var dw = new DelayedWork(_ => Interlocked.Increment(ref runs), "cancelled");
        var sentinel = new DelayedWork(_ => Interlocked.Increment(ref sentinelRuns), "sentinel");
        // CPU 0's bh gate held: its TIMER_SOFTIRQ cannot run, so the cancels below are before expiry
        // however slow this thread is.
        var bhHeld = BhGateHolder.Hold(rt, 0);
        Assert.True(rt.SystemWq.QueueDelayedOn(0, dw, 5));
        Assert.True(dw.CancelDelayedWork());
        Assert.False(dw.IsPending);
        Assert.False(dw.IsTimerPending);
        Assert.False(dw.CancelDelayedWork());
        Assert.False(dw.FlushWork());
        Assert.True(rt.SystemWq.QueueDelayedOn(0, dw, 5));
        Assert.True(dw.CancelDelayedWorkSync());
        Assert.False(dw.CancelDelayedWorkSync());
        // A later timer on the same CPU: timers within 63 jiffies expire in order, so once it has run,
        // the cancelled one would have run before it.
        Assert.True(rt.SystemWq.QueueDelayedOn(0, sentinel, 6));
        bhHeld.Dispose();
        WqTest.FlushAfterTimer(sentinel);
        Assert.Equal(1, Volatile.Read(ref sentinelRuns));
        Assert.Equal(0, Volatile.Read(ref runs));
    }

    [Fact]
    public void Mod_delayed_work_rearms_a_pending_item_and_arms_an_idle_one()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0;
        long ranAt = -1;
        var dw = new DelayedWork(_ =>
        {
            ranAt = rt.Jiffies;
            Interlocked.Increment(ref runs);
        }, "modded");
        Assert.False(rt.SystemWq.ModDelayed(dw, 1_000_000)); // idle: arms it
        Assert.True(dw.IsTimerPending);
        Assert.True(rt.SystemWq.ModDelayed(dw, 15)); // pending: re-armed sooner
        long expires = dw.TimerExpires;
        WqTest.FlushAfterTimer(dw);
        Assert.Equal(1, Volatile.Read(ref runs));
        Assert.True(ranAt >= expires);
        // And a queued (not armed) instance is taken back and re-armed.
        var gate = new DeferRuntime.Locking.Completion();
        var started = new StrongBox<int>();
        using var wq = rt.AllocWorkqueue("mod", WorkqueueFlags.None, maxActive: 1);
        wq.QueueOn(0, WqTest.Blocker(gate, started, "blocker"));
        Wait.Until(() => started.Value == 1, "the blocker to start");
        Assert.True(wq.QueueOn(0, dw)); // waits behind the blocker
        Assert.True(wq.ModDelayedOn(0, dw, 10_000_000)); // taken off the queue, armed far out
        Assert.True(dw.IsTimerPending);
        gate.Complete();
        Assert.True(dw.FlushDelayedWork()); // cut the delay short
        Assert.Equal(2, Volatile.Read(ref runs));
    }

    [Fact]
    public void Flush_delayed_work_runs_an_armed_item_now()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0;
        var dw = new DelayedWork(_ => Interlocked.Increment(ref runs), "flushed-now");
        Assert.True(rt.SystemWq.QueueDelayed(dw, 10_000_000)); // hours away
        Assert.True(dw.FlushDelayedWork());
        Assert.Equal(1, Volatile.Read(ref runs));
        Assert.False(dw.IsTimerPending);
        Assert.False(dw.FlushDelayedWork());
        Exception? caught = null;
        var self = new DelayedWork(w =>
        {
            caught = Record.Exception(() => ((DelayedWork)w).FlushDelayedWork());
        }, "self-flusher");
        rt.SystemWq.QueueDelayed(self, 0);
        self.FlushWork();
        Assert.Contains("wait for itself", caught?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cancel_sync_waits_for_the_running_instance_of_a_delayed_item()
    {
        using var rt = TestRuntime.Boot(2);
        var gate = new DeferRuntime.Locking.Completion();
        int runs = 0;
        var dw = new DelayedWork(_ =>
        {
            Interlocked.Increment(ref runs);
            gate.WaitForCompletion();
        }, "slow");
        rt.SystemWq.QueueDelayed(dw, 2);
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the item to start");
        int waiters = rt.Wq.WaiterCount;
        var canceler = Guarded.Start(() => Assert.False(dw.CancelDelayedWorkSync()), "canceler");
        WqTest.UntilWaiters(rt, waiters + 1, "the canceler to wait");
        gate.Complete();
        canceler.Join();
        Assert.Equal(WorkBusy.None, dw.Busy);
    }

    /// <summary>
    /// mod_delayed_work() while cancel_delayed_work_sync() owns the item (here: waits for its running
    /// instance) does nothing and returns false, as mod_delayed_work_on() has since Linux 6.10: the cancel
    /// has disabled the item, work_grab_pending() finds it idle (0) and clear_pending_if_disabled() drops
    /// the request. Once the cancel returns, the item can be armed again.
    /// </summary>
    [Fact]
    public void Mod_delayed_work_during_a_cancel_sync_does_nothing_and_returns_false()
    {
        using var rt = TestRuntime.Boot(2);
        var gate = new DeferRuntime.Locking.Completion();
        int started = 0;
        var dw = new DelayedWork(_ =>
        {
            Interlocked.Increment(ref started);
            gate.WaitForCompletion();
        }, "modded-while-cancelled");
        Assert.True(rt.SystemWq.QueueDelayed(dw, 0));
        Wait.Until(() => Volatile.Read(ref started) == 1, "the instance to start");
        bool cancelled = true;
        var canceler = Guarded.Start(() => cancelled = dw.CancelDelayedWorkSync(), "canceler");
        try
        {
            Wait.Until(() => Volatile.Read(ref dw.SyncCancelers) != 0, "cancel_delayed_work_sync() to own the item and wait for its run");
            Assert.False(rt.SystemWq.ModDelayed(dw, 0)); // would queue at once on an idle item
            Assert.False(rt.SystemWq.ModDelayedOn(1, dw, 1_000_000));
            Assert.False(dw.IsTimerPending);
            Assert.False(rt.SystemWq.QueueDelayed(dw, 0)); // and queueing is refused as ever
        }
        finally
        {
            gate.CompleteAll();
            canceler.Join();
        }
        Assert.False(cancelled); // it was running, not pending
        rt.SystemWq.Flush(); // had a mod queued it, it would have run by now
        Assert.Equal(1, Volatile.Read(ref started));
        Assert.Equal(WorkBusy.None, dw.Busy);
        Assert.False(rt.SystemWq.ModDelayed(dw, 0)); // enabled again: idle, so queued, false
        dw.FlushWork();
        Assert.Equal(2, Volatile.Read(ref started));
    }

    [Fact]
    public void Shutdown_does_not_run_far_delayed_work_early_and_reports_it_abandoned()
    {
        int runs = 0;
        var rt = TestRuntime.Boot(2);
        var far = new DelayedWork(_ => Interlocked.Increment(ref runs), "far");
        var near = new DelayedWork(_ => Interlocked.Increment(ref runs), "near");
        Assert.Equal(-1, rt.AbandonedDelayedWorkCount);
        rt.SystemWq.QueueDelayed(far, 3_600_000); // an hour
        rt.SystemWq.QueueDelayed(near, 1);
        WqTest.FlushAfterTimer(near);
        rt.Dispose();
        Assert.Equal(1, Volatile.Read(ref runs));
        Assert.Equal(1, rt.AbandonedDelayedWorkCount);
        Assert.True(rt.AbandonedTimerCount >= 1);
    }

    [Fact]
    public void A_timer_firing_into_a_destroyed_workqueue_is_reported_and_dropped()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("gone");
        int runs = 0;
        var dw = new DelayedWork(_ => Interlocked.Increment(ref runs), "orphan");
        // Hold CPU 0's bh gate so its TIMER_SOFTIRQ cannot run: the timer stays due, unfired, until the
        // workqueue is destroyed, however slow this thread is.
        var bhHeld = BhGateHolder.Hold(rt, 0);
        Assert.True(wq.QueueDelayedOn(0, dw, 2));
        Wait.Until(() => rt.Jiffies > dw.TimerExpires, "the timer to be due");
        wq.Destroy(); // flush and drain do not wait for armed timers, as in the kernel
        Assert.True(dw.IsPending);
        bhHeld.Dispose();
        Wait.Until(() => !dw.IsPending, "the timer to fire and the item to be dropped");
        var fault = Assert.Single(rt.Faults.Recent, f => f.Source == "workqueue 'gone'");
        Assert.Contains("destroy_workqueue()", fault.Exception.Message, StringComparison.Ordinal);
        Assert.Contains("'orphan'", fault.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(0, Volatile.Read(ref runs));
        Assert.False(dw.FlushWork());
    }

    [Fact]
    public void Every_delayed_queue_runs_once_or_is_reported_cancelled_under_a_random_workload()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        var wq = rt.AllocWorkqueue("delayed-mix");
        const int itemCount = 16;
        long queued = 0, cancelled = 0;
        var runs = new long[itemCount];
        var items = Enumerable.Range(0, itemCount).Select(i => new DelayedWork(_ => Interlocked.Increment(ref runs[i]), $"dm{i}")).ToArray();
        int ops = Stress.Scale(5_000, 100_000);
        var threads = Enumerable.Range(0, 3).Select(t => Guarded.Start(() =>
        {
            var rng = new Random(77 + t);
            for (int n = 0; n < ops; n++)
            {
                var item = items[rng.Next(itemCount)];
                switch (rng.Next(8))
                {
                    case 0:
                    case 1:
                        if (wq.QueueDelayed(item, rng.Next(3)))
                        {
                            Interlocked.Increment(ref queued);
                        }
                        break;
                    case 2:
                        if (wq.QueueDelayedOn(rng.Next(2), item, rng.Next(3)))
                        {
                            Interlocked.Increment(ref queued);
                        }
                        break;
                    case 3:
                        // Always queues a new instance; true if it took a pending one back (cancelled it).
                        if (wq.ModDelayed(item, rng.Next(3)))
                        {
                            Interlocked.Increment(ref cancelled);
                        }
                        Interlocked.Increment(ref queued);
                        break;
                    case 4:
                    case 5:
                        if (item.CancelDelayedWork())
                        {
                            Interlocked.Increment(ref cancelled);
                        }
                        break;
                    case 6:
                        item.FlushDelayedWork();
                        break;
                    default:
                        if (wq.Queue(item))
                        {
                            Interlocked.Increment(ref queued);
                        }
                        break;
                }
            }
        }, $"delayed-mixer/{t}")).ToList();
        threads.ForEach(t => t.Join());
        foreach (var item in items)
        {
            item.FlushDelayedWork();
        }
        wq.Drain();
        Assert.All(items, i => Assert.Equal(WorkBusy.None, i.Busy));
        Assert.Equal(Interlocked.Read(ref queued), runs.Sum() + Interlocked.Read(ref cancelled));
        wq.Destroy();
    }
}
