using System.Collections.Concurrent;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Tests.Softirqs;

public class SoftirqTests
{
    [Fact]
    public void Self_raising_softirq_hands_over_to_ksoftirqd_after_the_restart_limit_while_other_vectors_run()
    {
        using var rt = TestRuntime.Boot(2);
        var stop = 0;
        var threads = new ConcurrentQueue<string>();
        long blockRuns = 0;
        rt.OpenSoftirq(SoftirqVector.NetRx, () =>
        {
            threads.Enqueue(Thread.CurrentThread.Name!);
            if (Volatile.Read(ref stop) == 0)
            {
                rt.RaiseSoftirq(SoftirqVector.NetRx); // in softirq context: only marks it pending
            }
        });
        rt.OpenSoftirq(SoftirqVector.Block, () => Interlocked.Increment(ref blockRuns));
        var tasklet = rt.CreateTasklet(_ => { }, "alongside");

        rt.OnCpu(0, () => rt.RaiseSoftirq(SoftirqVector.NetRx));
        Wait.Until(() => threads.Contains("ksoftirqd/0"), "ksoftirqd/0 to take over NET_RX");
        Assert.True(rt.Cpus[0].KsoftirqdWakeupCount >= 1);

        // Before the first ksoftirqd run, cpu/0 ran it at most MAX_SOFTIRQ_RESTART (10) times in a row.
        int onCpuBeforeHandover = threads.TakeWhile(t => t == "cpu/0").Count();
        Assert.InRange(onCpuBeforeHandover, 1, 10);

        // Other vectors and tasklets on the same CPU keep running while NET_RX loops in ksoftirqd.
        for (int i = 0; i < 20; i++)
        {
            long blocks = Interlocked.Read(ref blockRuns);
            long tasklets = tasklet.RunCount;
            rt.OnCpu(0, () => { rt.RaiseSoftirq(SoftirqVector.Block); tasklet.Schedule(); });
            Wait.Until(() => Interlocked.Read(ref blockRuns) > blocks && tasklet.RunCount > tasklets, "BLOCK and TASKLET to run beside the loop");
        }

        Volatile.Write(ref stop, 1);
        Wait.Until(() => !rt.Cpus[0].Ksoftirqd.IsRunning, "ksoftirqd/0 to go back to sleep");
        Assert.All(threads, t => Assert.Contains(t, new[] { "cpu/0", "ksoftirqd/0" }));
    }

    [Fact]
    public void Need_resched_ends_softirq_processing_at_the_first_restart()
    {
        using var rt = TestRuntime.Boot(1);
        var stop = 0;
        var threads = new ConcurrentQueue<string>();
        rt.OpenSoftirq(SoftirqVector.NetRx, () =>
        {
            threads.Enqueue(Thread.CurrentThread.Name!);
            if (threads.Count == 1)
            {
                rt.Cpus[0].SetNeedResched();
            }
            if (Volatile.Read(ref stop) == 0)
            {
                rt.RaiseSoftirq(SoftirqVector.NetRx);
            }
        });
        rt.OnCpu(0, () => rt.RaiseSoftirq(SoftirqVector.NetRx));
        Wait.Until(() => threads.Contains("ksoftirqd/0"), "ksoftirqd/0 to take over");
        Volatile.Write(ref stop, 1);
        Assert.Single(threads.TakeWhile(t => t == "cpu/0"));
    }

    [Fact]
    public void The_same_vector_runs_concurrently_on_two_cpus()
    {
        using var rt = TestRuntime.Boot(2);
        using var barrier = new Barrier(2);
        var met = new ConcurrentBag<int>();
        rt.OpenSoftirq(SoftirqVector.NetRx, () =>
        {
            // Both CPUs must be inside the handler at the same time for this to return true.
            if (barrier.SignalAndWait(Wait.Ceiling))
            {
                met.Add(CpuContext.CurrentCpuId);
            }
        });
        rt.SmpCallFunctionSingle(0, () => rt.RaiseSoftirq(SoftirqVector.NetRx), wait: false);
        rt.SmpCallFunctionSingle(1, () => rt.RaiseSoftirq(SoftirqVector.NetRx), wait: false);
        Wait.Until(() => met.Count == 2, "both CPUs inside NET_RX together");
        Assert.Equal([0, 1], met.Order());
    }

    [Fact]
    public void Bh_disable_holds_softirqs_of_that_cpu_and_bh_enable_runs_them_in_the_caller()
    {
        using var rt = TestRuntime.Boot(2);
        long runs = 0;
        string? ranOn = null;
        ContextSnapshot? context = null;
        rt.OpenSoftirq(SoftirqVector.NetRx, () =>
        {
            Interlocked.Increment(ref runs);
            ranOn = Thread.CurrentThread.Name;
            context = ContextSnapshot.Take();
        });
        rt.Bound(0, () =>
        {
            Thread.CurrentThread.Name ??= "bound/0";
            using (CpuContext.LocalBhDisable())
            {
                Assert.True(CpuContext.InSoftirq);
                Assert.False(CpuContext.InServingSoftirq);
                rt.RaiseSoftirq(SoftirqVector.NetRx);
                // cpu/0 is told as well (an IPI from a thread of no CPU that raises on it); it must
                // leave the softirq pending.
                long parks = rt.Cpus[0].ParkCount;
                Guarded.Run(() => rt.SmpCallFunctionSingle(0, () => rt.RaiseSoftirq(SoftirqVector.NetRx), wait: true), "sender");
                Wait.Until(() => rt.Cpus[0].IpiCallCount > 0 && rt.Cpus[0].ParkCount > parks, "cpu/0 to take the IPI and go idle again");
                Assert.Equal(0, Interlocked.Read(ref runs));
            }
            Assert.Equal(1, Interlocked.Read(ref runs));
            Assert.Equal("bound/0", ranOn);
            Assert.True(context!.InServingSoftirq);
            Assert.False(CpuContext.InSoftirq);
        });
    }

