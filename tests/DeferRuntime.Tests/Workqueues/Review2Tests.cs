using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>Failing tests from the second independent review (branch review2).</summary>
public sealed class Review2Tests
{
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
    /// CPU 0, then also starts for b on CPU 1 (LastPool now names CPU 1's pool), then is queued on a from
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
}
