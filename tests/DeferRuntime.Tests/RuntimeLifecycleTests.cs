using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Tests;

public class RuntimeLifecycleTests
{
    [Fact]
    public void Shutdown_runs_everything_accepted_including_chained_work()
    {
        int iterations = Stress.Scale(5, 50);
        for (int round = 0; round < iterations; round++)
        {
            var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
            const int count = 2_000;
            var ran = new int[count];
            var chainedRan = new int[count];
            var chained = new Tasklet[count];
            var tasklets = new Tasklet[count];
            for (int i = 0; i < count; i++)
            {
                int n = i;
                chained[i] = rt.CreateTasklet(_ => Interlocked.Increment(ref chainedRan[n]), $"chained{n}");
                tasklets[i] = rt.CreateTasklet(_ =>
                {
                    Interlocked.Increment(ref ran[n]);
                    chained[n].HiSchedule(); // accepted from inside the runtime while it drains
                }, $"t{n}");
            }
            var producers = Enumerable.Range(0, 2).Select(p => Guarded.Start(() =>
            {
                for (int i = p; i < count; i += 2)
                {
                    tasklets[i].Schedule();
                }
            }, $"producer/{p}")).ToList();
            producers.ForEach(p => p.Join());
            rt.Dispose();

            Assert.All(ran, r => Assert.Equal(1, r));
            Assert.All(chainedRan, r => Assert.Equal(1, r));
            rt.Dispose(); // twice: harmless
        }
    }

    [Fact]
    public void Calls_after_shutdown_fail_clearly()
    {
        var rt = TestRuntime.Boot(1);
        rt.OpenSoftirq(SoftirqVector.NetRx, () => { });
        var tasklet = rt.CreateTasklet(_ => { }, "late");
        rt.Dispose();
        Assert.True(rt.IsShutDown);

        foreach (var call in new Action[]
        {
            tasklet.Schedule,
            tasklet.HiSchedule,
            () => rt.RaiseSoftirq(SoftirqVector.NetRx),
            () => rt.OpenSoftirq(SoftirqVector.Block, () => { }),
            () => rt.CreateTasklet(_ => { }),
            () => rt.SmpCallFunctionSingle(0, () => { }),
            () => rt.Cpus[0].BindCurrentThread(),
        })
        {
            var e = Assert.Throws<ObjectDisposedException>(call);
            Assert.Contains("shut down", e.Message, StringComparison.Ordinal);
        }
        Assert.False(tasklet.IsScheduled, "a refused schedule leaves no SCHED bit behind");
    }

    [Fact]
    public void Shutdown_reports_work_it_could_not_run()
    {
        var rt = TestRuntime.Boot(1, o => o.ShutdownTimeout = TimeSpan.FromMilliseconds(200));
        var stuck = rt.CreateTasklet(_ => { }, "left-disabled");
        stuck.Disable();
        stuck.Schedule();
        var e = Assert.Throws<TimeoutException>(rt.Dispose);
        Assert.Contains("'left-disabled' (disabled)", e.Message, StringComparison.Ordinal);
        rt.Dispose();
    }

    [Fact]
    public void Shutdown_from_a_runtime_thread_is_refused()
    {
        using var rt = TestRuntime.Boot(1);
        Exception? seen = null;
        rt.OnCpu(0, () => seen = Record.Exception(rt.Dispose));
        Assert.Contains("from one of its own threads", seen!.Message, StringComparison.Ordinal);
        Assert.False(rt.IsShutDown);
    }

    [Fact]
    public void A_throwing_handler_is_reported_and_the_cpu_goes_on()
    {
        using var rt = TestRuntime.Boot(2);
        var faults = new List<FaultRecord>();
        rt.Faults.Faulted += (_, f) => { lock (faults) { faults.Add(f); } };
        long good = 0;
        int calls = 0;
        rt.OpenSoftirq(SoftirqVector.NetRx, () =>
        {
            if (Interlocked.Increment(ref calls) % 2 == 1)
            {
                throw new InvalidDataException("corrupt frame");
            }
            Interlocked.Increment(ref good);
        });
        var tasklet = rt.CreateTasklet(_ => throw new ArgumentException("bad tasklet"), "faulty");

        for (int i = 0; i < 10; i++)
        {
            rt.OnCpu(i & 1, () => rt.RaiseSoftirq(SoftirqVector.NetRx));
            Wait.Until(() => Volatile.Read(ref calls) == i + 1, "the handler");
        }
        tasklet.Schedule();
        Wait.Until(() => tasklet.RunCount == 1, "the faulty tasklet");
        Wait.Until(() => rt.Faults.Count == 6, "six reports");

        Assert.Equal(5, Interlocked.Read(ref good));
        Assert.Equal(5, rt.Faults.Recent.Count(f => f.Source == "softirq NET_RX" && f.Exception is InvalidDataException));
        var t = Assert.Single(rt.Faults.Recent, f => f.Source == "tasklet 'faulty'");
        Assert.IsType<ArgumentException>(t.Exception);
        lock (faults)
        {
            Assert.Equal(6, faults.Count);
        }
        Assert.Null(rt.Panic);
    }

