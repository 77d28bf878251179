using System.Collections.Concurrent;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Softirqs;
using DeferRuntime.Timers;

namespace DeferRuntime.Tests.Timers;

public class TimerListTests
{
    [Fact]
    public void Each_timer_fires_once_never_early_in_timer_softirq_on_the_cpu_it_was_armed_on()
    {
        using var rt = TestRuntime.Boot(2);
        const int perCpu = 40;
        var fired = new int[2 * perCpu];
        var firedOn = new int[2 * perCpu];
        var jiffiesAtFire = new long[2 * perCpu];
        var expires = new long[2 * perCpu];
        var contexts = new ContextSnapshot?[2 * perCpu];
        var timers = new TimerList[2 * perCpu];
        for (int i = 0; i < timers.Length; i++)
        {
            int n = i;
            timers[i] = rt.TimerSetup(_ =>
            {
                jiffiesAtFire[n] = rt.Jiffies;
                firedOn[n] = CpuContext.CurrentCpuId;
                contexts[n] = ContextSnapshot.Take();
                Interlocked.Increment(ref fired[n]);
            }, TimerFlags.Pinned, $"t{n}");
        }

        var rng = new Random(3);
        for (int cpu = 0; cpu < 2; cpu++)
        {
            int first = cpu * perCpu;
            // Half exact (level 0), half further out (level 1, rounded up to 8 jiffies).
            var delays = Enumerable.Range(0, perCpu).Select(i => (long)(i % 2 == 0 ? rng.Next(0, 60) : rng.Next(64, 200))).ToArray();
            rt.Bound(cpu, () =>
            {
                for (int i = 0; i < perCpu; i++)
                {
                    expires[first + i] = rt.Jiffies + delays[i];
                    Assert.False(timers[first + i].ModTimer(expires[first + i]));
                }
            });
        }

        Wait.Until(() => fired.Sum() == fired.Length, "every timer to fire");
        for (int i = 0; i < timers.Length; i++)
        {
            Assert.False(timers[i].TimerPending); // so it can never fire again
            Assert.Equal(1, fired[i]);
            Assert.True(jiffiesAtFire[i] >= expires[i], $"timer {i} fired at jiffy {jiffiesAtFire[i]}, before its expiry {expires[i]}");
            Assert.Equal(i / perCpu, firedOn[i]);
            Assert.Equal(i / perCpu, timers[i].Cpu);
            Assert.True(contexts[i]!.InServingSoftirq && !contexts[i]!.InIrq, "timer callbacks run in softirq context");
        }
        Assert.True(rt.Cpus[0].GetSoftirqCount(SoftirqVector.Timer) > 0 && rt.Cpus[1].GetSoftirqCount(SoftirqVector.Timer) > 0);
    }

    [Fact]
    public void Timers_within_63_jiffies_fire_in_expiry_order_ties_in_arming_order()
    {
        using var rt = TestRuntime.Boot(1);
        const int count = 60;
        var order = new ConcurrentQueue<int>();
        var expires = new long[count];
        var early = 0;
        var timers = Enumerable.Range(0, count).Select(n => rt.TimerSetup(t =>
        {
            if (rt.Jiffies < t.Expires)
            {
                Interlocked.Increment(ref early);
            }
            order.Enqueue(n);
        }, name: $"o{n}")).ToArray();
        var rng = new Random(11);
        var offsets = Enumerable.Range(0, count).Select(_ => (long)rng.Next(3, 40)).ToArray(); // many ties

        // Armed in one hard IRQ of CPU 0: none can run before all are armed.
        rt.OnCpu(0, () =>
        {
            long now = rt.Jiffies;
            for (int i = 0; i < count; i++)
            {
                expires[i] = now + offsets[i];
                timers[i].ModTimer(expires[i]);
            }
        });
        Wait.Until(() => order.Count == count, "every timer");

        var expected = Enumerable.Range(0, count).OrderBy(i => expires[i]).ThenBy(i => i).ToArray();
        Assert.Equal(expected, order.ToArray());
        Assert.Equal(0, early);
    }

