using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>disable_work()/enable_work() (Linux 6.10+): a disable count that refuses queues, nests, and cancels.</summary>
public class DisableWorkTests
{
    [Fact]
    public void A_disabled_item_is_not_queued_until_enabled()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0;
        var x = new WorkStruct(_ => Interlocked.Increment(ref runs), "x");
        Assert.False(x.DisableWork()); // idle: nothing to cancel
        Assert.True(x.IsDisabled);
        Assert.False(rt.SystemWq.Queue(x));
        Assert.False(rt.SystemWq.QueueOn(1, x));
        Assert.False(rt.ScheduleWork(x));
        rt.Bound(0, () => Assert.False(rt.SystemBhWq.Queue(x)));
        Assert.False(x.IsPending);
        Assert.False(x.FlushWork()); // the refused queues left no instance to wait for
        rt.SystemWq.Flush();
        Assert.Equal(0, Volatile.Read(ref runs));

        Assert.True(x.EnableWork());
        Assert.False(x.IsDisabled);
        Assert.True(rt.SystemWq.Queue(x));
        x.FlushWork();
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    [Fact]
    public void Disable_takes_back_a_pending_instance_and_calls_nest()
    {
        using var rt = TestRuntime.Boot(2);
        using var wq = rt.AllocOrderedWorkqueue("disable-ordered");
        var gate = new Completion();
        int runs = 0;
        var blocker = new WorkStruct(_ => gate.WaitForCompletion(), "blocker");
        var x = new WorkStruct(_ => Interlocked.Increment(ref runs), "x");
        Assert.True(wq.Queue(blocker));
        Assert.True(wq.Queue(x)); // waits behind the blocker: pending, not running
        Assert.True(x.DisableWork());
        Assert.False(x.IsPending);
        Assert.False(x.DisableWork()); // nested
        gate.Complete();
        wq.Flush();
        Assert.Equal(0, Volatile.Read(ref runs));

        Assert.False(x.EnableWork()); // one disable left
        Assert.False(wq.Queue(x));
        Assert.True(x.EnableWork());
        Assert.True(wq.Queue(x));
        wq.Flush();
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    /// <summary>A disable whose cancel fails after the count went up leaves no disable behind (the failure is injected through the hook).</summary>
    [Fact]
    public void A_failed_disable_leaves_the_item_enabled()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0;
        var x = new WorkStruct(_ => Interlocked.Increment(ref runs), "x");
        Assert.True(rt.SystemWq.Queue(x)); // gives it an owner (the runtime whose hook runs)
        x.FlushWork();
        rt.Wq.DisableWindowHook = _ => throw new InvalidOperationException("injected");
        try
        {
            Assert.Equal("injected", Assert.Throws<InvalidOperationException>(() => x.DisableWorkSync()).Message);
        }
        finally
        {
            rt.Wq.DisableWindowHook = null;
        }
        Assert.False(x.IsDisabled);
        Assert.True(rt.SystemWq.Queue(x));
        x.FlushWork();
        Assert.Equal(2, Volatile.Read(ref runs));
    }

    /// <summary>
    /// cancel_work_sync() as Linux 6.10+ has it: disable, take back, wait, enable. While two cancelers wait
    /// for the same run, the item is idle and disabled (not pending, queues refused), neither waits for
    /// the other, and a user's enable_work() of its own disable leaves the cancels' disables in place.
    /// </summary>
    [Fact]
    public void Cancel_work_sync_is_disable_wait_enable_and_cancelers_wait_side_by_side()
    {
        using var rt = TestRuntime.Boot(2);
        var gate = new Completion();
        var started = new StrongBox<int>();
        var x = WqTest.Blocker(gate, started, "x");
        Assert.True(rt.SystemWq.Queue(x));
        Wait.Until(() => Volatile.Read(ref started.Value) == 1, "the item to start");
        Assert.False(x.DisableWork()); // the user's own disable (running, not pending)
        var results = new int[] { -1, -1 };
        var cancelers = Enumerable.Range(0, 2).Select(i => Guarded.Start(() => results[i] = x.CancelWorkSync() ? 1 : 0, $"canceler{i}")).ToArray();
        try
        {
            Wait.Until(() => Volatile.Read(ref x.SyncCancelers) == 2, "both cancelers to wait for the run");
            Assert.False(x.IsPending); // the kernel's work_pending() during a cancel: idle
            Assert.True(x.IsDisabled);
            Assert.False(rt.SystemWq.Queue(x));
            Assert.False(x.EnableWork()); // the user's disable goes; the cancels' two remain
            Assert.True(x.IsDisabled);
        }
        finally
        {
            gate.Complete();
            foreach (var c in cancelers)
            {
                c.Join();
            }
        }
        Assert.Equal([0, 0], results);
        Assert.False(x.IsDisabled);
        Assert.Equal(WorkBusy.None, x.Busy);
        Assert.True(rt.SystemWq.Queue(x));
        gate.Complete();
        x.FlushWork();
        Assert.Equal(2, Volatile.Read(ref started.Value));
    }

