using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Platform;
using DeferRuntime.Tasklets;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Cpus;

/// <summary>
/// One thing at a time per virtual CPU: the tasks of CPU N (bound threads, kworkers, irq threads,
/// ksoftirqd) are separate OS threads, yet their non-preemptible sections never overlap; a task with
/// interrupts off keeps the CPU's softirqs out; hard IRQs and softirqs still preempt a task that only
/// disabled preemption. Sections yield the OS core on purpose (Thread.Yield inside them), so that without
/// the exclusion the other task would get in: these tests fail on the old model, not by luck.
/// </summary>
public class TaskExclusivityTests
{
    public enum SectionKind
    {
        Preempt,
        Spinlock,
        Bh,
        IrqSave,
    }

    /// <summary>Counts overlaps of sections that must be exclusive, with a plain (non-atomic) counter inside.</summary>
    private sealed class Exclusive
    {
        public int Inside;       // A
        public long Violations;  // A
        public long Counter;     // plain: protected only by the exclusion under test

        public void Body(int i)
        {
            if (Interlocked.Increment(ref Inside) != 1)
            {
                Interlocked.Increment(ref Violations);
            }
            long c = Counter;
            if ((i & 7) == 0)
            {
                Thread.Yield(); // let the OS run the CPU's other tasks now: they must still stay out
            }
            Counter = c + 1;
            Interlocked.Decrement(ref Inside);
        }
    }

    private static void Section(SectionKind kind, KernelSpinlock spinlock, Exclusive shared, int i)
    {
        switch (kind)
        {
            case SectionKind.Preempt:
                CpuContext.PreemptDisable();
                shared.Body(i);
                CpuContext.PreemptEnable();
                break;
            case SectionKind.Spinlock:
                using (spinlock.Enter())
                {
                    shared.Body(i);
                }
                break;
            case SectionKind.Bh:
                using (CpuContext.LocalBhDisable())
                {
                    shared.Body(i);
                }
                break;
            case SectionKind.IrqSave:
                using (CpuContext.LocalIrqSave())
                {
                    shared.Body(i);
                }
                break;
        }
    }

