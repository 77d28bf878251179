using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>WQ_BH: work run in softirq context on the queueing CPU, the kernel's replacement for tasklets.</summary>
public class BhWorkqueueTests
{
    [Fact]
    public void Bh_work_runs_in_softirq_context_on_the_queueing_cpu()
    {
        using var rt = TestRuntime.Boot(2);
        foreach (var (wq, vector) in new[] { (rt.SystemBhWq, "TASKLET"), (rt.SystemBhHighpriWq, "HI") })
        {
            for (int cpu = 0; cpu < 2; cpu++)
            {
                ContextSnapshot? seen = null;
                var item = new WorkStruct(_ => seen = ContextSnapshot.Take(), "bh-probe");
                rt.Bound(cpu, () => Assert.True(wq.Queue(item)));
                item.FlushWork();
                Assert.NotNull(seen);
                Assert.True(seen!.InServingSoftirq, $"{vector} bh work should run in softirq context");
                Assert.True(seen.InAtomic);
                Assert.Equal(cpu, seen.CpuId);
            }
        }
        Assert.True(rt.Cpus[0].GetSoftirqCount(DeferRuntime.Softirqs.SoftirqVector.Tasklet) > 0);
        Assert.True(rt.Cpus[1].GetSoftirqCount(DeferRuntime.Softirqs.SoftirqVector.Hi) > 0);
    }

    [Fact]
    public void Bh_work_queued_in_a_bh_disabled_section_runs_at_local_bh_enable_before_tasklets()
    {
        using var rt = TestRuntime.Boot(2);
        var order = new List<string>();
        var tasklet = rt.CreateTasklet(_ => order.Add("tasklet"), "t");
        var items = Enumerable.Range(0, 25).Select(i => new WorkStruct(_ => order.Add($"bh{i}"), $"bh{i}")).ToArray();
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                tasklet.Schedule();
                foreach (var item in items)
                {
                    Assert.True(rt.SystemBhWq.Queue(item));
                }
                Assert.Empty(order);
            }
        });
        foreach (var item in items)
        {
            item.FlushWork();
        }
        Wait.Until(() => tasklet.RunCount == 1, "the tasklet to run");
        // The TASKLET softirq runs the bh pool first, at most BH_WORKER_RESTARTS (10) items or 2 ms per pass,
        // then the tasklets; the rest of the items after the re-raise. All of them in queueing order.
        Assert.Equal(items.Select((_, i) => $"bh{i}"), order.Where(o => o != "tasklet"));
        Assert.Equal(26, order.Count);
        Assert.InRange(order.IndexOf("tasklet"), 1, 10);
    }

    [Fact]
    public void Bh_work_from_a_thread_of_no_cpu_runs_on_some_cpu_in_softirq_context()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0;
        var item = new WorkStruct(_ =>
        {
            Assert.True(CpuContext.InServingSoftirq);
            Interlocked.Increment(ref runs);
        }, "foreign-bh");
        for (int i = 0; i < 1000; i++)
        {
            rt.SystemBhWq.Queue(item);
            if ((i & 63) == 0)
            {
                item.FlushWork();
            }
        }
        item.FlushWork();
        Assert.InRange(Volatile.Read(ref runs), 1, 1000);
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void Bh_work_may_not_sleep()
    {
        using var rt = TestRuntime.Boot(1);
        Exception? caught = null;
        var item = new WorkStruct(_ =>
        {
            try
            {
                Delay.Msleep(1);
            }
            catch (InvalidOperationException e)
            {
                caught = e;
            }
        }, "sleepy-bh");
        rt.SystemBhWq.Queue(item);
        item.FlushWork();
        Assert.NotNull(caught);
        Assert.Contains("sleeping function called from invalid context", caught!.Message, StringComparison.Ordinal);
        Assert.Contains("softirq context", caught.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(WorkqueueFlags.Bh | WorkqueueFlags.Unbound)]
    [InlineData(WorkqueueFlags.Bh | WorkqueueFlags.MemReclaim)]
    [InlineData(WorkqueueFlags.Bh | WorkqueueFlags.CpuIntensive)]
    [InlineData(WorkqueueFlags.Bh | WorkqueueFlags.Freezable)]
    public void Bad_flags_with_bh_are_refused(WorkqueueFlags flags)
    {
        using var rt = TestRuntime.Boot(1);
        var e = Assert.Throws<ArgumentException>(() => rt.AllocWorkqueue("bad-bh", flags));
        Assert.Contains("WQ_BH", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bh_with_a_max_active_is_refused()
    {
        using var rt = TestRuntime.Boot(1);
        var e = Assert.Throws<ArgumentException>(() => rt.AllocWorkqueue("bad-bh", WorkqueueFlags.Bh, maxActive: 4));
        Assert.Contains("max_active", e.Message, StringComparison.Ordinal);
        using var ok = rt.AllocWorkqueue("good-bh", WorkqueueFlags.Bh | WorkqueueFlags.HighPri);
        Assert.True(ok.IsBh);
    }
}