    /// <summary>
    /// The disable a cancel_work_sync() takes for its wait is its own, not one of the user's 65535 nesting
    /// levels: disable_work_sync() is accepted wherever disable_work() is (the 65535th disable included),
    /// and cancel_work_sync() of an item disabled to the limit still cancels and leaves the count as it
    /// was (the kernel's __cancel_work_sync() does not refuse the cancel there either).
    /// </summary>
    [Fact]
    public void A_cancel_sync_does_not_spend_one_of_the_users_disable_levels()
    {
        using var rt = TestRuntime.Boot(2);
        var x = new WorkStruct(_ => { }, "x");
        for (int i = 0; i < WorkStruct.MaxDisableCount - 1; i++)
        {
            Assert.False(x.DisableWork());
        }
        Assert.False(x.DisableWorkSync()); // the 65535th, as disable_work() would take it
        Assert.Equal(WorkStruct.MaxDisableCount, Volatile.Read(ref x.DisableCount));
        Assert.False(x.CancelWorkSync());
        Assert.Equal(WorkStruct.MaxDisableCount, Volatile.Read(ref x.DisableCount));
        Assert.Throws<InvalidOperationException>(() => x.DisableWork()); // the user's limit still holds
        Assert.Equal(WorkStruct.MaxDisableCount, Volatile.Read(ref x.DisableCount));
    }

    /// <summary>
    /// An enable_work() without a disable of its own, made while a cancel_work_sync() waits, takes the
    /// cancel's disable (the count is 1, so it is accepted, as in the kernel). The cancel's own enable then
    /// finds the count at 0: the kernel's work_offqd_enable() warns and leaves it at 0. It must not go
    /// to -1, which reads as disabled forever and which no enable_work() can undo.
    /// </summary>
    [Fact]
    public void An_unbalanced_enable_during_a_cancel_sync_leaves_the_count_at_zero_and_warns()
    {
        using var rt = TestRuntime.Boot(2);
        var gate = new Completion();
        var started = new StrongBox<int>();
        var x = WqTest.Blocker(gate, started, "x");
        Assert.True(rt.SystemWq.Queue(x));
        Wait.Until(() => Volatile.Read(ref started.Value) == 1, "the item to start");
        bool? result = null;
        var canceler = Guarded.Start(() => result = x.CancelWorkSync(), "canceler");
        try
        {
            Wait.Until(() => Volatile.Read(ref x.SyncCancelers) == 1, "the canceler to wait for the run");
            Assert.True(x.EnableWork()); // unbalanced: it takes the cancel's disable
        }
        finally
        {
            gate.Complete();
            canceler.Join();
        }
        Assert.False(result);
        Assert.Equal(0, Volatile.Read(ref x.DisableCount));
        Assert.False(x.IsDisabled);
        Assert.Contains(rt.Faults.Recent, f => f.Exception.Message.Contains("unbalanced", StringComparison.Ordinal));
        Assert.True(rt.SystemWq.Queue(x));
        gate.Complete(); // one completion per run
        x.FlushWork();
        Assert.Equal(2, Volatile.Read(ref started.Value));
    }

    [Fact]
    public void Enable_without_disable_is_refused_naming_the_rule()
    {
        var x = new WorkStruct(_ => { }, "never-disabled");
        var e = Assert.Throws<InvalidOperationException>(() => x.EnableWork());
        Assert.Contains("enable_work()", e.Message, StringComparison.Ordinal);
        Assert.Contains("unbalanced", e.Message, StringComparison.Ordinal);
        Assert.False(x.IsDisabled);
    }

