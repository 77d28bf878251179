using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>Every misuse is a clear exception naming the kernel rule, not a hang or a silent no-op.</summary>
public class WorkqueueMisuseTests
{
    /// <summary>Runs <paramref name="body"/> inside a work item of <paramref name="wq"/> and returns what it threw.</summary>
    private static Exception? FromItem(Workqueue wq, Action<WorkStruct> body)
    {
        Exception? caught = null;
        var item = new WorkStruct(w =>
        {
            try
            {
                body(w);
            }
            catch (Exception e)
            {
                caught = e;
            }
        }, "misuser");
        wq.Queue(item);
        item.FlushWork();
        return caught;
    }

    [Fact]
    public void Flushing_draining_or_destroying_a_workqueue_from_its_own_item_is_a_deadlock()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("self");
        var ordered = rt.AllocOrderedWorkqueue("self-ordered");
        foreach (var q in new[] { wq, ordered })
        {
            Assert.Contains("deadlock", Assert.IsType<InvalidOperationException>(FromItem(q, _ => q.Flush())).Message, StringComparison.Ordinal);
            Assert.Contains("drain_workqueue()", Assert.IsType<InvalidOperationException>(FromItem(q, _ => q.Drain())).Message, StringComparison.Ordinal);
            Assert.Contains("destroy_workqueue()", Assert.IsType<InvalidOperationException>(FromItem(q, _ => q.Destroy())).Message, StringComparison.Ordinal);
            Assert.False(q.IsDestroyed);
        }
        // Flushing another workqueue from an item is fine.
        Assert.Null(FromItem(wq, _ => ordered.Flush()));
        wq.Destroy();
        ordered.Destroy();
    }

    [Fact]
    public void Flush_work_or_cancel_work_sync_of_the_running_item_from_itself_is_a_deadlock()
    {
        using var rt = TestRuntime.Boot(1);
        var e1 = Assert.IsType<InvalidOperationException>(FromItem(rt.SystemWq, w => w.FlushWork()));
        Assert.Contains("flush_work()", e1.Message, StringComparison.Ordinal);
        Assert.Contains("wait for itself", e1.Message, StringComparison.Ordinal);
        var e2 = Assert.IsType<InvalidOperationException>(FromItem(rt.SystemWq, w => w.CancelWorkSync()));
        Assert.Contains("cancel_work_sync()", e2.Message, StringComparison.Ordinal);
        // The non-sync cancel does not wait: allowed.
        Assert.Null(FromItem(rt.SystemWq, w => w.CancelWork()));
    }

    [Fact]
    public void Flushing_an_item_queued_behind_the_flusher_on_an_ordered_workqueue_is_a_deadlock()
    {
        using var rt = TestRuntime.Boot(1);
        var ordered = rt.AllocOrderedWorkqueue("ordered-self");
        var behind = new WorkStruct(_ => { }, "behind");
        var e = FromItem(ordered, _ =>
        {
            ordered.Queue(behind);
            behind.FlushWork();
        });
        Assert.Contains("ordered workqueue 'ordered-self'", Assert.IsType<InvalidOperationException>(e).Message, StringComparison.Ordinal);
        ordered.Flush();
        ordered.Destroy();
    }

    [Fact]
    public void Sleeping_calls_from_atomic_context_are_refused()
    {
        using var rt = TestRuntime.Boot(2);
        var item = new WorkStruct(_ => { }, "target");
        rt.SystemWq.Queue(item);
        item.FlushWork();
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                Assert.Contains("sleeping function called from invalid context", Assert.Throws<InvalidOperationException>(() => item.CancelWorkSync()).Message, StringComparison.Ordinal);
                Assert.Contains("flush_work()", Assert.Throws<InvalidOperationException>(() => item.FlushWork()).Message, StringComparison.Ordinal);
                Assert.Contains("flush_workqueue()", Assert.Throws<InvalidOperationException>(rt.SystemWq.Flush).Message, StringComparison.Ordinal);
                Assert.True(rt.SystemWq.Queue(item)); // queueing is fine in atomic context
                _ = item.CancelWork(); // and so is the non-sync cancel
            }
        });
        Exception? fromIrq = null;
        rt.OnCpu(1, () => fromIrq = Record.Exception(() => item.CancelWorkSync()));
        Assert.Contains("hard-IRQ context", fromIrq?.Message, StringComparison.Ordinal);
        rt.OnCpu(1, () => rt.SystemWq.Queue(item)); // queue_work from hard IRQ: fine
        item.FlushWork();
    }

    [Fact]
    public void Bad_arguments_to_alloc_workqueue_are_refused()
    {
        using var rt = TestRuntime.Boot(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => rt.AllocWorkqueue("big", maxActive: 2049));
        Assert.Throws<ArgumentOutOfRangeException>(() => rt.AllocWorkqueue("negative", maxActive: -1));
        Assert.Contains("unbound", Assert.Throws<ArgumentException>(() => rt.AllocWorkqueue("attrs", WorkqueueFlags.None, 0, new WorkqueueAttrs(-5))).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => rt.AllocWorkqueue("mask", WorkqueueFlags.Unbound, 0, new WorkqueueAttrs(0, [7])));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkqueueAttrs(25));
        Assert.ThrowsAny<ArgumentException>(() => rt.AllocWorkqueue(""));
        Assert.Throws<ArgumentException>(() => rt.AllocWorkqueue("unknown", (WorkqueueFlags)(1 << 12)));
        using var wq = rt.AllocWorkqueue("ok", WorkqueueFlags.None, 2048);
        Assert.Throws<ArgumentOutOfRangeException>(() => wq.QueueOn(2, new WorkStruct(_ => { })));
        Assert.Throws<ArgumentOutOfRangeException>(() => wq.SetMaxActive(0));
        using var ordered = rt.AllocOrderedWorkqueue("ordered");
        Assert.Throws<InvalidOperationException>(() => ordered.SetMaxActive(2));
        Assert.Equal(1, ordered.MaxActive);
    }

    [Fact]
    public void System_workqueues_cannot_be_destroyed()
    {
        using var rt = TestRuntime.Boot(1);
        foreach (var wq in new[] { rt.SystemWq, rt.SystemHighpriWq, rt.SystemLongWq, rt.SystemUnboundWq, rt.SystemFreezableWq, rt.SystemBhWq, rt.SystemBhHighpriWq })
        {
            Assert.Contains("system workqueue", Assert.Throws<InvalidOperationException>(wq.Destroy).Message, StringComparison.Ordinal);
        }
        Assert.Equal(["events", "events_highpri", "events_long", "events_unbound", "events_freezable", "events_bh", "events_bh_highpri"],
            new[] { rt.SystemWq, rt.SystemHighpriWq, rt.SystemLongWq, rt.SystemUnboundWq, rt.SystemFreezableWq, rt.SystemBhWq, rt.SystemBhHighpriWq }.Select(w => w.Name));
        Assert.Equal(Workqueue.MaxMaxActive, rt.SystemUnboundWq.MaxActive);
    }

    [Fact]
    public void A_throwing_item_is_reported_and_the_worker_survives()
    {
        using var rt = TestRuntime.Boot(1);
        var bad = new WorkStruct(_ => throw new InvalidDataException("boom"), "thrower");
        rt.SystemWq.Queue(bad);
        bad.FlushWork();
        Assert.True(rt.Faults.Count == 1, string.Join("\n", rt.Faults.Recent));
        var fault = Assert.Single(rt.Faults.Recent);
        Assert.Equal("work item 'thrower'", fault.Source);
        Assert.IsType<InvalidDataException>(fault.Exception);
        int ok = 0;
        var good = new WorkStruct(_ => ok = 1, "after");
        rt.SystemWq.Queue(good);
        good.FlushWork();
        Assert.Equal(1, ok);
    }
}
