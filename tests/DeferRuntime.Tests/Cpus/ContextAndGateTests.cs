using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Tests.Cpus;

public class ContextAndGateTests
{
    [Fact]
    public void Irq_gate_holds_delivery_and_release_delivers()
    {
        using var rt = TestRuntime.Boot(2);
        ContextSnapshot? seen = null;
        var csd = new CallSingleData(_ => seen = ContextSnapshot.Take());
        rt.Bound(0, () =>
        {
            var flags = CpuContext.LocalIrqSave();
            Assert.False(flags.WasDisabled);
            Assert.True(CpuContext.IrqsDisabled);
            Assert.True(CpuContext.InAtomic);

            long parks = rt.Cpus[0].ParkCount;
            Assert.True(rt.SmpCallFunctionSingleAsync(0, csd));
            // cpu/0 is kicked, finds its irq gate held, and parks again with the IPI still pending.
            Wait.Until(() => rt.Cpus[0].ParkCount > parks, "cpu/0 to look and go idle");
            Assert.True(csd.IsBusy);
            Assert.Null(seen);
            Assert.False(rt.SmpCallFunctionSingleAsync(0, csd), "a busy csd is refused (-EBUSY)");

            CpuContext.LocalIrqRestore(flags); // sti with a pending interrupt: cpu/0 is kicked
            Assert.False(CpuContext.IrqsDisabled);
        });
        Wait.Until(() => !csd.IsBusy, "the IPI to be delivered after the release");
        Assert.NotNull(seen);
        Assert.True(seen!.InIrq);
        Assert.True(seen.IrqsDisabled);
        Assert.Equal(0, seen.CpuId);
        Assert.Equal("cpu/0", seen.Thread);
    }

    [Fact]
    public void Irq_save_nests_and_disable_enable_do_not()
    {
        using var rt = TestRuntime.Boot(1);
        rt.Bound(0, () =>
        {
            var outer = CpuContext.LocalIrqSave();
            var inner = CpuContext.LocalIrqSave();
            Assert.True(inner.WasDisabled);
            CpuContext.LocalIrqRestore(inner);
            Assert.True(CpuContext.IrqsDisabled, "restoring the inner flags keeps interrupts disabled");
            CpuContext.LocalIrqRestore(outer);
            Assert.False(CpuContext.IrqsDisabled);

            CpuContext.LocalIrqDisable();
            CpuContext.LocalIrqDisable();
            CpuContext.LocalIrqEnable();
            Assert.False(CpuContext.IrqsDisabled, "local_irq_enable() is not nested");

            using (CpuContext.LocalIrqSave())
            {
                Assert.True(CpuContext.IrqsDisabled);
            }
            Assert.False(CpuContext.IrqsDisabled);
        });
    }

