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
    public void Queued_waiters_get_the_lock_in_arrival_order()
    {
        var spin = new KernelSpinlock("test.spin.queue-order");
        var order = new List<int>();
        spin.Lock();
        var waiters = new List<Guarded>();
        for (int i = 0; i < 3; i++)
        {
            int id = i;
            waiters.Add(Guarded.Start(() =>
            {
                spin.Lock();
                order.Add(id); // under the lock
                spin.Unlock();
            }, $"waiter/{i}"));
            // Queued before the next one starts: only the head looks at the word, so arrival order is service order.
            Wait.Until(() => spin.QueuedWaiters == id + 1, $"waiter {id} to queue");
        }
        spin.Unlock();
        waiters.ForEach(w => w.Join());
        Assert.Equal([0, 1, 2], order);
        Assert.Equal(0, spin.QueuedWaiters);
        Assert.False(spin.IsLocked);
    }

    [Fact]
    public void A_holder_that_keeps_retaking_the_lock_is_refused_once_the_head_waiter_asks_for_hand_off()
    {
        var spin = new KernelSpinlock("test.spin.handoff");
        using var waiterHolds = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        spin.Lock();
        var waiter = Guarded.Start(() =>
        {
            spin.Lock();
            waiterHolds.Set();
            Wait.For(release, "the test to let the waiter release");
            spin.Unlock();
        }, "waiter");
        Wait.Until(() => spin.QueuedWaiters == 1, "the waiter to queue");

        // Release and re-take with no gap, as a hot loop does: the head waiter leaves a lock that is
        // free for an instant to its holder, so only its hand-off request can end this loop (a plain
        // test-and-set lock would let it run for ever). Trylock fails once the lock is reserved for the
        // waiter (or the waiter already has it).
        long retakes = 0;
        while (true)
        {
            spin.Unlock();
            if (!spin.TryLock())
            {
                break;
            }
            retakes++;
        }
        Wait.For(waiterHolds, $"the waiter to get the lock after {retakes} re-takes");
        Assert.True(spin.IsLocked);
        Assert.False(spin.HandOffPending);
        release.Set();
        waiter.Join();
        Assert.False(spin.IsLocked);
        Assert.True(spin.TryLock());
        spin.Unlock();
    }

    [Fact]
    public void No_waiter_starves_among_more_threads_than_cores()
    {
        // Hogs re-take the lock back to back; the queue plus hand-off must still serve every thread.
        var spin = new KernelSpinlock("test.spin.no-starvation");
        int threads = (2 * Environment.ProcessorCount) + 1;
        int per = Stress.Scale(20_000, 400_000);
        var counts = new long[threads];
        var workers = Enumerable.Range(0, threads).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < per; n++)
            {
                spin.Lock();
                counts[i]++;
                spin.Unlock();
            }
        }, $"hog/{i}")).ToList();
        workers.ForEach(w => w.Join());
        Assert.All(counts, c => Assert.Equal(per, c));
        Assert.Equal(0, spin.QueuedWaiters);
        Assert.False(spin.HandOffPending);
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
public partial class SpinlockFairnessTests : ValidatedTest
{
    [Fact]
    public void A_running_waiter_is_overtaken_about_MaxOvertakes_times_per_wait()
    {
        var spin = new KernelSpinlock("test.spin.fair");
        // One contender per core: with more, who gets the core (the OS scheduler), not who gets the
        // lock, decides what a waiter sees.
        int threads = Math.Max(2, Environment.ProcessorCount);
        long target = Stress.Scale(4_000_000, 20_000_000);
        var counts = new long[threads];
        var runningWaits = new long[threads];
        var switchedWaits = new long[threads];
        var longWaits = new long[threads];
        var worstWait = new long[threads];
        long total = 0, handOvers = 0;
        int last = -1;
        // The lock's promise is to a waiter that runs: MaxOvertakes steals once it is the queue head,
        // plus the few that land while its hand-off request travels, plus one per other thread. A waiter
        // the OS switches out is overtaken until it runs again (by design, see KernelSpinlock), and
        // how often that happens is the machine's business, so those waits are counted apart: the
        // thread's context-switch counters (getrusage) say which waits ran throughout. An unfair lock
        // (the releasing thread re-takes it while its line is still in its cache) overtakes a running
        // waiter thousands of times.
        long bound = 2 * KernelSpinlock.MaxOvertakes + threads;
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(i => Guarded.Start(() =>
        {
            start.SignalAndWait(Wait.Ceiling);
            while (true)
            {
                if (!spin.TryLock())
                {
                    long before = Volatile.Read(ref total);
                    long switches = ContextSwitches();
                    spin.Lock();
                    long overtaken = total - before;
                    if (ContextSwitches() != switches)
                    {
                        switchedWaits[i]++;
                    }
                    else if (overtaken > 0)
                    {
                        runningWaits[i]++;
                        longWaits[i] += overtaken > bound ? 1 : 0;
                        worstWait[i] = Math.Max(worstWait[i], overtaken);
                    }
                }
                bool done = total >= target;
                if (!done)
                {
                    total++;
                    counts[i]++;
                    if (last != i)
                    {
                        last = i;
                        handOvers++;
                    }
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
        string detail = $"per-thread acquisitions {string.Join(", ", counts)}, {handOvers} hand-overs; " +
            $"overtaken while running {string.Join(", ", runningWaits)} waits (over {bound} times: {string.Join(", ", longWaits)}; " +
            $"worst {string.Join(", ", worstWait)}), switched out {string.Join(", ", switchedWaits)} waits";
        Assert.True(handOvers >= threads, $"{detail}: the lock never changed hands");
        Assert.All(counts, c => Assert.True(c > 0, $"{detail}: a contender never got the lock"));
        // At least 99% of a running waiter's waits stay within the bound (a vCPU the hypervisor steals
        // looks like a running thread, hence not 100%).
        for (int i = 0; i < threads; i++)
        {
            Assert.True(longWaits[i] * 100 <= runningWaits[i], $"{detail}: thread {i}, running, was overtaken more than {bound} times in over 1% of its waits");
        }
    }

    /// <summary>Voluntary plus involuntary context switches of the calling thread (getrusage(RUSAGE_THREAD)); 0 where unsupported.</summary>
    private static long ContextSwitches()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }
        Span<long> usage = stackalloc long[18]; // struct rusage on 64-bit Linux: two timevals, then 14 longs
        return GetRusage(RusageThread, ref usage[0]) == 0 ? usage[16] + usage[17] : 0; // ru_nvcsw + ru_nivcsw
    }

    private const int RusageThread = 1;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRusage(int who, ref long usage);
}