    [Fact]
    public void A_handler_that_leaves_bh_or_irqs_disabled_is_reported_and_repaired()
    {
        using var rt = TestRuntime.Boot(1);
        var leaky = rt.CreateTasklet(_ => { CpuContext.LocalBhDisable(); CpuContext.LocalIrqDisable(); }, "leaky");
        var after = rt.CreateTasklet(_ => { }, "after");
        leaky.Schedule();
        Wait.Until(() => leaky.RunCount == 1, "the leaky tasklet");
        after.Schedule();
        Wait.Until(() => after.RunCount == 1, "a tasklet after it");
        Assert.Equal(2, rt.Faults.Count);
        Assert.Contains(rt.Faults.Recent, f => f.Exception.Message.Contains("unbalanced local_irq_save/restore", StringComparison.Ordinal));
        Assert.Contains(rt.Faults.Recent, f => f.Exception.Message.Contains("preempt_count", StringComparison.Ordinal));
        // The CPU still takes interrupts: its irq gate was given back.
        rt.OnCpu(0, () => { });
    }

    [Fact]
    public void Panic_on_oops_halts_the_runtime()
    {
        var rt = TestRuntime.Boot(2, o => o.PanicOnOops = true);
        var tasklet = rt.CreateTasklet(_ => throw new InvalidOperationException("BUG"), "fatal");
        tasklet.Schedule();
        Wait.Until(() => rt.Panic is not null, "the panic");
        var e = Assert.Throws<KernelPanicException>(tasklet.Schedule);
        Assert.Contains("Kernel panic - not syncing", e.Message, StringComparison.Ordinal);
        Assert.Contains("tasklet 'fatal'", e.Message, StringComparison.Ordinal);
        Assert.Throws<KernelPanicException>(() => rt.CreateTasklet(_ => { }));
        rt.Dispose();
        rt.Dispose();
    }

