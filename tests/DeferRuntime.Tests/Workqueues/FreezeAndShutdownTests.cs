using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>The freezer and runtime shutdown with workqueues.</summary>
public class FreezeAndShutdownTests
{
    [Fact]
    public void Freeze_waits_for_active_items_holds_new_ones_and_thaw_runs_them_in_order()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("freezable", WorkqueueFlags.Freezable);
        var gate = new Completion();
        var started = new StrongBox<int>();
        wq.Queue(WqTest.Blocker(gate, started, "active"));
        Wait.Until(() => started.Value == 1, "the active item to start");

        int waiters = rt.Wq.WaiterCount;
        int frozen = 0;
        var freezer = Guarded.Start(() =>
        {
            rt.FreezeWorkqueues();
            Volatile.Write(ref frozen, 1);
        }, "freezer");
        WqTest.UntilWaiters(rt, waiters + 1, "the freezer to wait for the active item");
        Assert.Equal(0, Volatile.Read(ref frozen));
        gate.Complete();
        freezer.Join();

        var order = new List<int>();
        var held = Enumerable.Range(0, 5).Select(i => new WorkStruct(_ => order.Add(i), $"held{i}")).ToArray();
        foreach (var item in held)
        {
            Assert.True(wq.Queue(item));
        }
        // A non-freezable workqueue on the same pool keeps working meanwhile.
        var free = new WorkStruct(_ => { }, "not-freezable");
        rt.SystemWq.Queue(free);
        free.FlushWork();
        Assert.All(held, i => Assert.True(i.IsPending));
        Assert.All(held, i => Assert.Equal(WorkListKind.Inactive, i.ListKind));
        Assert.Empty(order);

        rt.ThawWorkqueues();
        wq.Flush();
        Assert.Equal([0, 1, 2, 3, 4], order);
        wq.Destroy();
    }

    [Fact]
    public void A_workqueue_allocated_while_frozen_starts_frozen()
    {
        using var rt = TestRuntime.Boot(1);
        rt.FreezeWorkqueues();
        var wq = rt.AllocWorkqueue("late", WorkqueueFlags.Freezable);
        int runs = 0;
        var item = new WorkStruct(_ => Interlocked.Increment(ref runs), "late-item");
        wq.Queue(item);
        Assert.Equal(WorkListKind.Inactive, item.ListKind);
        rt.ThawWorkqueues();
        item.FlushWork();
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    [Fact]
    public void Freezing_from_an_item_of_a_freezable_workqueue_is_refused()
    {
        using var rt = TestRuntime.Boot(1);
        Exception? caught = null;
        var item = new WorkStruct(_ =>
        {
            try
            {
                rt.FreezeWorkqueues();
            }
            catch (InvalidOperationException e)
            {
                caught = e;
            }
        }, "self-freezer");
        rt.SystemFreezableWq.Queue(item);
        item.FlushWork();
        Assert.Contains("deadlock", caught?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dispose_runs_everything_accepted_including_chained_and_frozen_work()
    {
        int runs = 0, tasklets = 0;
        var rt = TestRuntime.Boot(2);
        var wq = rt.AllocWorkqueue("frozen-at-shutdown", WorkqueueFlags.Freezable);
        var tasklet = rt.CreateTasklet(_ => Interlocked.Increment(ref tasklets), "from-work");
        var second = Enumerable.Range(0, 100).Select(i => new WorkStruct(_ => Interlocked.Increment(ref runs), $"second{i}")).ToArray();
        var first = Enumerable.Range(0, 100).Select(i => new WorkStruct(_ =>
        {
            Interlocked.Increment(ref runs);
            rt.SystemUnboundWq.Queue(second[i]); // chained during shutdown: accepted
            tasklet.Schedule();
        }, $"first{i}")).ToArray();
        rt.FreezeWorkqueues();
        foreach (var item in first)
        {
            rt.SystemWq.Queue(item);
        }
        var frozenItem = new WorkStruct(_ => Interlocked.Increment(ref runs), "frozen");
        wq.Queue(frozenItem);
        rt.Dispose();

        Assert.Equal(201, Volatile.Read(ref runs));
        Assert.True(Volatile.Read(ref tasklets) >= 1);
    }

    [Fact]
    public void Queueing_from_a_thread_of_no_cpu_after_shutdown_is_refused()
    {
        var rt = TestRuntime.Boot(1);
        var item = new WorkStruct(_ => { }, "late");
        rt.Dispose();
        Assert.Throws<ObjectDisposedException>(() => rt.SystemWq.Queue(item));
        Assert.Throws<ObjectDisposedException>(() => rt.SystemUnboundWq.QueueOn(0, item));
        Assert.False(item.IsPending);
        Assert.Throws<ObjectDisposedException>(() => rt.AllocWorkqueue("late"));
    }

    [Fact]
    public void Dispose_from_a_work_item_is_refused()
    {
        using var rt = TestRuntime.Boot(1);
        Exception? caught = null;
        var item = new WorkStruct(_ =>
        {
            try
            {
                rt.Dispose();
            }
            catch (InvalidOperationException e)
            {
                caught = e;
            }
        }, "suicidal");
        rt.SystemWq.Queue(item);
        item.FlushWork();
        Assert.Contains("workqueue thread", caught?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shutdown_stops_every_workqueue_thread()
    {
        var rt = TestRuntime.Boot(2);
        var reclaim = rt.AllocWorkqueue("reclaim-at-exit", WorkqueueFlags.MemReclaim | WorkqueueFlags.Unbound);
        var items = Enumerable.Range(0, 50).Select(i => new WorkStruct(_ => Delay.Msleep(0), $"s{i}")).ToArray();
        foreach (var item in items)
        {
            rt.SystemWq.Queue(item);
            reclaim.Queue(item);
        }
        var workers = rt.Wq.Pools.SelectMany(p => p.SnapshotWorkers()).ToArray();
        rt.Dispose();
        Assert.All(workers, w => Assert.False(w.Thread!.IsAlive, $"{w.Name} still alive"));
        Assert.False(reclaim.Rescuer!.Thread!.IsAlive);
    }
}