    [Theory]
    [InlineData(SectionKind.Preempt, SectionKind.Preempt)]
    [InlineData(SectionKind.Preempt, SectionKind.Spinlock)]
    [InlineData(SectionKind.Spinlock, SectionKind.Bh)]
    [InlineData(SectionKind.Preempt, SectionKind.IrqSave)]
    public void Non_preemptible_sections_of_a_bound_thread_and_a_kworker_of_one_cpu_never_overlap(SectionKind task, SectionKind worker)
    {
        using var rt = TestRuntime.Boot(2);
        int iterations = Stress.Scale(3_000, 50_000);
        var shared = new Exclusive();
        // Two different locks: only the CPU's task exclusion keeps their holders apart.
        var lockA = new KernelSpinlock("exclusivity.a");
        var lockB = new KernelSpinlock("exclusivity.b");
        var workerDone = new ManualResetEventSlim();
        int go = 0;
        var work = new WorkStruct(_ =>
        {
            // Start together with the bound thread, so the two really run side by side.
            Wait.Until(() => Volatile.Read(ref go) != 0, "the bound thread to start");
            for (int i = 0; i < iterations; i++)
            {
                Section(worker, lockB, shared, i);
            }
            workerDone.Set();
        }, "exclusivity-worker");
        Assert.True(rt.SystemWq.QueueOn(0, work));
        rt.Bound(0, () =>
        {
            Volatile.Write(ref go, 1);
            for (int i = 0; i < iterations; i++)
            {
                Section(task, lockA, shared, i);
            }
        });
        Wait.For(workerDone, "the kworker's sections");
        Assert.Equal(0, Interlocked.Read(ref shared.Violations));
        Assert.Equal(2L * iterations, shared.Counter);
        Assert.True(rt.Cpus[0].TaskGateHandOverCount > 0, "the two tasks took turns");
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void Two_bound_threads_of_one_cpu_in_preempt_disable_never_overlap_while_other_cpus_tasks_run_freely()
    {
        using var rt = TestRuntime.Boot(2);
        int iterations = Stress.Scale(3_000, 50_000);
        var cpu0 = new Exclusive();
        using var start = new Barrier(2);
        var a = Guarded.Start(() => BoundLoop(rt, 0, cpu0, iterations, start), "a");
        var b = Guarded.Start(() => BoundLoop(rt, 0, cpu0, iterations, start), "b");
        a.Join();
        b.Join();
        Assert.Equal(0, Interlocked.Read(ref cpu0.Violations));
        Assert.Equal(2L * iterations, cpu0.Counter);

        // Tasks of different CPUs are not excluded from each other: CPU 1's task gets into its section
        // while CPU 0's task holds one.
        var inside0 = new ManualResetEventSlim();
        var release0 = new ManualResetEventSlim();
        var holder = Guarded.Start(() =>
        {
            using var binding = rt.Cpus[0].BindCurrentThread();
            CpuContext.PreemptDisable();
            inside0.Set();
            Wait.For(release0, "the test to release CPU 0's task");
            CpuContext.PreemptEnable();
        }, "cpu0-holder");
        Wait.For(inside0, "CPU 0's task to disable preemption");
        rt.Bound(1, () =>
        {
            CpuContext.PreemptDisable();
            CpuContext.PreemptEnable();
        });
        release0.Set();
        holder.Join();
    }

    private static void BoundLoop(Runtime rt, int cpu, Exclusive shared, int iterations, Barrier start)
    {
        using var binding = rt.Cpus[cpu].BindCurrentThread();
        Assert.True(start.SignalAndWait(Wait.Ceiling), "the other thread to bind");
        for (int i = 0; i < iterations; i++)
        {
            CpuContext.PreemptDisable();
            shared.Body(i);
            CpuContext.PreemptEnable();
        }
    }

    [Fact]
    public void Hard_irqs_and_softirqs_still_preempt_a_task_that_only_disabled_preemption()
    {
        using var rt = TestRuntime.Boot(2);
        var ranIrq = new ManualResetEventSlim();
        var ranBh = new ManualResetEventSlim();
        ContextSnapshot? irq = null;
        var bhWork = new WorkStruct(_ => ranBh.Set(), "bh-while-preempt-off");
        var inside = new ManualResetEventSlim();
        var done = new ManualResetEventSlim();
        var task = Guarded.Start(() =>
        {
            using var binding = rt.Cpus[0].BindCurrentThread();
            CpuContext.PreemptDisable();
            inside.Set();
            Wait.For(done, "the test to see both run");
            CpuContext.PreemptEnable();
        }, "preempt-off task");
        Wait.For(inside, "the task to disable preemption");
        // From a thread of no CPU: an IPI (hard IRQ) and a bh work item (TASKLET softirq) to CPU 0.
        rt.SmpCallFunctionSingle(0, () => { irq = ContextSnapshot.Take(); ranIrq.Set(); }, wait: true);
        Assert.True(rt.SystemBhWq.QueueOn(0, bhWork));
        Wait.For(ranBh, "the softirq to run on CPU 0 while its task has preemption disabled");
        Assert.True(ranIrq.IsSet);
        Assert.Equal("cpu/0", irq!.Thread);
        done.Set();
        task.Join();
    }

    [Fact]
    public void A_task_with_interrupts_off_keeps_its_cpus_softirqs_out_and_they_run_at_the_restore()
    {
        using var rt = TestRuntime.Boot(2);
        int ran = 0, ranWhileOff = 0, irqsOff = 0;
        var bhWork = new WorkStruct(_ =>
        {
            if (Volatile.Read(ref irqsOff) != 0)
            {
                Interlocked.Increment(ref ranWhileOff);
            }
            Interlocked.Increment(ref ran);
        }, "bh-vs-irqs-off");
        var tasklet = rt.CreateTasklet(_ =>
        {
            if (Volatile.Read(ref irqsOff) != 0)
            {
                Interlocked.Increment(ref ranWhileOff);
            }
            Interlocked.Increment(ref ran);
        }, "tasklet-vs-irqs-off");
        rt.Bound(0, () =>
        {
            var flags = CpuContext.LocalIrqSave();
            Volatile.Write(ref irqsOff, 1);
            // From elsewhere (a thread of no CPU): a softirq for CPU 0; then from this task itself. Each
            // kicks cpu/0, which finds its softirqs kept out by this task and goes idle with them pending.
            long parks = rt.Cpus[0].ParkCount;
            Guarded.Run(() => Assert.True(rt.SystemBhWq.QueueOn(0, bhWork)), "foreign queuer");
            Wait.Until(() => rt.Cpus[0].ParkCount > parks, "cpu/0 to look and go idle");
            parks = rt.Cpus[0].ParkCount;
            tasklet.Schedule();
            Wait.Until(() => rt.Cpus[0].ParkCount > parks, "cpu/0 to look again and go idle");
            Assert.Equal(0, Volatile.Read(ref ran));
            Volatile.Write(ref irqsOff, 0);
            CpuContext.LocalIrqRestore(flags);
        });
        Wait.Until(() => Volatile.Read(ref ran) == 2, "both to run after local_irq_restore()");
        Assert.Equal(0, Volatile.Read(ref ranWhileOff));
    }

    /// <summary>
    /// The pattern that wedged a CPU for good: process context takes L with spin_lock_irqsave(); a tasklet
    /// takes spin_lock(L), then local_irq_save() (or spin_lock_irqsave(M)). Legal on a kernel CPU, where the
    /// two never overlap. Hammered here from a bound thread and from a kworker of the same CPU.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void Irqsave_in_a_task_against_a_tasklet_taking_the_same_lock_then_irqsave_never_wedges_the_cpu(bool fromKworker, bool nestedLock)
    {
        using var rt = TestRuntime.Boot(2);
        int iterations = Stress.Scale(4_000, 100_000);
        var l = new KernelSpinlock("wedge.L");
        var m = new KernelSpinlock("wedge.M");
        long runs = 0, overlaps = 0;
        int taskIrqsOff = 0;
        var tasklet = rt.CreateTasklet(_ =>
        {
            l.Lock();
            if (nestedLock)
            {
                var f = m.LockIrqSave();
                CountOverlap();
                m.UnlockIrqRestore(f);
            }
            else
            {
                using (CpuContext.LocalIrqSave())
                {
                    CountOverlap();
                }
            }
            l.Unlock();
            Interlocked.Increment(ref runs);
        }, "wedge-tasklet");

        void CountOverlap()
        {
            if (Volatile.Read(ref taskIrqsOff) != 0)
            {
                Interlocked.Increment(ref overlaps);
            }
        }

        void Hammer()
        {
            for (int i = 0; i < iterations; i++)
            {
                tasklet.Schedule();
                var flags = l.LockIrqSave();
                Volatile.Write(ref taskIrqsOff, 1);
                if ((i & 15) == 0)
                {
                    Thread.Yield();
                }
                Volatile.Write(ref taskIrqsOff, 0);
                l.UnlockIrqRestore(flags);
            }
        }

        if (fromKworker)
        {
            var done = new ManualResetEventSlim();
            Assert.True(rt.SystemWq.QueueOn(0, new WorkStruct(_ => { Hammer(); done.Set(); }, "wedge-hammer")));
            Wait.For(done, "the kworker's hammer (a hang here is the wedge)");
        }
        else
        {
            rt.Bound(0, Hammer);
        }
        // The last schedule runs: the CPU still takes softirqs.
        long before = Interlocked.Read(ref runs);
        rt.Bound(0, tasklet.Schedule);
        Wait.Until(() => Interlocked.Read(ref runs) > before, "a tasklet run after the hammer");
        Assert.Equal(0, Interlocked.Read(ref overlaps));
        Assert.Equal(0, rt.Faults.Count);
        var report = rt.Shutdown(TimeSpan.FromSeconds(10));
        Assert.True(report.Completed, report.Abandoned);
    }

    [Fact]
    public void A_work_item_that_leaks_bh_disable_is_reported_and_what_it_scheduled_meanwhile_still_runs()
    {
        using var rt = TestRuntime.Boot(2);
        var ran = new ManualResetEventSlim();
        var tasklet = rt.CreateTasklet(_ => ran.Set(), "scheduled-in-leaked-section");
        var leaked = new ManualResetEventSlim();
        var work = new WorkStruct(w =>
        {
            CpuContext.LocalBhDisable(); // never enabled: a bug the runtime repairs
            tasklet.Schedule();              // the holder's own list: it runs at the (missing) local_bh_enable()
            leaked.Set();
        }, "leaks-bh");
        Assert.True(rt.SystemWq.QueueOn(0, work));
        Wait.For(leaked, "the leaking item");
        // Nothing else kicks CPU 0: the repair itself must deliver the tasklet.
        Wait.For(ran, "the tasklet scheduled inside the leaked section");
        Wait.Until(() => rt.Faults.Count >= 1, "the oops report");
        Assert.Contains(rt.Faults.Recent, f => f.Source.Contains("leaks-bh", StringComparison.Ordinal) && f.Exception.Message.Contains("preempt_count", StringComparison.Ordinal));

        // The kworker's CPU is usable afterwards: another task of CPU 0 gets its sections.
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                CpuContext.PreemptDisable();
                CpuContext.PreemptEnable();
            }
        });
    }

    [Fact]
    public void A_work_item_that_leaks_interrupts_off_is_reported_and_the_softirq_it_raised_runs()
    {
        using var rt = TestRuntime.Boot(2);
        var ran = new ManualResetEventSlim();
        var tasklet = rt.CreateTasklet(_ => ran.Set(), "scheduled-with-irqs-leaked-off");
        var work = new WorkStruct(_ =>
        {
            CpuContext.LocalIrqDisable(); // never enabled
            tasklet.Schedule();
        }, "leaks-irqs");
        Assert.True(rt.SystemWq.QueueOn(0, work));
        Wait.For(ran, "the tasklet scheduled while interrupts were leaked off");
        Wait.Until(() => rt.Faults.Count >= 1, "the oops report");
        Assert.Contains(rt.Faults.Recent, f => f.Source.Contains("leaks-irqs", StringComparison.Ordinal) && f.Exception.Message.Contains("interrupts disabled", StringComparison.Ordinal));
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalIrqSave())
            {
                Assert.True(CpuContext.IrqsDisabled);
            }
        });
    }

    [Fact]
    public void BindCurrentThread_pins_the_thread_to_its_cpus_core_and_unbinding_restores_its_affinity()
    {
        using var rt = TestRuntime.Boot(2);
        var before = ThreadPlacement.CurrentThreadCores();
        Guarded.Run(() =>
        {
            var original = ThreadPlacement.CurrentThreadCores();
            var binding = rt.Cpus[1].BindCurrentThread();
            try
            {
                if (OperatingSystem.IsLinux())
                {
                    Assert.True(binding.Placement.Pinned, binding.Placement.PinError);
                    Assert.Equal([rt.Cpus[1].Core], ThreadPlacement.CurrentThreadCores()!);
                }
                else
                {
                    Assert.Equal(binding.Placement.Pinned, binding.Placement.PinError is null);
                }
                Assert.Equal(rt.Cpus[1].Core, binding.Placement.Core);
            }
            finally
            {
                binding.Dispose();
            }
            Assert.Equal(original, ThreadPlacement.CurrentThreadCores());
        }, "pinned-binding");
        Assert.Equal(before, ThreadPlacement.CurrentThreadCores());

        using var unpinned = TestRuntime.Boot(1, o => o.Pinning = false);
        Guarded.Run(() =>
        {
            using var binding = unpinned.Cpus[0].BindCurrentThread();
            Assert.Null(binding.Placement.Core);
            Assert.False(binding.Placement.Pinned);
        }, "unpinned-binding");
    }
}