    [Fact]
    public void Disable_work_sync_waits_for_the_running_instance()
    {
        using var rt = TestRuntime.Boot(2);
        var gate = new Completion();
        int started = 0, done = 0;
        var x = new WorkStruct(_ =>
        {
            Interlocked.Increment(ref started);
            gate.WaitForCompletion();
            Volatile.Write(ref done, 1);
        }, "x");
        Assert.True(rt.SystemWq.Queue(x));
        Wait.Until(() => Volatile.Read(ref started) == 1, "the item to start");

        int result = -1, doneAtReturn = -1;
        var disabler = Guarded.Start(() =>
        {
            result = x.DisableWorkSync() ? 1 : 0;
            doneAtReturn = Volatile.Read(ref done);
        }, "disabler");
        try
        {
            // It sleeps in the wait for the run (a waiter of the runtime), so it cannot have returned.
            WqTest.UntilWaiters(rt, 1, "disable_work_sync() to wait for the run");
            Assert.Equal(-1, Volatile.Read(ref result));
        }
        finally
        {
            gate.Complete();
            disabler.Join();
        }
        Assert.Equal(0, result); // running, not pending
        Assert.Equal(1, doneAtReturn);
        Assert.Equal(WorkBusy.None, x.Busy);
        Assert.False(rt.SystemWq.Queue(x));
        Assert.True(x.EnableWork());
    }

    [Fact]
    public void A_disabled_delayed_item_is_neither_armed_nor_queued()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0;
        var dw = new DelayedWork(_ => Interlocked.Increment(ref runs), "delayed");
        Assert.True(rt.SystemWq.QueueDelayed(dw, 10_000_000));
        Assert.True(dw.DisableDelayedWork()); // the armed timer is stopped
        Assert.False(dw.IsTimerPending);
        Assert.False(dw.IsPending);
        Assert.False(rt.SystemWq.QueueDelayed(dw, 1));
        Assert.False(rt.SystemWq.ModDelayed(dw, 1)); // nothing pending to take back, and nothing armed
        Assert.False(dw.IsTimerPending);
        Assert.False(dw.IsPending);
        Assert.False(dw.FlushDelayedWork());

