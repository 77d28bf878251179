using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>
/// Regressions from the review of the TIMER bit, mod_delayed_work() during cancel_sync, and the atomic
/// cancel of bh items: each test failed on the code before its fix.
/// </summary>
public class TimerBitReviewTests
{
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
            Wait.Until(() => Volatile.Read(ref failure) is not null || Volatile.Read(ref dw.Canceling) != 0, "the canceler to be refused or to wait");
            Assert.Equal(0, Volatile.Read(ref dw.Canceling));
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