    [Fact]
    public void ModTimer_returns_whether_it_was_pending_and_moves_it()
    {
        using var rt = TestRuntime.Boot(2);
        int fired = 0;
        var t = rt.TimerSetup(_ => Interlocked.Increment(ref fired), name: "moved");
        long far = rt.Jiffies + rt.MsecsToJiffies(60_000);

        rt.Bound(0, () => Assert.False(t.ModTimer(far)));
        Assert.True(t.TimerPending);
        Assert.Equal(far, t.Expires);
        Assert.Equal(0, t.Cpu);
        Assert.True(t.ModTimer(far)); // same expiry: nothing to do, still "was pending"

        // Re-armed from CPU 1: it follows the arming CPU (a timer that is not running migrates).
        rt.Bound(1, () => Assert.True(t.ModTimer(far + 1000)));
        Assert.Equal(1, t.Cpu);
        Assert.Equal(far + 1000, t.Expires);

        // Moved earlier, it fires once, at the new expiry; the old one is gone.
        long soon = rt.Jiffies + 2;
        rt.Bound(1, () => Assert.True(t.ModTimer(soon)));
        Wait.Until(() => Volatile.Read(ref fired) == 1, "the moved timer");
        Assert.False(t.TimerPending);
        Assert.False(t.DelTimer());
        Assert.False(t.ModTimer(rt.Jiffies + rt.MsecsToJiffies(60_000))); // inactive again
        Assert.True(t.DelTimer());
        Assert.Equal(1, Volatile.Read(ref fired));
    }

    [Fact]
    public void DelTimer_before_expiry_prevents_it()
    {
        using var rt = TestRuntime.Boot(1);
        int victimRuns = 0, probeRuns = 0;
        var victim = rt.TimerSetup(_ => Interlocked.Increment(ref victimRuns), name: "victim");
        var probe = rt.TimerSetup(_ => Interlocked.Increment(ref probeRuns), name: "probe");
        rt.OnCpu(0, () =>
        {
            long now = rt.Jiffies;
            victim.ModTimer(now + 20);
            probe.ModTimer(now + 30); // same CPU, level 0: runs after the victim would have
        });
        Assert.True(victim.DelTimer());
        Assert.False(victim.TimerPending);
        Assert.False(victim.DelTimer());
        Wait.Until(() => Volatile.Read(ref probeRuns) == 1, "the probe");
        Assert.Equal(0, Volatile.Read(ref victimRuns));
    }

