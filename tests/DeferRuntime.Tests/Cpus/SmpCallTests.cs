using DeferRuntime.Cpus;

namespace DeferRuntime.Tests.Cpus;

public class SmpCallTests
{
    [Fact]
    public void Calls_run_on_the_target_cpu_in_hard_irq_context()
    {
        using var rt = TestRuntime.Boot(2);
        for (int cpu = 0; cpu < 2; cpu++)
        {
            ContextSnapshot? seen = null;
            rt.SmpCallFunctionSingle(cpu, () => seen = ContextSnapshot.Take());
            Assert.Equal(cpu, seen!.CpuId);
            Assert.True(seen.InIrq);
            Assert.Equal($"cpu/{cpu}", seen.Thread);
        }
        Assert.Equal(1, rt.Cpus[0].IpiCallCount);
        Assert.Equal(1, rt.Cpus[1].IpiCallCount);
    }

    [Fact]
    public void Every_async_call_from_many_threads_runs_once()
    {
        using var rt = TestRuntime.Boot(2);
        int perThread = Stress.Scale(2_000, 50_000);
        var counts = new long[2];
        var threads = Enumerable.Range(0, 4).Select(t => Guarded.Start(() =>
        {
            var csds = new[]
            {
                new CallSingleData(_ => Interlocked.Increment(ref counts[0])),
                new CallSingleData(_ => Interlocked.Increment(ref counts[1])),
            };
            for (int i = 0; i < perThread; i++)
            {
                int cpu = i & 1;
                Wait.Until(() => !csds[cpu].IsBusy, "the csd to be free");
                Assert.True(rt.SmpCallFunctionSingleAsync(cpu, csds[cpu]));
            }
        }, $"caller/{t}")).ToList();
        threads.ForEach(t => t.Join());
        rt.Dispose();
        Assert.Equal(2L * perThread, counts[0]);
        Assert.Equal(2L * perThread, counts[1]);
        Assert.Equal(counts[0], rt.Cpus[0].IpiCallCount);
        Assert.Equal(counts[1], rt.Cpus[1].IpiCallCount);
    }

    [Fact]
    public void A_call_to_the_own_cpu_runs_at_once_with_interrupts_disabled()
    {
        using var rt = TestRuntime.Boot(2);
        rt.Bound(1, () =>
        {
            bool ran = false, irqsOff = false;
            rt.SmpCallFunctionSingle(1, () => { ran = true; irqsOff = CpuContext.IrqsDisabled; });
            Assert.True(ran);
            Assert.True(irqsOff);
            Assert.False(CpuContext.IrqsDisabled);
        });
    }

    [Fact]
    public void Waiting_calls_rethrow_and_bad_targets_are_refused()
    {
        using var rt = TestRuntime.Boot(2);
        var e = Assert.Throws<InvalidOperationException>(() => rt.SmpCallFunctionSingle(1, () => throw new FormatException("bad")));
        Assert.IsType<FormatException>(e.InnerException);
        Assert.Equal(1, rt.Faults.Count);
        Assert.Contains("IPI call function", rt.Faults.Recent[0].Source, StringComparison.Ordinal);

        var range = Assert.Throws<ArgumentOutOfRangeException>(() => rt.SmpCallFunctionSingle(2, () => { }));
        Assert.Contains("CPUs 0 to 1", range.Message, StringComparison.Ordinal);

        Exception? nested = null;
        rt.OnCpu(0, () => nested = Record.Exception(() => rt.SmpCallFunctionSingle(1, () => { }, wait: true)));
        Assert.Contains("can deadlock", nested!.Message, StringComparison.Ordinal);
    }
}