        Assert.True(dw.EnableDelayedWork());
        Assert.True(rt.SystemWq.QueueDelayed(dw, 0));
        dw.FlushWork();
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    [Fact]
    public void Disable_work_sync_of_a_bh_item_may_run_in_atomic_context_but_not_a_normal_ones()
    {
        using var rt = TestRuntime.Boot(2);
        var bh = new WorkStruct(_ => { }, "bh");
        var normal = new WorkStruct(_ => { }, "normal");
        rt.Bound(0, () => Assert.True(rt.SystemBhWq.Queue(bh)));
        bh.FlushWork();
        Assert.True(rt.SystemWq.Queue(normal));
        normal.FlushWork();
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                Assert.False(bh.DisableWorkSync());
                var e = Assert.Throws<InvalidOperationException>(() => normal.DisableWorkSync());
                Assert.Contains("sleeping function called from invalid context", e.Message, StringComparison.Ordinal);
                Assert.False(normal.DisableWork()); // the non-sync one is callable from any context
            }
        });
        Assert.True(bh.IsDisabled);
        Assert.True(normal.IsDisabled);
        Assert.True(bh.EnableWork());
        Assert.True(normal.EnableWork());
    }

    /// <summary>
    /// mod_delayed_work() lands between the bump of a disable_delayed_work()'s count and its grab of the
    /// armed instance. In the kernel the disable takes PENDING before it bumps, so the two are ordered:
    /// either mod_delayed_work() first (it returns true and re-arms; the disable takes that back, true), or
    /// the disable first (true; mod_delayed_work() finds the item idle and disabled, false). Either way the
    /// disable of an item pending throughout returns true. mod_delayed_work() used to take the instance
    /// back and queue nothing, returning true, and the disable then found the item idle and returned false:
    /// an instance taken back with no replacement, reported by no disable (a reference a driver drops on a
    /// disable that returns true would leak).
    /// </summary>
    [Fact]
    public void Mod_delayed_work_during_a_disable_leaves_the_disable_reporting_the_pending_instance()
    {
        using var rt = TestRuntime.Boot(2);
        var dw = new DelayedWork(_ => { }, "raced");
        Assert.True(rt.SystemWq.QueueDelayed(dw, 10_000_000)); // armed: pending, never due during the test
        using var inWindow = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        rt.Wq.DisableWindowHook = _ =>
        {
            inWindow.Set();
            Wait.For(release, "the test to let the disable grab PENDING");
        };
        int disabled = -1;
        bool modded;
        var disabler = Guarded.Start(() => Volatile.Write(ref disabled, dw.DisableDelayedWork() ? 1 : 0), "disabler");
        try
        {
            Wait.For(inWindow, "disable_delayed_work() to have bumped its count and not grabbed yet");
            rt.Wq.DisableWindowHook = null;
            Assert.True(dw.IsDisabled);
            Assert.True(dw.IsTimerPending);
            modded = rt.SystemWq.ModDelayed(dw, 10_000_000);
        }
        finally
        {
            rt.Wq.DisableWindowHook = null;
            release.Set();
            disabler.Join();
        }
        Assert.Equal(1, Volatile.Read(ref disabled));
        Assert.True(modded); // it took the armed instance and re-armed it, which the disable then took back
        Assert.False(dw.IsPending);
        Assert.False(dw.IsTimerPending);
        Assert.False(rt.SystemWq.ModDelayed(dw, 1)); // now disabled and idle: nothing taken, nothing armed
        Assert.False(dw.IsPending);
        Assert.True(dw.EnableDelayedWork());
        Assert.Equal(0, rt.Faults.Count);
    }

    /// <summary>
    /// Queuers hammer an item while another thread disables it (sync) and enables it again, many times.
    /// Between a disable_work_sync() and its enable_work() the item never runs and is never queued; at the
    /// end every queue that returned true either ran or was taken back by a disable that returned true.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Disable_and_enable_against_queuers_lose_and_leak_nothing(bool bh)
    {
        using var rt = TestRuntime.Boot(2);
        var wq = bh ? rt.SystemBhWq : rt.SystemWq;
        long runs = 0, accepted = 0, takenBack = 0;
        var x = new WorkStruct(_ => Interlocked.Increment(ref runs), "hammered");
        int stop = 0;
        var queuers = Enumerable.Range(0, 2).Select(cpu => Guarded.Start(() => rt.Bound(cpu, () =>
        {
            while (Volatile.Read(ref stop) == 0)
            {
                if (wq.Queue(x))
                {
                    Interlocked.Increment(ref accepted);
                }
            }
        }), $"queuer{cpu}")).ToArray();
        string? violation = null;
        try
        {
            // At least 2,000 rounds, and on until disables have taken back pending instances and queues
            // have got through, so the race is really exercised (the bound only catches a hang).
            for (int i = 0; (i < 2_000 || Volatile.Read(ref takenBack) < 10 || Volatile.Read(ref accepted) < 100) && i < 2_000_000 && violation is null; i++)
            {
                if (x.DisableWorkSync())
                {
                    Interlocked.Increment(ref takenBack);
                }
                long runsWhileDisabled = Volatile.Read(ref runs);
                for (int k = 0; k < 10; k++)
                {
                    // Never linked on a queue and never running. (PENDING itself may flicker: a refused queuer
                    // takes it with its CAS before it sees the count and gives it back, as in the kernel,
                    // where test_and_set_bit() comes before clear_pending_if_disabled().)
                    if (Volatile.Read(ref x.QueuedPool) is not null || x.IsRunning)
                    {
                        violation = $"iteration {i}: queued or running while disabled ({x.Busy})";
                    }
                }
                if (Volatile.Read(ref runs) != runsWhileDisabled)
                {
                    violation = $"iteration {i}: ran while disabled";
                }
                x.EnableWork();
            }
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            foreach (var q in queuers)
            {
                q.Join();
            }
        }
        x.FlushWork();
        Assert.Null(violation);
        Assert.True(Volatile.Read(ref takenBack) >= 10 && Volatile.Read(ref accepted) >= 100, $"taken back {takenBack}, accepted {accepted}");
        Assert.Equal(Volatile.Read(ref accepted), Volatile.Read(ref runs) + Volatile.Read(ref takenBack));
        Assert.Equal(0, rt.Faults.Count);
    }
}
