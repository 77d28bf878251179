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
}