public class TaskGateShutdownTests
{
    [Fact]
    public void A_task_waiting_for_a_gate_held_by_a_stuck_handler_gives_up_once_shutdown_does()
    {
        var rt = TestRuntime.Boot(1);
        int release = 0;
        var inHandler = new ManualResetEventSlim();
        // A hard-IRQ function (an IPI) that does not return: cpu/0 holds its irq gate meanwhile.
        rt.SmpCallFunctionSingle(0, () =>
        {
            inHandler.Set();
            while (Volatile.Read(ref release) == 0)
            {
                Thread.SpinWait(64);
            }
        }, wait: false);
        Wait.For(inHandler, "the IPI function to run");
        Exception? caught = null;
        var waiting = new ManualResetEventSlim();
        var task = Guarded.Start(() =>
        {
            var binding = rt.Cpus[0].BindCurrentThread();
            waiting.Set();
            caught = Record.Exception(() => CpuContext.LocalIrqSave());
            Assert.Equal(0, CpuContext.PreemptCountValue);
            Assert.False(CpuContext.IrqsDisabled);
            binding.Dispose(); // the failed save left nothing held: the binding can go
        }, "irq-gate waiter");
        Wait.For(waiting, "the task to bind");
        try
        {
            var report = rt.Shutdown(TimeSpan.FromMilliseconds(250));
            Assert.False(report.Completed);
            task.Join();
            Assert.IsType<ObjectDisposedException>(caught);
        }
        finally
        {
            Volatile.Write(ref release, 1);
        }
    }
}
