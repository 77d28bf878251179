using DeferRuntime.Cpus;
using DeferRuntime.Locking;

namespace DeferRuntime.Tests.Locking;

public class SpinlockTests : ValidatedTest
{
    [Fact]
    public void Mutual_exclusion_from_threads_of_no_cpu()
    {
        var spin = new KernelSpinlock("test.spin.plain");
        int inside = 0, violations = 0;
        long total = 0;
        int per = Stress.Scale(50_000, 1_000_000);
        var threads = Enumerable.Range(0, 4).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < per; n++)
            {
                using var _ = spin.Enter();
                if (Interlocked.Increment(ref inside) != 1)
                {
                    Interlocked.Increment(ref violations);
                }
                total++; // plain increment: only exclusion keeps it exact
                Interlocked.Decrement(ref inside);
            }
        }, $"spinner/{i}")).ToList();
        threads.ForEach(t => t.Join());
        Assert.Equal(0, violations);
        Assert.Equal(4L * per, total);
        Assert.False(spin.IsLocked);
    }

    [Fact]
    public void Bh_and_irqsave_variants_exclude_softirqs_hard_irqs_and_other_cpus()
    {
        using var rt = TestRuntime.Boot(2);
        var spin = new KernelSpinlock("test.spin.shared-with-irq");
        long total = 0, violations = 0;
        int inside = 0;
        void Critical()
        {
            if (Interlocked.Increment(ref inside) != 1)
            {
                Interlocked.Increment(ref violations);
            }
            total++;
            Interlocked.Decrement(ref inside);
        }
        var tasklets = new[] { rt.CreateTasklet(_ => { using var scope = spin.EnterIrqSave(); Critical(); }, "t0"), rt.CreateTasklet(_ => { using var scope = spin.EnterIrqSave(); Critical(); }, "t1") };
        var csds = new[] { new CallSingleData(_ => { using var scope = spin.Enter(); Critical(); }), new CallSingleData(_ => { using var scope = spin.Enter(); Critical(); }) };
        int per = Stress.Scale(20_000, 400_000);
        long taskletRuns = 0, ipis = 0;
        var workers = Enumerable.Range(0, 2).Select(cpu => Guarded.Start(() =>
        {
            using var binding = rt.Cpus[cpu].BindCurrentThread();
            for (int n = 0; n < per; n++)
            {
                using (spin.EnterIrqSave())
                {
                    Critical();
                }
                if ((n & 7) == 0)
                {
                    tasklets[cpu].Schedule();
                    if (!csds[cpu].IsBusy && rt.SmpCallFunctionSingleAsync(cpu, csds[cpu]))
                    {
                        Interlocked.Increment(ref ipis);
                    }
                }
            }
        }, $"worker/{cpu}")).ToList();
        workers.ForEach(w => w.Join());
        rt.Dispose();
        taskletRuns = tasklets.Sum(t => t.RunCount);
        Assert.Equal(0, violations);
        Assert.Equal((2L * per) + taskletRuns + Interlocked.Read(ref ipis), total);
    }

    [Fact]
    public void Holding_it_is_atomic_context_and_variants_take_the_gates()
    {
        using var rt = TestRuntime.Boot(1);
        var spin = new KernelSpinlock("test.spin.context");
        rt.Bound(0, () =>
        {
            using (spin.Enter())
            {
                Assert.True(CpuContext.InAtomic);
                Assert.False(CpuContext.InInterrupt);
                Assert.True(spin.IsLocked);
            }
            Assert.False(CpuContext.InAtomic);
            using (spin.EnterBh())
            {
                Assert.True(CpuContext.InSoftirq);
            }
            using (spin.EnterIrq())
            {
                Assert.True(CpuContext.IrqsDisabled);
            }
            var flags = spin.LockIrqSave();
            Assert.True(CpuContext.IrqsDisabled);
            spin.UnlockIrqRestore(flags);
            Assert.False(CpuContext.IrqsDisabled);
            Assert.Equal(0, CpuContext.PreemptCountValue);
        });
        var e = Assert.Throws<InvalidOperationException>(() => spin.LockIrqSave());
        Assert.Contains("belongs to no CPU", e.Message, StringComparison.Ordinal);
        Assert.False(spin.IsLocked);
    }

    [Fact]
    public void Trylock_variants_take_only_a_free_lock()
    {
        using var rt = TestRuntime.Boot(1);
        var spin = new KernelSpinlock("test.spin.try");
        Assert.True(spin.TryLock());
        Guarded.Run(() => Assert.False(spin.TryLock()), "other");
        spin.Unlock();
        rt.Bound(0, () =>
        {
            Assert.True(spin.TryLockBh());
            spin.UnlockBh();
            Assert.True(spin.TryLockIrqSave(out var flags));
            spin.UnlockIrqRestore(flags);
            Assert.True(spin.TryLockIrq());
            spin.UnlockIrq();
            spin.Lock();
            Guarded.Run(() => Assert.False(spin.TryLock()), "other");
            spin.Unlock();
            Assert.Equal(0, CpuContext.PreemptCountValue);
            Assert.False(CpuContext.IrqsDisabled);
        });
    }

    [Fact]
    public void Unlock_by_a_thread_that_does_not_hold_it_is_refused()
    {
        var spin = new KernelSpinlock("test.spin.owner", new LockValidator()); // deliberate misuse: a private validator
        Assert.Contains("does not hold it", Assert.Throws<InvalidOperationException>(spin.Unlock).Message, StringComparison.Ordinal);
        spin.Lock();
        Guarded.Run(() => Assert.Throws<InvalidOperationException>(spin.Unlock), "intruder");
        Assert.True(spin.IsLocked);
        spin.Unlock();
    }
}

[Collection(RunsAlone.Name)]
public class SpinlockFairnessTests : ValidatedTest
{
    [Fact]
    public void Fifo_fairness_keeps_per_thread_counts_within_two_times()
    {
        var spin = new KernelSpinlock("test.spin.fair");
        // One contender per core: with more, who gets the core (the OS scheduler), not who gets the
        // lock, decides the counts.
        int threads = Math.Max(2, Environment.ProcessorCount);
        var counts = new long[threads];
        long total = 0;
        long target = Stress.Scale(200_000, 4_000_000);
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(i => Guarded.Start(() =>
        {
            start.SignalAndWait(Wait.Ceiling);
            while (true)
            {
                spin.Lock();
                bool done = total >= target;
                if (!done)
                {
                    total++;
                    counts[i]++;
                }
                spin.Unlock();
                if (done)
                {
                    return;
                }
            }
        }, $"fair/{i}")).ToList();
        workers.ForEach(w => w.Join());
        Assert.Equal(target, counts.Sum());
        Assert.True(counts.Max() <= 2 * counts.Min(), $"per-thread acquisitions {string.Join(", ", counts)}: max/2 > min (locktorture's '???')");
    }
}
