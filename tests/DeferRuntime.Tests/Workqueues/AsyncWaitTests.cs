using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using DeferRuntime.Diagnostics;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>
/// Issue 16: FlushAsync, DrainAsync, FlushWorkAsync, FlushDelayedWorkAsync, CancelWorkSyncAsync and
/// CancelDelayedWorkSyncAsync have their sync twins' semantics and context rules and hold no thread while
/// they wait. Every wait on a task is bounded by <see cref="Wait.Ceiling"/>, which only catches hangs.
/// </summary>
public class AsyncWaitTests
{
    private static Runtime Boot() => TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);

    /// <summary>Waits for a task to finish (any outcome) without deciding anything by time.</summary>
    private static void Settle(Task task, string what)
    {
        try
        {
            if (!task.Wait(Wait.Ceiling))
            {
                throw new TimeoutException($"hang: {what} did not complete within {Wait.Ceiling.TotalSeconds} s");
            }
        }
        catch (AggregateException)
        {
            // the outcome is the caller's to check
        }
    }

    private static T Result<T>(Task<T> task, string what)
    {
        Settle(task, what);
        return task.GetAwaiter().GetResult();
    }

    private static void Done(Task task, string what)
    {
        Settle(task, what);
        task.GetAwaiter().GetResult();
    }

    /// <summary>The result of a task that has already completed (at the call, or waited for before).</summary>
    private static T Sync<T>(Task<T> task)
    {
        Assert.True(task.IsCompletedSuccessfully, "the task was expected to be complete already");
        return task.GetAwaiter().GetResult();
    }

    private static void AllDone(Task[] tasks)
    {
        foreach (var t in tasks)
        {
            Done(t, "one of many awaited waits");
        }
    }

    // ---- flush_workqueue() ----

    [Fact]
    public void FlushAsync_waits_for_work_queued_before_the_call_and_not_for_later_work()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-flush");
        var gate = new Completion();
        var later = new Completion();
        var started = new StrongBox<int>();
        Assert.True(wq.QueueOn(0, WqTest.Blocker(gate, started, "before")));

        var flush = wq.FlushAsync();
        Assert.False(flush.IsCompleted);
        // Queued after the call returned: a later flush color, not waited for.
        Assert.True(wq.QueueOn(1, WqTest.Blocker(later, started, "after")));
        Wait.Until(() => started.Value == 2, "both items to start");
        Assert.Equal(1, rt.Wq.AsyncWaiterCount);
        Assert.False(flush.IsCompleted);

        gate.Complete();
        Done(flush, "FlushAsync after its item finished");
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        Assert.False(wq.IsEmpty()); // "after" still runs: the flush did not wait for it
        later.Complete();
        wq.Flush();
        wq.Destroy();
    }

    [Fact]
    public void FlushAsync_and_DrainAsync_with_nothing_queued_are_complete_at_once()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-idle");
        Assert.True(wq.FlushAsync().IsCompletedSuccessfully);
        Assert.True(wq.DrainAsync().IsCompletedSuccessfully);
        // Even with a cancelled token: nothing to wait for, nothing to cancel.
        Assert.True(wq.FlushAsync(new CancellationToken(canceled: true)).IsCompletedSuccessfully);
        Assert.False(wq.IsDraining);
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        wq.Destroy();
    }

    [Fact]
    public void FlushAsync_cancelled_is_Canceled_leaves_no_waiter_and_its_color_does_not_wedge_the_ring()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-cancel");
        var gate = new Completion();
        var started = new StrongBox<int>();
        Assert.True(wq.QueueOn(0, WqTest.Blocker(gate, started, "blocker")));
        Wait.Until(() => started.Value == 1, "the blocker to start");

        // More cancelled flushes than the ring has colors: each leaves its color undrained behind it.
        for (int i = 0; i < PoolWorkqueue.WorkColors * 2; i++)
        {
            using var cts = new CancellationTokenSource();
            var flush = wq.FlushAsync(cts.Token);
            Assert.False(flush.IsCompleted);
            cts.Cancel();
            Settle(flush, "a cancelled FlushAsync");
            Assert.True(flush.IsCanceled);
        }
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        Assert.Equal(0, rt.Wq.WaiterCount);

        gate.Complete();
        // The ring was full of cancelled colors: both flushes still finish (the next flusher retires them).
        wq.Flush();
        Done(wq.FlushAsync(), "FlushAsync after cancelled ones");
        wq.Destroy();
    }

    [Fact]
    public void FlushAsync_refuses_what_Flush_refuses_at_the_call()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-rules");
        Exception? fromOwnItem = null;
        var own = new WorkStruct(w => fromOwnItem = Record.Exception(() => { _ = wq.FlushAsync(); }), "own");
        Assert.True(wq.Queue(own));
        own.FlushWork();
        Assert.IsType<InvalidOperationException>(fromOwnItem);
        Assert.Contains("deadlock", fromOwnItem!.Message, StringComparison.Ordinal);

        Exception? drainFromOwn = null;
        var own2 = new WorkStruct(w => drainFromOwn = Record.Exception(() => { _ = wq.DrainAsync(); }), "own2");
        Assert.True(wq.Queue(own2));
        own2.FlushWork();
        Assert.IsType<InvalidOperationException>(drainFromOwn);

        Exception? fromIrq = null;
        rt.OnCpu(0, () => fromIrq = Record.Exception(() => { _ = wq.FlushAsync(); }));
        Assert.IsType<InvalidOperationException>(fromIrq);
        Assert.Contains("sleeping function called from invalid context", fromIrq!.Message, StringComparison.Ordinal);
        Assert.Contains("flush_workqueue()", fromIrq.Message, StringComparison.Ordinal);

        // From an item of another workqueue it is allowed, as Flush() is.
        Task? fromOther = null;
        var other = new WorkStruct(_ => fromOther = wq.FlushAsync(), "other");
        Assert.True(rt.SystemWq.Queue(other));
        other.FlushWork();
        Done(fromOther!, "FlushAsync from another workqueue's item");

        wq.Destroy();
        Assert.Throws<ObjectDisposedException>(() => { _ = wq.FlushAsync(); });
        Assert.Throws<ObjectDisposedException>(() => { _ = wq.DrainAsync(); });
    }

    // ---- drain_workqueue() ----

    [Fact]
    public void DrainAsync_runs_chained_work_to_the_end_and_refuses_outside_queueing_meanwhile()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-drain");
        var gate = new Completion();
        const int chain = 50;
        int runs = 0;
        WorkStruct? chained = null;
        chained = new WorkStruct(_ =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                gate.WaitForCompletion();
            }
            if (Volatile.Read(ref runs) < chain)
            {
                Assert.True(wq.Queue(chained!)); // chained: its own workqueue's item, allowed while draining
            }
        }, "chained");
        Assert.True(wq.Queue(chained));
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the chain to start");

        var drain = wq.DrainAsync();
        Assert.True(wq.IsDraining); // from the call on, before any await
        var outsider = new WorkStruct(_ => { }, "outsider");
        var refused = Assert.Throws<InvalidOperationException>(() => wq.Queue(outsider));
        Assert.Contains("being drained", refused.Message, StringComparison.Ordinal);

        gate.Complete();
        Done(drain, "DrainAsync of a chain");
        Assert.Equal(chain, Volatile.Read(ref runs));
        Assert.False(wq.IsDraining);
        Assert.True(wq.IsEmpty());
        Assert.True(wq.Queue(outsider)); // accepted again once the drain is over
        wq.Destroy();
    }

    [Fact]
    public void DrainAsync_cancelled_ends_the_drain()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-drain-cancel");
        var gate = new Completion();
        var started = new StrongBox<int>();
        Assert.True(wq.Queue(WqTest.Blocker(gate, started, "blocker")));
        using var cts = new CancellationTokenSource();
        var drain = wq.DrainAsync(cts.Token);
        Assert.True(wq.IsDraining);
        cts.Cancel();
        Settle(drain, "a cancelled DrainAsync");
        Assert.True(drain.IsCanceled);
        Assert.False(wq.IsDraining);
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        Assert.True(wq.Queue(new WorkStruct(_ => { }, "after")));
        gate.Complete();
        wq.Drain();
        wq.Destroy();
    }

    // ---- flush_work() ----

    [Fact]
    public void FlushWorkAsync_waits_for_the_instance_queued_before_the_call()
    {
        using var rt = Boot();
        var gate = new Completion();
        int runs = 0;
        var item = new WorkStruct(_ =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                gate.WaitForCompletion();
            }
        }, "item");

        Assert.True(item.FlushWorkAsync().IsCompletedSuccessfully); // never queued
        Assert.False(Sync(item.FlushWorkAsync()));

        Assert.True(rt.SystemWq.Queue(item));
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the item to start");
        var flush = item.FlushWorkAsync();
        Assert.False(flush.IsCompleted);
        gate.Complete();
        Assert.True(Result(flush, "FlushWorkAsync"));
        Assert.False(Sync(item.FlushWorkAsync())); // idle: false, at once
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);

        Exception? self = null;
        var selfFlusher = new WorkStruct(w => self = Record.Exception(() => { _ = w.FlushWorkAsync(); }), "self");
        Assert.True(rt.SystemWq.Queue(selfFlusher));
        selfFlusher.FlushWork();
        Assert.IsType<InvalidOperationException>(self);
        Assert.Contains("wait for itself", self!.Message, StringComparison.Ordinal);

        Exception? fromIrq = null;
        rt.OnCpu(1, () => fromIrq = Record.Exception(() => { _ = item.FlushWorkAsync(); }));
        Assert.Contains("sleeping function called from invalid context", Assert.IsType<InvalidOperationException>(fromIrq).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FlushWorkAsync_cancelled_is_Canceled_and_the_item_still_runs()
    {
        using var rt = Boot();
        var gate = new Completion();
        var started = new StrongBox<int>();
        var item = WqTest.Blocker(gate, started, "blocked");
        Assert.True(rt.SystemWq.Queue(item));
        using var cts = new CancellationTokenSource();
        var flush = item.FlushWorkAsync(cts.Token);
        Wait.Until(() => rt.Wq.AsyncWaiterCount == 1, "the flush to wait");
        cts.Cancel();
        Settle(flush, "a cancelled FlushWorkAsync");
        Assert.True(flush.IsCanceled);
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        gate.Complete();
        _ = Result(item.FlushWorkAsync(), "FlushWorkAsync after the cancelled one"); // true, or false if it had finished already
        Assert.Equal(1, started.Value);
        Assert.Equal(WorkBusy.None, item.Busy);
    }

    // ---- cancel_work_sync() ----

    [Fact]
    public void CancelWorkSyncAsync_takes_back_the_pending_instance_and_waits_for_the_running_one()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-cancel-sync");
        var gate = new Completion();
        var started = new StrongBox<int>();
        var item = WqTest.Blocker(gate, started, "item");
        Assert.True(wq.QueueOn(0, item));
        Wait.Until(() => started.Value == 1, "the item to start");
        Assert.True(wq.QueueOn(0, item)); // pending again while it runs

        var cancel = item.CancelWorkSyncAsync();
        Assert.False(cancel.IsCompleted); // the running instance is waited for
        Assert.False(item.IsPending); // the pending one was taken back at the call
        Assert.True(item.IsDisabled); // disabled for the wait, as cancel_work_sync() in 6.10+
        Assert.False(wq.Queue(item));
        Assert.Equal(1, Volatile.Read(ref item.SyncCancelers));

        gate.Complete();
        Assert.True(Result(cancel, "CancelWorkSyncAsync")); // it was pending
        Assert.False(item.IsDisabled);
        Assert.Equal(0, Volatile.Read(ref item.SyncCancelers));
        Assert.Equal(1, started.Value); // the taken-back instance never ran
        Assert.Equal(WorkBusy.None, item.Busy);

        // Idle: done at once, false.
        Assert.False(Sync(item.CancelWorkSyncAsync()));
        // Queueable again.
        gate.Complete();
        Assert.True(wq.Queue(item));
        item.FlushWork();
        Assert.Equal(2, started.Value);
        wq.Destroy();
    }

    [Fact]
    public void CancelWorkSyncAsync_cancelled_leaves_the_item_cancelled_enabled_and_still_running()
    {
        using var rt = Boot();
        var gate = new Completion();
        var started = new StrongBox<int>();
        var item = WqTest.Blocker(gate, started, "item");
        Assert.True(rt.SystemWq.QueueOn(1, item));
        Wait.Until(() => started.Value == 1, "the item to start");
        Assert.True(rt.SystemWq.QueueOn(1, item));

        using var cts = new CancellationTokenSource();
        var cancel = item.CancelWorkSyncAsync(cts.Token);
        Assert.False(item.IsPending);
        cts.Cancel();
        Settle(cancel, "a cancelled CancelWorkSyncAsync");
        Assert.True(cancel.IsCanceled);
        Assert.False(item.IsDisabled); // the cancel's own disable is undone
        Assert.False(item.IsPending); // the taken-back instance stays cancelled
        Assert.Equal(WorkBusy.Running, item.Busy); // the waiting was cancelled, not the run
        Assert.Equal(0, Volatile.Read(ref item.SyncCancelers));
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);

        gate.CompleteAll();
        item.FlushWork();
        Assert.Equal(1, started.Value);
        Assert.True(rt.SystemWq.Queue(item)); // enabled
        item.FlushWork();
        Assert.Equal(2, started.Value);
    }

    [Fact]
    public void CancelWorkSyncAsync_refuses_what_CancelWorkSync_refuses()
    {
        using var rt = Boot();
        var item = new WorkStruct(_ => { }, "item");
        Assert.True(rt.SystemWq.Queue(item));
        item.FlushWork();
        Exception? fromIrq = null;
        rt.OnCpu(0, () => fromIrq = Record.Exception(() => { _ = item.CancelWorkSyncAsync(); }));
        Assert.Contains("sleeping function called from invalid context", Assert.IsType<InvalidOperationException>(fromIrq).Message, StringComparison.Ordinal);
        Assert.False(item.IsDisabled);

        Exception? self = null;
        var selfCanceler = new WorkStruct(w => self = Record.Exception(() => { _ = w.CancelWorkSyncAsync(); }), "self");
        Assert.True(rt.SystemWq.Queue(selfCanceler));
        selfCanceler.FlushWork();
        Assert.IsType<InvalidOperationException>(self);
        Assert.False(selfCanceler.IsDisabled);
    }

    // ---- delayed work ----

    [Fact]
    public void Delayed_work_async_cancel_stops_the_timer_and_async_flush_cuts_the_delay_short()
    {
        using var rt = Boot();
        int runs = 0;
        var dwork = new DelayedWork(_ => Interlocked.Increment(ref runs), "delayed");
        Assert.True(rt.SystemWq.QueueDelayed(dwork, 3_600_000));
        Assert.True(dwork.IsPending);
        Assert.True(Result(dwork.CancelDelayedWorkSyncAsync(), "CancelDelayedWorkSyncAsync"));
        Assert.False(dwork.IsPending);
        Assert.False(dwork.IsTimerPending);
        Assert.False(dwork.IsDisabled);

        Assert.True(rt.SystemWq.QueueDelayed(dwork, 3_600_000));
        Assert.True(Result(dwork.FlushDelayedWorkAsync(), "FlushDelayedWorkAsync")); // queued at once and waited for
        Assert.Equal(1, Volatile.Read(ref runs));
        Assert.False(Sync(dwork.FlushDelayedWorkAsync())); // idle
        Assert.False(Sync(dwork.CancelDelayedWorkSyncAsync()));
    }

    // ---- under load ----

    [Fact]
    public void FlushAsync_under_load_waits_for_exactly_what_was_queued_before_each_call()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-load");
        const int producers = 3;
        int perProducer = Stress.Scale(3000, 30000);
        var items = new WorkStruct[producers][];
        var ran = new int[producers][];
        var queuedUpTo = new int[producers]; // items [0, queuedUpTo) were queued (Queue returned)
        for (int p = 0; p < producers; p++)
        {
            int pp = p;
            ran[p] = new int[perProducer];
            items[p] = new WorkStruct[perProducer];
            for (int i = 0; i < perProducer; i++)
            {
                int ii = i;
                items[p][i] = new WorkStruct(_ => Interlocked.Increment(ref ran[pp][ii]), $"p{p}i{i}");
            }
        }
        using var go = new ManualResetEventSlim();
        int producersDone = 0;
        var threads = Enumerable.Range(0, producers).Select(p => Guarded.Start(() =>
        {
            try
            {
                go.Wait();
                for (int i = 0; i < perProducer; i++)
                {
                    Assert.True(wq.Queue(items[p][i]));
                    Volatile.Write(ref queuedUpTo[p], i + 1);
                    if ((i & 63) == 0)
                    {
                        Thread.Yield();
                    }
                }
            }
            finally
            {
                Interlocked.Increment(ref producersDone); // a producer that failed ends the loop too (Join rethrows)
            }
        }, $"producer{p}")).ToList();

        go.Set();
        var flushes = new Queue<(Task Flush, int[] Before)>();
        var verified = new int[producers]; // items below this index are known to have run
        int checks = 0;
        void Check(Task flush, int[] seen)
        {
            Done(flush, "a FlushAsync under load");
            for (int p = 0; p < producers; p++)
            {
                for (int i = verified[p]; i < seen[p]; i++)
                {
                    Assert.True(Volatile.Read(ref ran[p][i]) == 1, $"item p{p}i{i}, queued before a FlushAsync, had not run when it completed");
                }
                verified[p] = Math.Max(verified[p], seen[p]);
            }
            checks++;
        }
        int QueuedSoFar()
        {
            int sum = 0;
            for (int p = 0; p < producers; p++)
            {
                sum += Volatile.Read(ref queuedUpTo[p]);
            }
            return sum;
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int issued = 0;
        while (Volatile.Read(ref producersDone) < producers || issued == 0)
        {
            if (clock.Elapsed > Wait.Ceiling)
            {
                throw new TimeoutException($"hang: producers queued {QueuedSoFar()} of {producers * perProducer} items in {Wait.Ceiling.TotalSeconds} s");
            }
            var before = new int[producers];
            for (int p = 0; p < producers; p++)
            {
                before[p] = Volatile.Read(ref queuedUpTo[p]);
            }
            flushes.Enqueue((wq.FlushAsync(), before));
            issued++;
            // Check the oldest flushes once they complete, while the producers keep queueing.
            while (flushes.Count > 8 || (flushes.Count > 0 && flushes.Peek().Flush.IsCompleted))
            {
                var (flush, seen) = flushes.Dequeue();
                Check(flush, seen);
            }
        }
        foreach (var t in threads)
        {
            t.Join();
        }
        while (flushes.Count > 0)
        {
            var (flush, seen) = flushes.Dequeue();
            Check(flush, seen);
        }
        Done(wq.FlushAsync(), "the final FlushAsync");
        Assert.All(ran, r => Assert.All(r, n => Assert.Equal(1, n))); // each ran exactly once
        Assert.True(checks > 0);
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        Assert.Equal(0, rt.Wq.WaiterCount);
        wq.Destroy();
    }

    // ---- no thread held ----

    [Fact]
    public void Awaiting_a_flush_holds_no_thread_its_single_threaded_context_stays_free()
    {
        using var rt = Boot();
        var wq = rt.AllocWorkqueue("async-context");
        var gate = new Completion();
        var started = new StrongBox<int>();
        var item = WqTest.Blocker(gate, started, "blocker");
        using var context = new SingleThreadContext();

        // On the context's only thread: await the flushes, while the gate that lets them finish is opened
        // by a callback posted to that same thread. If an await blocked its thread, the callback could
        // never run and the flushes never finish (the ceiling catches that).
        var outcome = context.Run(async () =>
        {
            Assert.True(wq.Queue(item));
            var flush = wq.FlushAsync();
            var flushWork = item.FlushWorkAsync();
            var cancel = new WorkStruct(_ => { }, "idle").CancelWorkSyncAsync();
            SynchronizationContext.Current!.Post(_ =>
            {
                Assert.True(context.IsCurrent);
                Wait.Until(() => rt.Wq.AsyncWaiterCount == 2, "both flushes to wait");
                gate.Complete();
            }, null);
            await flush;
            Assert.True(context.IsCurrent); // resumed on the context, as an await does
            Assert.True(await flushWork);
            Assert.False(await cancel);
            return started.Value;
        });
        Assert.Equal(1, Result(outcome, "the awaits on a single-threaded context"));

        // And many waits at once hold no thread either: 200 awaited flushes of one blocked item, with the
        // thread pool's thread count far from 200.
        Assert.True(wq.Queue(item));
        Wait.Until(() => started.Value == 2, "the blocker to start again");
        int threadsBefore = ThreadPool.ThreadCount;
        var many = Enumerable.Range(0, 200).Select(_ => item.FlushWorkAsync()).ToArray();
        Wait.Until(() => rt.Wq.AsyncWaiterCount == 200, "200 async waiters");
        Assert.True(ThreadPool.ThreadCount < threadsBefore + 100, $"thread pool grew from {threadsBefore} to {ThreadPool.ThreadCount} threads");
        Assert.All(many, t => Assert.False(t.IsCompleted));
        gate.Complete();
        AllDone(many);
        Assert.All(many, t => Assert.True(t.IsCompletedSuccessfully && Sync(t)));
        wq.Destroy();
    }

    // ---- shutdown ----

    [Fact]
    public void Shutdown_while_awaiting_completes_the_tasks_when_it_drains()
    {
        var rt = Boot();
        var wq = rt.AllocWorkqueue("async-shutdown");
        var gate = new Completion();
        var started = new StrongBox<int>();
        var item = WqTest.Blocker(gate, started, "blocker");
        Assert.True(wq.Queue(item));
        Wait.Until(() => started.Value == 1, "the blocker to start");
        var flush = wq.FlushAsync();
        var flushWork = item.FlushWorkAsync();
        var drain = rt.SystemWq.DrainAsync();

        var dispose = Guarded.Start(rt.Dispose, "disposer");
        Wait.Until(() => rt.IsShutDown, "shutdown to begin");
        Assert.False(flush.IsCompleted);
        gate.Complete(); // the drain can finish now
        dispose.Join();
        Done(flush, "FlushAsync across shutdown");
        Assert.True(Result(flushWork, "FlushWorkAsync across shutdown"));
        Done(drain, "DrainAsync across shutdown");
        Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        // After shutdown: nothing in flight, so complete at once.
        Assert.True(item.FlushWorkAsync().IsCompletedSuccessfully);
    }

    [Fact]
    public void Shutdown_that_leaves_an_item_stuck_fails_the_awaiting_tasks_with_ObjectDisposedException()
    {
        var rt = Boot();
        var gate = new Completion();
        var started = new StrongBox<int>();
        var item = WqTest.Blocker(gate, started, "stuck");
        try
        {
            Assert.True(rt.SystemWq.Queue(item));
            Wait.Until(() => started.Value == 1, "the item to start");
            var flush = rt.SystemWq.FlushAsync();
            var flushWork = item.FlushWorkAsync();
            var cancel = item.CancelWorkSyncAsync();
            Wait.Until(() => rt.Wq.AsyncWaiterCount == 3, "three async waiters");

            var report = rt.Shutdown(TimeSpan.FromMilliseconds(200));
            Assert.NotNull(report.Abandoned);
            foreach (var task in new Task[] { flush, flushWork, cancel })
            {
                Settle(task, "an async wait across a shutdown that gave up");
                Assert.True(task.IsFaulted);
                Assert.IsType<ObjectDisposedException>(task.Exception!.InnerException);
            }
            Assert.False(item.IsDisabled); // the cancel's disable was undone
            Assert.Equal(0, rt.Wq.AsyncWaiterCount);

            // A wait that starts after the stop fails at once rather than hang.
            var late = item.FlushWorkAsync();
            Assert.True(late.IsFaulted);
            Assert.IsType<ObjectDisposedException>(late.Exception!.InnerException);
        }
        finally
        {
            gate.CompleteAll(); // let the stuck worker go
        }
    }

    [Fact]
    public void A_panic_fails_the_awaiting_tasks_as_it_fails_the_sleeping_waits()
    {
        var rt = TestRuntime.Boot(2, o => o.PanicOnOops = true);
        var gate = new Completion();
        var started = new StrongBox<int>();
        var item = WqTest.Blocker(gate, started, "blocked");
        try
        {
            Assert.True(rt.SystemWq.QueueOn(0, item));
            Wait.Until(() => started.Value == 1, "the item to start");
            var flushWork = item.FlushWorkAsync();
            Assert.False(flushWork.IsCompleted);
            var fatal = rt.CreateTasklet(_ => throw new InvalidOperationException("BUG"), "fatal");
            fatal.Schedule();
            Settle(flushWork, "FlushWorkAsync across a panic");
            Assert.True(flushWork.IsFaulted);
            Assert.IsType<KernelPanicException>(flushWork.Exception!.InnerException);
            Assert.Equal(0, rt.Wq.AsyncWaiterCount);
        }
        finally
        {
            gate.CompleteAll();
            rt.Dispose();
        }
    }

    /// <summary>A SynchronizationContext with one thread, which runs posted callbacks in order.</summary>
    private sealed class SingleThreadContext : SynchronizationContext, IDisposable
    {
        private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _queue = [];
        private readonly Thread _thread;

        public SingleThreadContext()
        {
            _thread = new Thread(() =>
            {
                SetSynchronizationContext(this);
                foreach (var (callback, state) in _queue.GetConsumingEnumerable())
                {
                    callback(state);
                }
            })
            { IsBackground = true, Name = "single-threaded context" };
            _thread.Start();
        }

        public bool IsCurrent => ReferenceEquals(Thread.CurrentThread, _thread);

        public override void Post(SendOrPostCallback d, object? state) => _queue.Add((d, state));

        public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException();

        public Task<T> Run<T>(Func<Task<T>> body)
        {
            var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            Post(async _ =>
            {
                try
                {
                    result.SetResult(await body());
                }
                catch (Exception e)
                {
                    result.SetException(e);
                }
            }, null);
            return result.Task;
        }

        public void Dispose()
        {
            _queue.CompleteAdding();
            _thread.Join(DeferRuntime.Tests.Wait.Ceiling);
            _queue.Dispose();
        }
    }
}