    [Fact]
    public void AddTimer_validates_like_the_kernel()
    {
        using var rt = TestRuntime.Boot(2);
        var fired = new ConcurrentQueue<int>();
        var t = rt.TimerSetup(_ => fired.Enqueue(CpuContext.CurrentCpuId), name: "added");
        t.Expires = rt.Jiffies + rt.MsecsToJiffies(60_000);
        t.AddTimer();
        var twice = Assert.Throws<InvalidOperationException>(t.AddTimer);
        Assert.Contains("add_timer() on timer 'added', which is already pending", twice.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => t.AddTimerOn(1));
        Assert.Throws<InvalidOperationException>(() => t.Expires = 5);
        Assert.True(t.DelTimer());

        t.Expires = rt.Jiffies + 1;
        t.AddTimerOn(1);
        Assert.True((t.Flags & TimerFlags.Pinned) != 0, "add_timer_on() pins the timer");
        Wait.Until(() => fired.Count == 1, "the timer added on CPU 1");
        Assert.Equal([1], fired.ToArray());

        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => t.AddTimerOn(2));
        Assert.Contains("CPU 2 does not exist", bad.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentNullException>(() => rt.TimerSetup(null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => rt.TimerSetup(_ => { }, (TimerFlags)8));
    }

    [Fact]
    public void DelTimerSync_waits_for_a_running_callback()
    {
        using var rt = TestRuntime.Boot(2);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        long sequence = 0, callbackFinished = 0, deleteReturned = 0;
        var t = rt.TimerSetup(_ =>
        {
            entered.Set();
            Wait.For(release, "the test to release the callback");
            callbackFinished = Interlocked.Increment(ref sequence);
        }, name: "waited-for");

        t.ModTimer(rt.Jiffies + 1);
        Wait.For(entered, "the callback to start");
        Assert.False(t.TimerPending, "a running timer is no longer pending");
        bool? result = null;
        var deleter = Guarded.Start(() =>
        {
            result = t.DelTimerSync();
            deleteReturned = Interlocked.Increment(ref sequence);
        }, "deleter");
        Wait.Until(() => Volatile.Read(ref t.SyncWaiters) == 1, "DelTimerSync() to wait for the callback");
        release.Set();
        deleter.Join();

        Assert.True(deleteReturned > callbackFinished, "timer_delete_sync() returned before the running callback finished");
        Assert.False(result);
        Assert.Equal(0, Volatile.Read(ref t.SyncWaiters));
    }

    [Fact]
    public void DelTimerSync_deletes_a_rearm_made_by_the_callback_it_waited_for()
    {
        using var rt = TestRuntime.Boot(1);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int runs = 0;
        var t = rt.TimerSetup(self =>
        {
            Interlocked.Increment(ref runs);
            entered.Set();
            Wait.For(release, "the test to release the callback");
            self.ModTimer(rt.Jiffies + rt.MsecsToJiffies(60_000)); // re-arms while DelTimerSync waits
        }, name: "rearming");
        t.ModTimer(rt.Jiffies + 1);
        Wait.For(entered, "the callback");
        bool? result = null;
        var deleter = Guarded.Start(() => result = t.DelTimerSync(), "deleter");
        Wait.Until(() => Volatile.Read(ref t.SyncWaiters) == 1, "DelTimerSync() to wait");
        release.Set();
        deleter.Join();
        Assert.True(result, "the re-arm was pending when the wait ended, and was deleted");
        Assert.False(t.TimerPending);
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    [Fact]
    public void DelTimerSync_and_TimerShutdownSync_refuse_atomic_context_and_their_own_callback()
    {
        using var rt = TestRuntime.Boot(2);
        var t = rt.TimerSetup(_ => { }, name: "refused");

        Exception? fromIrq = null;
        rt.OnCpu(0, () => fromIrq = Record.Exception(() => t.DelTimerSync()));
        Assert.Contains("timer_delete_sync() on timer 'refused' from atomic context", fromIrq!.Message, StringComparison.Ordinal);
        Assert.Contains("preempt_count=0x10000, irqs disabled", fromIrq.Message, StringComparison.Ordinal);

        rt.Bound(1, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                var e = Assert.Throws<InvalidOperationException>(t.TimerShutdownSync);
                Assert.Contains("timer_shutdown_sync() on timer 'refused' from atomic context", e.Message, StringComparison.Ordinal);
            }
        });

        var spin = new KernelSpinlock("test.timer.spin");
        Guarded.Run(() =>
        {
            using (spin.Enter())
            {
                var e = Assert.Throws<InvalidOperationException>(() => t.DelTimerSync());
                Assert.Contains("a spinlock held", e.Message, StringComparison.Ordinal);
            }
        }, "spinner");
        Assert.False(t.IsShutDown);

        Exception? own = null, ownShutdown = null;
        int runs = 0;
        var self = rt.TimerSetup(me =>
        {
            own = Record.Exception(() => me.DelTimerSync());
            ownShutdown = Record.Exception(me.TimerShutdownSync);
            Interlocked.Increment(ref runs);
        }, name: "self");
        self.ModTimer(rt.Jiffies + 1);
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the self-deleting callback");
        Assert.Contains("timer_delete_sync() on timer 'self' from its own callback", own!.Message, StringComparison.Ordinal);
        Assert.Contains("from its own callback", ownShutdown!.Message, StringComparison.Ordinal);
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void TimerShutdownSync_waits_for_the_callback_and_ignores_every_later_arm()
    {
        using var rt = TestRuntime.Boot(2);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int runs = 0;
        bool? rearmFromCallback = null;
        var t = rt.TimerSetup(self =>
        {
            Interlocked.Increment(ref runs);
            entered.Set();
            Wait.For(release, "the test to release the callback");
            rearmFromCallback = self.ModTimer(rt.Jiffies + 1);
        }, name: "torn-down");
        t.ModTimer(rt.Jiffies + 1);
        Wait.For(entered, "the callback");
        var shutdown = Guarded.Start(t.TimerShutdownSync, "shutdown");
        Wait.Until(() => Volatile.Read(ref t.SyncWaiters) == 1, "TimerShutdownSync() to wait");
        Assert.True(t.IsShutDown, "shutdown is marked before the wait, so the callback's re-arm is ignored");
        release.Set();
        shutdown.Join();

        Assert.False(rearmFromCallback);
        Assert.False(t.TimerPending);
        Assert.False(t.ModTimer(rt.Jiffies + 1));
        t.Expires = rt.Jiffies + 1;
        t.AddTimer();
        t.AddTimerOn(1);
        rt.Bound(0, () => Assert.False(t.ModTimer(rt.Jiffies)));
        Assert.False(t.TimerPending);
        Assert.False(t.DelTimerSync());
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    [Fact]
    public void A_self_rearming_timer_runs_exactly_as_often_as_it_rearms()
    {
        using var rt = TestRuntime.Boot(2);
        const int times = 25;
        int runs = 0, early = 0;
        var cpus = new ConcurrentBag<int>();
        var t = rt.TimerSetup(self =>
        {
            if (rt.Jiffies < self.Expires)
            {
                Interlocked.Increment(ref early);
            }
            cpus.Add(CpuContext.CurrentCpuId);
            if (Interlocked.Increment(ref runs) < times)
            {
                Assert.False(self.ModTimer(rt.Jiffies + 1));
            }
        }, name: "periodic");
        rt.Bound(1, () => t.ModTimer(rt.Jiffies + 1));
        Wait.Until(() => Volatile.Read(ref runs) == times && !t.TimerPending, "the last run");
        Assert.False(t.DelTimerSync());
        Assert.Equal(times, Volatile.Read(ref runs));
        Assert.Equal(0, early);
        Assert.All(cpus, c => Assert.Equal(1, c)); // re-armed from its callback: stays on its CPU
    }

    [Fact]
    public void A_throwing_callback_is_reported_and_the_cpu_keeps_running_timers()
    {
        using var rt = TestRuntime.Boot(1);
        int after = 0;
        var bad = rt.TimerSetup(_ => throw new InvalidOperationException("boom"), name: "bad");
        var good = rt.TimerSetup(_ => Interlocked.Increment(ref after), name: "good");
        rt.OnCpu(0, () =>
        {
            long now = rt.Jiffies;
            bad.ModTimer(now + 1);
            good.ModTimer(now + 3);
        });
        Wait.Until(() => Volatile.Read(ref after) == 1, "the timer after the throwing one");
        Assert.Equal(1, rt.Faults.Count);
        Assert.Equal("timer 'bad'", rt.Faults.Recent[0].Source);
        Assert.Equal("boom", rt.Faults.Recent[0].Exception.Message);

        // And again later: the wheel is intact.
        good.ModTimer(rt.Jiffies + 2);
        Wait.Until(() => Volatile.Read(ref after) == 2, "another timer");
    }

    [Fact]
    public void A_deferrable_timer_waits_for_the_idle_cpu_to_wake_for_something_else()
    {
        using var rt = TestRuntime.Boot(2, o => o.IdlePolicy = IdlePolicy.Halt);
        long deferredAt = 0, normalAt = 0;
        var deferred = rt.TimerSetup(_ => Volatile.Write(ref deferredAt, rt.Jiffies), TimerFlags.Deferrable, "deferrable");
        var normal = rt.TimerSetup(_ => Volatile.Write(ref normalAt, rt.Jiffies), name: "normal");

        // From a thread of no CPU, straight onto CPU 1's wheels: no IPI wakes CPU 1 for the deferrable one.
        long now = rt.Jiffies;
        deferred.Expires = now + 5;
        deferred.AddTimerOn(1);
        normal.Expires = now + 60;
        normal.AddTimerOn(1);

        Wait.Until(() => Volatile.Read(ref deferredAt) != 0 && Volatile.Read(ref normalAt) != 0, "both timers");
        Assert.True(deferredAt >= normal.Expires, $"the deferrable timer (due at {deferred.Expires}) ran at jiffy {deferredAt}, before CPU 1 woke for the normal one at {normal.Expires}");
    }

    [Fact]
    public void Arming_deleting_and_expiring_allocate_nothing()
    {
        using var rt = TestRuntime.Boot(2);
        var t = rt.TimerSetup(_ => { }, name: "no-alloc");
        void Churn(int rounds)
        {
            for (int i = 0; i < rounds; i++)
            {
                t.ModTimer(rt.Jiffies + 1_000 + (i % 700)); // levels 1 and 2
                if (i % 3 == 0)
                {
                    t.DelTimer();
                }
            }
            t.DelTimer();
        }

        rt.Bound(0, () =>
        {
            Churn(200); // warm-up (tiered JIT)
            long before = GC.GetAllocatedBytesForCurrentThread();
            Churn(2_000);
            Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
        });
        Churn(200); // from a thread of no CPU: placement and rundown protection
        long foreignBefore = GC.GetAllocatedBytesForCurrentThread();
        Churn(2_000);
        Assert.Equal(foreignBefore, GC.GetAllocatedBytesForCurrentThread());

        // Expiry: 64 timers due in the same jiffy; the expiring thread allocates nothing between callbacks.
        const int count = 64;
        var bytes = new long[count];
        var threads = new int[count];
        int fired = 0;
        var batch = Enumerable.Range(0, count).Select(n => rt.TimerSetup(_ =>
        {
            bytes[n] = GC.GetAllocatedBytesForCurrentThread();
            threads[n] = Environment.CurrentManagedThreadId;
            Interlocked.Increment(ref fired);
        }, name: $"b{n}")).ToArray();
        for (int round = 0; round < 2; round++) // the first round warms up
        {
            Volatile.Write(ref fired, 0);
            rt.OnCpu(0, () =>
            {
                long at = rt.Jiffies + 2;
                foreach (var timer in batch)
                {
                    timer.ModTimer(at);
                }
            });
            Wait.Until(() => Volatile.Read(ref fired) == count, "the batch");
        }
        var sameThread = Enumerable.Range(0, count).Where(i => threads[i] == threads[0]).Select(i => bytes[i]).ToArray();
        Assert.True(sameThread.Length > count / 2);
        Assert.Equal(sameThread.Min(), sameThread.Max());
    }
}