    [Fact]
    public void Options_are_validated_at_boot()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.Boot(new RuntimeOptions { CpuCount = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.Boot(new RuntimeOptions { CpuNice = -21 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.Boot(new RuntimeOptions { PollWindow = TimeSpan.FromSeconds(-1) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.Boot(new RuntimeOptions { IdlePolicy = (IdlePolicy)7 }));
    }

    [Fact]
    public void Two_runtimes_in_one_process_keep_to_their_own_threads()
    {
        using var a = TestRuntime.Boot(1);
        using var b = TestRuntime.Boot(1);
        VirtualCpu? ranOnA = null, ranOnB = null;
        var ta = a.CreateTasklet(_ => ranOnA = CpuContext.CurrentCpu, "a");
        var tb = b.CreateTasklet(_ => ranOnB = CpuContext.CurrentCpu, "b");
        // Scheduled from inside runtime b: ta is foreign there, so it still goes to runtime a.
        b.OnCpu(0, () => { ta.Schedule(); tb.Schedule(); });
        Wait.Until(() => ta.RunCount == 1 && tb.RunCount == 1, "both tasklets");
        Assert.Same(a, ranOnA!.Runtime);
        Assert.Same(b, ranOnB!.Runtime);
    }

    [Theory]
    [InlineData(IdlePolicy.Poll)]
    [InlineData(IdlePolicy.Hybrid)]
    [InlineData(IdlePolicy.Halt)]
    public void Every_idle_policy_wakes_for_work(IdlePolicy policy)
    {
        using var rt = TestRuntime.Boot(2, o => o.IdlePolicy = policy);
        var tasklet = rt.CreateTasklet(_ => { }, "wake");
        for (int i = 1; i <= 200; i++)
        {
            tasklet.Schedule();
            Wait.Until(() => tasklet.RunCount == i, "the run");
        }
        if (policy == IdlePolicy.Poll)
        {
            Assert.All(rt.Cpus, c => Assert.Equal(0, c.ParkCount));
        }
    }
}

public class RuntimeBindingShutdownTests
{
    [Fact]
    public void Shutdown_waits_for_bound_threads_and_then_refuses_new_bindings()
    {
        var rt = TestRuntime.Boot(2);
        long runs = 0;
        var tasklet = rt.CreateTasklet(_ => Interlocked.Increment(ref runs), "from-bound");
        using var bound = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var worker = Guarded.Start(() =>
        {
            var binding = rt.Cpus[1].BindCurrentThread();
            bound.Set();
            Wait.For(release, "the test to start shutdown");
            tasklet.Schedule(); // still accepted: the binding holds shutdown off
            binding.Dispose();
        }, "app-bound");
        Wait.For(bound, "the binding");
        var disposer = Guarded.Start(rt.Dispose, "disposer");
        Wait.Until(() => rt.IsShutDown, "shutdown to begin");
        Assert.Throws<ObjectDisposedException>(() => rt.Cpus[0].BindCurrentThread());
        release.Set();
        worker.Join();
        disposer.Join();
        Assert.Equal(1, Interlocked.Read(ref runs));
    }

    [Fact]
    public void Shutdown_names_a_binding_that_is_never_released()
    {
        var rt = TestRuntime.Boot(1, o => o.ShutdownTimeout = TimeSpan.FromMilliseconds(200));
        using var release = new ManualResetEventSlim();
        using var bound = new ManualResetEventSlim();
        var worker = Guarded.Start(() =>
        {
            using var binding = rt.Cpus[0].BindCurrentThread();
            bound.Set();
            Wait.For(release, "the end of the test");
        }, "forgotten");
        Wait.For(bound, "the binding");
        var e = Assert.Throws<TimeoutException>(rt.Dispose);
        Assert.Contains("'forgotten' on CPU 0", e.Message, StringComparison.Ordinal);
        release.Set();
        worker.Join();
    }
}

public class RuntimeReviewRegressionTests
{
    [Fact]
    public void Tasklet_disable_is_refused_in_atomic_context()
    {
        using var rt = TestRuntime.Boot(2);
        var tasklet = rt.CreateTasklet(_ => { }, "t");
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalIrqSave())
            {
                var e = Assert.Throws<InvalidOperationException>(tasklet.Disable);
                Assert.Contains("atomic context", e.Message, StringComparison.Ordinal);
                Assert.Contains("DisableNoSync", e.Message, StringComparison.Ordinal);
            }
        });
        Exception? fromIrq = null;
        rt.OnCpu(1, () => fromIrq = Record.Exception(tasklet.Disable));
        Assert.Contains("atomic context", fromIrq!.Message, StringComparison.Ordinal);
        Assert.False(tasklet.IsDisabled, "a refused disable leaves the count alone");
    }

    [Fact]
    public void Waits_on_a_panicked_runtime_throw_instead_of_hanging()
    {
        var rt = TestRuntime.Boot(1, o => o.PanicOnOops = true);
        var parked = rt.CreateTasklet(_ => { }, "parked");
        parked.Disable();
        parked.Schedule(); // stays SCHED: Kill would wait for it forever
        rt.CreateTasklet(_ => throw new InvalidOperationException("BUG"), "fatal").Schedule();
        Wait.Until(() => rt.Panic is not null, "the panic");
        Assert.Throws<KernelPanicException>(parked.Kill);
        Assert.Throws<KernelPanicException>(() => rt.SmpCallFunctionSingle(0, () => { }));
        rt.Dispose();
    }

    [Fact]
    public void Concurrent_disposes_both_return_after_the_threads_are_gone()
    {
        var rt = TestRuntime.Boot(2);
        var tasklets = Enumerable.Range(0, 500).Select(i => rt.CreateTasklet(_ => Thread.SpinWait(100), $"t{i}")).ToArray();
        foreach (var t in tasklets)
        {
            t.Schedule();
        }
        var a = Guarded.Start(rt.Dispose, "dispose-a");
        var b = Guarded.Start(rt.Dispose, "dispose-b");
        a.Join();
        b.Join();
        Assert.All(tasklets, t => Assert.Equal(1, t.RunCount));
        Assert.Throws<ObjectDisposedException>(() => tasklets[0].Schedule());
    }
}
