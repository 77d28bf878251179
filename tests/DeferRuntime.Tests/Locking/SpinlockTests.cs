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
public class SpinlockFairnessTests : ValidatedTest
{
    [Fact]
    public void Bounded_stealing_lets_a_waiter_be_overtaken_about_MaxOvertakes_times_per_wait()
    {
        var spin = new KernelSpinlock("test.spin.fair");
        // One contender per core: with more, who gets the core (the OS scheduler), not who gets the
        // lock, decides what a waiter sees.
        int threads = Math.Max(2, Environment.ProcessorCount);
        long target = Stress.Scale(4_000_000, 20_000_000);
        var counts = new long[threads];
        var waits = new long[threads];
        var longWaits = new long[threads];
        var worstWait = new long[threads];
        long total = 0, handOvers = 0;
        int last = -1;
        // The bound the lock promises a waiter that runs: MaxOvertakes steals once it is the queue head,
        // plus the few that land while its hand-off request travels and one per other thread. A waiter
        // the OS deschedules is overtaken until it runs again (by design, see KernelSpinlock), which on a
        // loaded machine is a few waits in a thousand; an unfair lock (the releasing thread re-takes it
        // while its line is still in cache) overtakes nearly every wait thousands of times.
        long bound = 2 * KernelSpinlock.MaxOvertakes + threads;
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(i => Guarded.Start(() =>
        {
            start.SignalAndWait(Wait.Ceiling);
            while (true)
            {
                long before = Volatile.Read(ref total);
                spin.Lock();
                bool done = total >= target;
                if (!done)
                {
                    long overtaken = total - before;
                    if (overtaken > 0)
                    {
                        waits[i]++;
                        longWaits[i] += overtaken > bound ? 1 : 0;
                        worstWait[i] = Math.Max(worstWait[i], overtaken);
                    }
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
        string detail = $"per-thread acquisitions {string.Join(", ", counts)}, {handOvers} hand-overs, " +
            $"waits overtaken {string.Join(", ", waits)} (over {bound} times: {string.Join(", ", longWaits)}; worst {string.Join(", ", worstWait)})";
        Assert.True(handOvers >= threads, $"{detail}: the lock never changed hands");
        Assert.All(counts, c => Assert.True(c > 0, $"{detail}: a contender never got the lock"));
        // At least 99% of the waits in which anyone got ahead stayed within the bound, on every thread.
        for (int i = 0; i < threads; i++)
        {
            Assert.True(longWaits[i] * 100 <= waits[i], $"{detail}: thread {i} was overtaken more than {bound} times in over 1% of its waits");
        }
    }
}