    [Fact]
    public void Hard_irq_context_reports_itself_and_refuses_enabling_interrupts()
    {
        using var rt = TestRuntime.Boot(2);
        ContextSnapshot? seen = null;
        Exception? enable = null, bh = null;
        rt.OnCpu(1, () =>
        {
            seen = ContextSnapshot.Take();
            enable = Record.Exception(CpuContext.LocalIrqEnable);
            bh = Record.Exception(() => CpuContext.LocalBhDisable());
            using (CpuContext.LocalIrqSave())
            {
                // nests inside the handler's own disabled state
            }
        });
        Assert.True(seen!.InIrq && seen.InInterrupt && seen.InAtomic && seen.IrqsDisabled);
        Assert.False(seen.InSoftirq);
        Assert.Equal(1, seen.CpuId);
        Assert.Contains("hard-IRQ context", enable!.Message, StringComparison.Ordinal);
        Assert.Contains("local_bh_disable() in hard-IRQ context", bh!.Message, StringComparison.Ordinal);
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void Threads_of_no_cpu_get_clear_refusals_and_plain_answers()
    {
        using var rt = TestRuntime.Boot(1);
        Assert.False(CpuContext.InIrq);
        Assert.False(CpuContext.InSoftirq);
        Assert.False(CpuContext.InInterrupt);
        Assert.False(CpuContext.InAtomic);
        Assert.False(CpuContext.IrqsDisabled);
        Assert.Equal(-1, CpuContext.CurrentCpuId);
        Assert.Null(CpuContext.CurrentCpu);

        foreach (var call in new Action[]
        {
            () => CpuContext.LocalIrqSave(),
            CpuContext.LocalIrqDisable,
            CpuContext.LocalIrqEnable,
            () => CpuContext.LocalBhDisable(),
            CpuContext.LocalBhEnable,
            CpuContext.PreemptDisable,
            CpuContext.PreemptEnable,
        })
        {
            var e = Assert.Throws<InvalidOperationException>(call);
            Assert.Contains("belongs to no CPU", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Unbalanced_enables_and_wrong_order_are_refused()
    {
        using var rt = TestRuntime.Boot(1);
        rt.Bound(0, () =>
        {
            Assert.Contains("without a matching local_bh_disable()", Assert.Throws<InvalidOperationException>(CpuContext.LocalBhEnable).Message, StringComparison.Ordinal);
            Assert.Contains("without a matching preempt_disable()", Assert.Throws<InvalidOperationException>(CpuContext.PreemptEnable).Message, StringComparison.Ordinal);

            var flags = CpuContext.LocalIrqSave();
            Assert.Contains("with local interrupts disabled", Assert.Throws<InvalidOperationException>(() => CpuContext.LocalBhDisable()).Message, StringComparison.Ordinal);
            CpuContext.LocalIrqRestore(flags);

            CpuContext.LocalBhDisable();
            flags = CpuContext.LocalIrqSave();
            Assert.Contains("local_bh_enable() with local interrupts disabled", Assert.Throws<InvalidOperationException>(CpuContext.LocalBhEnable).Message, StringComparison.Ordinal);
            CpuContext.LocalIrqRestore(flags);
            CpuContext.LocalBhEnable();

            CpuContext.PreemptDisable();
            Assert.True(CpuContext.InAtomic);
            Assert.False(CpuContext.InInterrupt);
            CpuContext.PreemptEnable();
            Assert.False(CpuContext.InAtomic);
        });
    }

    [Fact]
    public void Bh_disable_nests_and_only_the_last_enable_runs_softirqs()
    {
        using var rt = TestRuntime.Boot(1);
        long runs = 0;
        rt.OpenSoftirq(SoftirqVector.NetTx, () => Interlocked.Increment(ref runs));
        rt.Bound(0, () =>
        {
            CpuContext.LocalBhDisable();
            CpuContext.LocalBhDisable();
            rt.RaiseSoftirq(SoftirqVector.NetTx);
            CpuContext.LocalBhEnable();
            Assert.Equal(0, Interlocked.Read(ref runs));
            Assert.True(CpuContext.InSoftirq);
            CpuContext.LocalBhEnable();
            Assert.Equal(1, Interlocked.Read(ref runs));
            Assert.Equal(0, CpuContext.PreemptCountValue);
        });
    }

    [Fact]
    public void Bh_gate_excludes_softirqs_of_that_cpu_from_every_thread()
    {
        // A bound task holds the bh gate of CPU 0 while cpu/0 and ksoftirqd/0 are told to run softirqs;
        // nothing runs on CPU 0 until it lets go, while CPU 1 is unaffected.
        using var rt = TestRuntime.Boot(2);
        var runsOn = new long[2];
        rt.OpenSoftirq(SoftirqVector.Block, () => Interlocked.Increment(ref runsOn[CpuContext.CurrentCpuId]));
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                long parks = rt.Cpus[0].ParkCount;
                // From a thread of no CPU, so cpu/0 itself takes the IPI and reaches irq exit.
                Guarded.Run(() =>
                {
                    rt.SmpCallFunctionSingle(0, () => rt.RaiseSoftirq(SoftirqVector.Block), wait: true);
                    rt.SmpCallFunctionSingle(1, () => rt.RaiseSoftirq(SoftirqVector.Block), wait: true);
                }, "sender");
                Wait.Until(() => Interlocked.Read(ref runsOn[1]) == 1, "CPU 1's softirq");
                Wait.Until(() => rt.Cpus[0].ParkCount > parks, "cpu/0 to go idle with the softirq pending");
                Assert.Equal(0, Interlocked.Read(ref runsOn[0]));
            }
            Assert.Equal(1, Interlocked.Read(ref runsOn[0]));
        });
    }

    [Fact]
    public void Pinned_threads_run_on_their_core()
    {
        using var rt = TestRuntime.Boot(2);
        Assert.Equal(4, rt.Placements.Count);
        Assert.Equal(["cpu/0", "ksoftirqd/0", "cpu/1", "ksoftirqd/1"], rt.Placements.Select(p => p.Thread));
        foreach (var p in rt.Placements)
        {
            Assert.Equal(rt.Cpus[p.Cpu].Core, p.Core);
            Assert.True(p.Pinned || p.PinError is not null, "a refused pin is reported with its reason");
        }
        for (int cpu = 0; cpu < 2; cpu++)
        {
            if (!rt.Placements.First(p => p.Thread == $"cpu/{cpu}").Pinned)
            {
                continue;
            }
            int observed = -1;
            rt.OnCpu(cpu, () => observed = Thread.GetCurrentProcessorId());
            Assert.Equal(rt.Cpus[cpu].Core, observed);
        }
        Assert.Contains("pinned:", rt.RenderPlacements(), StringComparison.Ordinal);
    }

    [Fact]
    public void Unpinned_runtime_reports_pinning_off()
    {
        using var rt = TestRuntime.Boot(2, o => o.Pinning = false);
        Assert.All(rt.Placements, p => { Assert.Null(p.Core); Assert.False(p.Pinned); });
        Assert.Contains("pinned: off", rt.RenderPlacements(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_thread_binds_to_one_cpu_and_unbinds_only_in_process_context()
    {
        using var rt = TestRuntime.Boot(2);
        Guarded.Run(() =>
        {
            var binding = rt.Cpus[1].BindCurrentThread();
            Assert.Equal(1, CpuContext.CurrentCpuId);
            Assert.Contains("already bound to CPU 1", Assert.Throws<InvalidOperationException>(() => rt.Cpus[0].BindCurrentThread()).Message, StringComparison.Ordinal);
            CpuContext.LocalBhDisable();
            Assert.Contains("atomic context", Assert.Throws<InvalidOperationException>(binding.Dispose).Message, StringComparison.Ordinal);
            CpuContext.LocalBhEnable();
            binding.Dispose();
            binding.Dispose();
            Assert.Equal(-1, CpuContext.CurrentCpuId);
        }, "binder");
    }
}