    [Fact]
    public void Per_cpu_counts_add_up_to_the_handler_runs()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        var perCpu = new long[2];
        rt.OpenSoftirq(SoftirqVector.Block, () => Interlocked.Increment(ref perCpu[CpuContext.CurrentCpuId]));
        int raises = Stress.Scale(50_000, 1_000_000);
        var raisers = Enumerable.Range(0, 3).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < raises; n++)
            {
                rt.RaiseSoftirq(SoftirqVector.Block);
            }
        }, $"raiser/{i}")).ToList();
        raisers.ForEach(r => r.Join());
        rt.Dispose(); // drains every accepted raise

        for (int cpu = 0; cpu < 2; cpu++)
        {
            Assert.Equal(perCpu[cpu], rt.Cpus[cpu].GetSoftirqCount(SoftirqVector.Block));
        }
        Assert.InRange(perCpu[0] + perCpu[1], 2, 3L * raises); // raises coalesce while pending
        string table = rt.RenderSoftirqs();
        Assert.Contains("BLOCK:", table, StringComparison.Ordinal);
        Assert.Contains(rt.Cpus[0].GetSoftirqCount(SoftirqVector.Block).ToString(System.Globalization.CultureInfo.InvariantCulture), table, StringComparison.Ordinal);
        Assert.StartsWith("             ", table, StringComparison.Ordinal);
        Assert.Equal(11, table.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public void Raises_on_one_cpu_coalesce_into_one_run()
    {
        using var rt = TestRuntime.Boot(2);
        long runs = 0;
        rt.OpenSoftirq(SoftirqVector.Sched, () => Interlocked.Increment(ref runs));
        rt.Bound(1, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                for (int i = 0; i < 1000; i++)
                {
                    rt.RaiseSoftirq(SoftirqVector.Sched);
                }
            }
        });
        Assert.Equal(1, Interlocked.Read(ref runs));
        Assert.Equal(1, rt.Cpus[1].GetSoftirqCount(SoftirqVector.Sched));
    }

    [Fact]
    public void Vectors_run_lowest_first_within_a_pass()
    {
        using var rt = TestRuntime.Boot(1);
        var order = new ConcurrentQueue<SoftirqVector>();
        // TIMER and HRTIMER belong to the timers subsystem; NET_TX, NET_RX, BLOCK and RCU are free.
        foreach (var v in new[] { SoftirqVector.NetTx, SoftirqVector.NetRx, SoftirqVector.Block, SoftirqVector.Rcu })
        {
            rt.OpenSoftirq(v, () => order.Enqueue(v));
        }
        rt.OnCpu(0, () =>
        {
            rt.RaiseSoftirqIrqOff(SoftirqVector.Rcu);
            rt.RaiseSoftirqIrqOff(SoftirqVector.NetRx);
            rt.RaiseSoftirqIrqOff(SoftirqVector.Block);
            rt.RaiseSoftirqIrqOff(SoftirqVector.NetTx);
        });
        Wait.Until(() => order.Count == 4, "four vectors");
        Assert.Equal([SoftirqVector.NetTx, SoftirqVector.NetRx, SoftirqVector.Block, SoftirqVector.Rcu], order);
    }

    [Fact]
    public void Open_and_raise_are_validated_with_the_kernel_rule()
    {
        using var rt = TestRuntime.Boot(1);
        rt.OpenSoftirq(SoftirqVector.NetRx, () => { });
        var twice = Assert.Throws<InvalidOperationException>(() => rt.OpenSoftirq(SoftirqVector.NetRx, () => { }));
        Assert.Contains("open_softirq(NET_RX)", twice.Message, StringComparison.Ordinal);
        Assert.Contains("already open", twice.Message, StringComparison.Ordinal);

        var tasklets = Assert.Throws<InvalidOperationException>(() => rt.OpenSoftirq(SoftirqVector.Tasklet, () => { }));
        Assert.Contains("TASKLET", tasklets.Message, StringComparison.Ordinal);

        var unopened = Assert.Throws<InvalidOperationException>(() => rt.RaiseSoftirq(SoftirqVector.Block));
        Assert.Contains("never opened", unopened.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => rt.RaiseSoftirq((SoftirqVector)10));
        Assert.Throws<ArgumentNullException>(() => rt.OpenSoftirq(SoftirqVector.Rcu, null!));

        var irqOn = Assert.Throws<InvalidOperationException>(() => rt.RaiseSoftirqIrqOff(SoftirqVector.NetRx));
        Assert.Contains("raise_softirq_irqoff() needs local interrupts disabled", irqOn.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Handler_context_is_serving_softirq_on_its_cpu()
    {
        using var rt = TestRuntime.Boot(2);
        ContextSnapshot? seen = null;
        rt.OpenSoftirq(SoftirqVector.IrqPoll, () => seen = ContextSnapshot.Take());
        rt.OnCpu(1, () => rt.RaiseSoftirq(SoftirqVector.IrqPoll));
        Wait.Until(() => seen is not null, "the handler");
        Assert.Equal(1, seen!.CpuId);
        Assert.True(seen.InServingSoftirq && seen.InSoftirq && seen.InInterrupt && seen.InAtomic);
        Assert.False(seen.InIrq);
        Assert.False(seen.IrqsDisabled);
        Assert.Contains(seen.Thread, new[] { "cpu/1", "ksoftirqd/1" });
    }
}
