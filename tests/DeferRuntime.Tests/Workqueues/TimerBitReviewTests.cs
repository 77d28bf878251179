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
}
