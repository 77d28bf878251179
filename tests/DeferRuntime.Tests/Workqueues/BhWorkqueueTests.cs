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

    /// <summary>
    /// Linux 6.10+: cancel_work_sync() of an item last queued on a bh workqueue may be called from
    /// non-hardirq atomic context and busy-waits for the running instance (__flush_work() with
    /// from_cancel on a WORK_OFFQ_BH item). The instance runs on CPU 1 and is held there until the
    /// canceler, atomic on CPU 0, is known to own the item; the cancel must not return before it ends.
    /// Each context failed before with "sleeping function called from invalid context".
    /// </summary>
    [Theory]
    [InlineData("bh disabled")]
    [InlineData("irqs disabled")]
    [InlineData("spinlock held")]
    [InlineData("softirq (tasklet)")]
    [InlineData("bh work item")]
    public void Cancel_work_sync_of_a_bh_item_from_atomic_context_busy_waits_for_its_run(string context)
    {
        using var rt = TestRuntime.Boot(2);
        int started = 0, release = 0, done = 0;
        var x = new WorkStruct(_ =>
        {
            Interlocked.Increment(ref started);
            Wait.Until(() => Volatile.Read(ref release) != 0, "the test to release the bh item");
            Volatile.Write(ref done, 1);
        }, "bh-target");
        rt.Bound(1, () => Assert.True(rt.SystemBhWq.Queue(x)));
        Wait.Until(() => Volatile.Read(ref started) == 1, "the bh item to run on CPU 1");

        int result = -1, doneAtReturn = -1;
        Exception? failure = null;
        void Cancel()
        {
            try
            {
                result = x.CancelWorkSync() ? 1 : 0;
                doneAtReturn = Volatile.Read(ref done);
            }
            catch (Exception e)
            {
                failure = e;
            }
        }
        var spinlock = new KernelSpinlock("cancel-under-lock");
        var canceler = context switch
        {
            "bh disabled" => Guarded.Start(() => rt.Bound(0, () =>
            {
                using (CpuContext.LocalBhDisable())
                {
                    Cancel();
                }
            }), "canceler"),
            "irqs disabled" => Guarded.Start(() => rt.Bound(0, () =>
            {
                using (CpuContext.LocalIrqSave())
                {
                    Cancel();
                }
            }), "canceler"),
            "spinlock held" => Guarded.Start(() => rt.Bound(0, () =>
            {
                using (spinlock.Enter())
                {
                    Cancel();
                }
            }), "canceler"),
            "softirq (tasklet)" => Guarded.Start(() =>
            {
                var tasklet = rt.CreateTasklet(_ => Cancel(), "canceler");
                rt.Bound(0, tasklet.Schedule);
                Wait.Until(() => tasklet.RunCount == 1, "the canceling tasklet to run");
            }, "canceler"),
            _ => Guarded.Start(() =>
            {
                var y = new WorkStruct(_ => Cancel(), "bh-canceler");
                rt.Bound(0, () => Assert.True(rt.SystemBhWq.Queue(y)));
                y.FlushWork();
            }, "canceler"),
        };
        try
        {
            // The canceler owns the item (and so waits for the run) or has failed: no timing decides.
            Wait.Until(() => Volatile.Read(ref x.SyncCancelers) != 0 || Volatile.Read(ref failure) is not null, "the canceler to own the item");
        }
        finally
        {
            Volatile.Write(ref release, 1);
            canceler.Join();
        }
        Assert.Null(failure);
        Assert.Equal(0, result); // it was running, not pending
        Assert.Equal(1, doneAtReturn);
        Assert.Equal(WorkBusy.None, x.Busy);
        Assert.Equal(0, rt.Faults.Count);
    }

    /// <summary>
    /// From hard IRQ the kernel WARNs (__cancel_work_sync(): WARN_ON_ONCE(in_hardirq())): the instance may
    /// be the softirq the interrupt preempted. Refused here, before the item is touched. An item that was
    /// never queued on a bh workqueue is refused in any atomic context (might_sleep()), as before.
    /// </summary>
    [Fact]
    public void Cancel_work_sync_of_a_bh_item_from_hard_irq_is_refused_naming_the_rule()
    {
        using var rt = TestRuntime.Boot(2);
        int runs = 0;
        var x = new WorkStruct(_ => Interlocked.Increment(ref runs), "bh-pending");
        var bhHeld = BhGateHolder.Hold(rt, 0); // x stays pending on CPU 0 meanwhile
        Exception? fromIrq = null;
        try
        {
            rt.Bound(0, () => Assert.True(rt.SystemBhWq.Queue(x)));
            rt.OnCpu(1, () => fromIrq = Record.Exception(() => x.CancelWorkSync()));
            Assert.True(x.IsPending); // untouched
        }
        finally
        {
            bhHeld.Dispose();
        }
        var e = Assert.IsType<InvalidOperationException>(fromIrq);
        Assert.Contains("hard-IRQ context", e.Message, StringComparison.Ordinal);
        Assert.Contains("WARN_ON_ONCE(in_hardirq())", e.Message, StringComparison.Ordinal);
        x.FlushWork();
        Assert.Equal(1, Volatile.Read(ref runs));

        var neverOnBh = new WorkStruct(_ => { }, "never-on-bh");
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                Assert.Contains("sleeping function called from invalid context", Assert.Throws<InvalidOperationException>(() => neverOnBh.CancelWorkSync()).Message, StringComparison.Ordinal);
            }
        });
    }

    /// <summary>
    /// What one kernel CPU cannot do and our threads can: a thread of CPU 0 with interrupts disabled
    /// cancels a bh item that runs in CPU 0's softirq on another thread, and the item then disables
    /// interrupts, waiting for the irq gate the canceler holds. Spinning would hang both; the canceler is
    /// told why instead, and once it lets go the item finishes.
    /// </summary>
    [Fact]
    public void A_task_disabling_interrupts_waits_for_its_cpus_softirq_so_a_bh_item_taking_the_irq_gate_cannot_wedge_it()
    {
        // Before the task gate, a bound thread could hold CPU 0's irq gate while CPU 0's softirq ran this
        // item on cpu/0, and the item's local_irq_save() then waited for that thread for ever (the
        // runtime refused the cancel to avoid the hang). On one kernel CPU an irqs-off section and that
        // CPU's softirq never overlap: local_irq_save() in a task now keeps the CPU's softirqs out,
        // waiting for a running one to finish first.
        using var rt = TestRuntime.Boot(1);
        int started = 0, done = 0;
        ThreadContext? cancelerCtx = null;
        var x = new WorkStruct(_ =>
        {
            Interlocked.Increment(ref started);
            Wait.Until(() => Volatile.Read(ref cancelerCtx) is { } c && ReferenceEquals(Volatile.Read(ref c.WaitingForGate), rt.Cpus[0].BhGate),
                "the canceler to wait for CPU 0's softirq before disabling interrupts");
            using (CpuContext.LocalIrqSave())
            {
                Volatile.Write(ref done, 1);
            }
        }, "bh-irqsave");
        rt.Bound(0, () => Assert.True(rt.SystemBhWq.Queue(x)));
        rt.Bound(0, () =>
        {
            Wait.Until(() => Volatile.Read(ref started) == 1, "the bh item to run");
            Volatile.Write(ref cancelerCtx, ThreadContext.Current);
            using (CpuContext.LocalIrqSave())
            {
                Assert.Equal(1, Volatile.Read(ref done)); // the softirq finished before interrupts went off here
                Assert.False(x.CancelWorkSync());
            }
        });
        Assert.Equal(WorkBusy.None, x.Busy);
        Assert.False(x.IsPending);
    }
}
