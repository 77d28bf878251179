using DeferRuntime.Cpus;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Tests.Tasklets;

public class TaskletTests
{
    [Fact]
    public void Never_runs_on_two_cpus_at_once_under_hammering()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        int inside = 0, violations = 0;
        long runs = 0;
        var cpusSeen = new int[2];
        var tasklet = rt.CreateTasklet(_ =>
        {
            if (Interlocked.Increment(ref inside) != 1)
            {
                Interlocked.Increment(ref violations);
            }
            Interlocked.Increment(ref cpusSeen[CpuContext.CurrentCpuId]);
            Thread.SpinWait(200); // widen the window in which a second CPU could enter
            Interlocked.Increment(ref runs);
            Interlocked.Decrement(ref inside);
        }, "hammered");

        int perThread = Stress.Scale(20_000, 500_000);
        var hammers = Enumerable.Range(0, 4).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < perThread; n++)
            {
                tasklet.Schedule();
            }
        }, $"hammer/{i}")).ToList();
        // Schedules from inside the runtime too: both CPUs' hard-IRQ contexts.
        int calls = 0;
        for (int n = 0; n < 200; n++)
        {
            rt.SmpCallFunctionSingle(n & 1, () => { tasklet.Schedule(); Interlocked.Increment(ref calls); }, wait: false);
        }
        hammers.ForEach(h => h.Join());
        Wait.Until(() => Volatile.Read(ref calls) == 200 && !tasklet.IsScheduled && !tasklet.IsRunning, "every call to have scheduled and the tasklet to go idle");

        Assert.Equal(0, Volatile.Read(ref violations));
        Assert.Equal(runs, tasklet.RunCount);
        Assert.InRange(runs, 1, (perThread * 4) + 200);

        // Under hammering the schedules coalesce into as few runs as the CPUs allow (two, on a starved
        // machine), so where they ran proves nothing. One schedule at a time from a thread of no CPU,
        // each run to completion, must alternate under round-robin placement.
        Array.Clear(cpusSeen);
        for (int n = 1; n <= 4; n++)
        {
            long before = tasklet.RunCount;
            tasklet.Schedule();
            Wait.Until(() => tasklet.RunCount > before && !tasklet.IsScheduled && !tasklet.IsRunning, "the single schedule's run");
        }
        Assert.Equal(0, Volatile.Read(ref violations));
        Assert.True(cpusSeen[0] == 2 && cpusSeen[1] == 2, $"round-robin placement should alternate the CPUs: {cpusSeen[0]} / {cpusSeen[1]}");
    }

    [Fact]
    public void Many_schedules_before_it_runs_give_one_run()
    {
        using var rt = TestRuntime.Boot(2);
        var tasklet = rt.CreateTasklet(_ => { }, "coalesced");
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                for (int i = 0; i < 100; i++)
                {
                    tasklet.Schedule();
                }
                Assert.True(tasklet.IsScheduled);
                Assert.Equal(0, tasklet.RunCount);
            }
            // local_bh_enable() ran the TASKLET softirq in this thread.
            Assert.Equal(1, tasklet.RunCount);
            Assert.False(tasklet.IsScheduled);
        });
    }

    [Fact]
    public void Schedule_while_running_gives_exactly_one_more_run()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int calls = 0;
        var tasklet = rt.CreateTasklet(_ =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                entered.Set();
                Wait.For(release, "the test to release the first run");
            }
        }, "rescheduled");

        tasklet.Schedule();
        Wait.For(entered, "the first run to start");
        Assert.True(tasklet.IsRunning);
        Assert.False(tasklet.IsScheduled, "SCHED is cleared before the callback runs");
        for (int i = 0; i < 10; i++)
        {
            tasklet.Schedule(); // first sets SCHED again, the rest are no-ops
        }
        Assert.True(tasklet.IsScheduled);
        release.Set();
        Wait.Until(() => !tasklet.IsScheduled && !tasklet.IsRunning, "the second run to finish");
        Assert.Equal(2, Volatile.Read(ref calls));
        Assert.Equal(2, tasklet.RunCount);
    }

    [Fact]
    public void Rescheduling_from_its_own_callback_is_allowed()
    {
        using var rt = TestRuntime.Boot(2);
        int remaining = 50;
        var tasklet = rt.CreateTasklet(t =>
        {
            if (Interlocked.Decrement(ref remaining) > 0)
            {
                t.Schedule();
            }
        }, "self");
        tasklet.Schedule();
        Wait.Until(() => Volatile.Read(ref remaining) == 0 && !tasklet.IsScheduled && !tasklet.IsRunning, "50 self-scheduled runs");
        Assert.Equal(50, tasklet.RunCount);
    }

    [Fact]
    public void Disable_nesting_keeps_it_queued_until_the_last_enable()
    {
        using var rt = TestRuntime.Boot(2);
        var tasklet = rt.CreateTasklet(_ => { }, "nested");
        var probe = rt.CreateTasklet(_ => { }, "probe");

        tasklet.Disable();
        tasklet.Disable();
        // Both scheduled from CPU 0's hard-IRQ context, so both are on CPU 0's list, tasklet first.
        rt.OnCpu(0, () => { tasklet.Schedule(); probe.Schedule(); });
        Wait.Until(() => probe.RunCount == 1, "the probe queued behind the disabled tasklet");
        Assert.Equal(0, tasklet.RunCount);
        Assert.True(tasklet.IsScheduled, "a disabled tasklet stays scheduled");

        tasklet.Enable(); // count 2 -> 1: still disabled
        rt.OnCpu(0, probe.Schedule);
        Wait.Until(() => probe.RunCount == 2, "a second pass over CPU 0's list");
        Assert.Equal(0, tasklet.RunCount);

        tasklet.Enable(); // count 1 -> 0: runs
        Wait.Until(() => tasklet.RunCount == 1, "the tasklet to run after the last enable");
        Assert.False(tasklet.IsScheduled);
        var ex = Assert.Throws<InvalidOperationException>(tasklet.Enable);
        Assert.Contains("without a matching tasklet_disable()", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Disable_waits_for_a_running_instance_and_DisableNoSync_does_not()
    {
        using var rt = TestRuntime.Boot(2);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        long sequence = 0, callbackFinished = 0, disableReturned = 0;
        Exception? fromCallback = null;
        var tasklet = rt.CreateTasklet(t =>
        {
            try
            {
                t.Disable(); // waiting for itself would hang: refused (a callback is atomic context)
            }
            catch (InvalidOperationException e)
            {
                fromCallback = e;
            }
            t.DisableNoSync(); // does not wait: returns at once even though we are running
            t.Enable();
            entered.Set();
            Wait.For(release, "the test to release the callback");
            callbackFinished = Interlocked.Increment(ref sequence);
        }, "waited-for");

        tasklet.Schedule();
        Wait.For(entered, "the callback to start");
        var disabler = Guarded.Start(() =>
        {
            tasklet.Disable();
            disableReturned = Interlocked.Increment(ref sequence);
        }, "disabler");
        Wait.Until(() => tasklet.IsDisabled, "Disable() to take the count");
        release.Set();
        disabler.Join();

        Assert.True(disableReturned > callbackFinished, "tasklet_disable() returned before the running instance finished");
        Assert.NotNull(fromCallback);
        Assert.Contains("atomic context", fromCallback!.Message, StringComparison.Ordinal);
        tasklet.Enable();
    }

    [Fact]
    public void Kill_stops_a_self_rescheduling_tasklet()
    {
        int iterations = Stress.Scale(20, 200);
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        var probes = new[] { rt.CreateTasklet(_ => { }, "probe0"), rt.CreateTasklet(_ => { }, "probe1") };
        for (int i = 0; i < iterations; i++)
        {
            var tasklet = rt.CreateTasklet(t => t.Schedule(), "forever");
            tasklet.Schedule();
            Wait.Until(() => tasklet.RunCount > 3, "the tasklet to loop");
            tasklet.Kill();
            Assert.False(tasklet.IsScheduled);
            Assert.False(tasklet.IsRunning);
            long after = tasklet.RunCount;

            // A full pass over both CPUs' tasklet lists: a surviving instance would run again.
            for (int cpu = 0; cpu < 2; cpu++)
            {
                long before = probes[cpu].RunCount;
                int c = cpu;
                rt.OnCpu(c, probes[c].Schedule);
                Wait.Until(() => probes[c].RunCount > before, "the probe pass");
            }
            Assert.Equal(after, tasklet.RunCount);
        }
    }

    [Fact]
    public void Kill_runs_a_pending_instance_first_and_refuses_atomic_context()
    {
        using var rt = TestRuntime.Boot(2);
        var tasklet = rt.CreateTasklet(_ => { }, "pending");
        Exception? fromIrq = null;
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                tasklet.Schedule();
                fromIrq = Record.Exception(tasklet.Kill); // bh disabled: atomic
            }
        });
        Assert.IsType<InvalidOperationException>(fromIrq);
        Assert.Contains("atomic context", fromIrq!.Message, StringComparison.Ordinal);
        Assert.Equal(1, tasklet.RunCount);

        rt.OnCpu(1, () => fromIrq = Record.Exception(tasklet.Kill));
        Assert.Contains("atomic context", fromIrq!.Message, StringComparison.Ordinal);

        // Pending when killed from a thread of no CPU: the pending instance runs, then it is dead.
        rt.Bound(0, () =>
        {
            CpuContext.LocalBhDisable();
            tasklet.Schedule();
            var killer = Guarded.Start(tasklet.Kill, "killer");
            Wait.Until(() => tasklet.IsScheduled, "still scheduled behind the bh gate");
            CpuContext.LocalBhEnable(); // runs it; Kill can finish
            killer.Join();
        });
        Assert.Equal(2, tasklet.RunCount);
        Assert.False(tasklet.IsScheduled);
    }

    [Fact]
    public void Hi_tasklets_run_before_normal_ones_and_in_fifo_order()
    {
        using var rt = TestRuntime.Boot(2);
        var order = new List<string>();
        Tasklet Make(string name) => rt.CreateTasklet(t => { lock (order) { order.Add(t.Name); } }, name);
        var n1 = Make("n1");
        var n2 = Make("n2");
        var h1 = Make("h1");
        var h2 = Make("h2");
        rt.OnCpu(1, () => { n1.Schedule(); n2.Schedule(); h1.HiSchedule(); h2.HiSchedule(); });
        Wait.Until(() => { lock (order) { return order.Count == 4; } }, "four runs");
        Assert.Equal(["h1", "h2", "n1", "n2"], order);
    }

    [Fact]
    public void Runs_on_the_cpu_that_scheduled_it_and_in_softirq_context()
    {
        using var rt = TestRuntime.Boot(2);
        ContextSnapshot? seen = null;
        var tasklet = rt.CreateTasklet(_ => seen = ContextSnapshot.Take(), "where");
        for (int cpu = 0; cpu < 2; cpu++)
        {
            long before = tasklet.RunCount;
            rt.OnCpu(cpu, tasklet.Schedule);
            Wait.Until(() => tasklet.RunCount > before, "the run");
            Assert.Equal(cpu, seen!.CpuId);
            Assert.True(seen.InServingSoftirq);
            Assert.True(seen.InInterrupt);
            Assert.True(seen.InAtomic);
            Assert.False(seen.InIrq);
            Assert.False(seen.IrqsDisabled);
        }
    }

    [Fact]
    public void Foreign_schedules_follow_round_robin_placement()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        int cpu = -1;
        var tasklet = rt.CreateTasklet(_ => cpu = CpuContext.CurrentCpuId, "placed");
        var seen = new List<int>();
        for (int i = 0; i < 6; i++)
        {
            tasklet.Schedule();
            Wait.Until(() => tasklet.RunCount == i + 1, "the run");
            seen.Add(cpu);
        }
        for (int i = 1; i < seen.Count; i++)
        {
            Assert.NotEqual(seen[i - 1], seen[i]);
        }
    }
}
