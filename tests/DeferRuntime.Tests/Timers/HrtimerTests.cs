using System.Collections.Concurrent;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;
using DeferRuntime.Timers;

namespace DeferRuntime.Tests.Timers;

public class HrtimerTests
{
    private const long Ms = 1_000_000;

    [Fact]
    public void Many_random_deadlines_fire_in_deadline_order_per_cpu_ties_in_arming_order()
    {
        using var rt = TestRuntime.Boot(2);
        const int perCpu = 150;
        var orders = new[] { new ConcurrentQueue<int>(), new ConcurrentQueue<int>() };
        var deadlines = new long[2 * perCpu];
        int early = 0, wrongCpu = 0, notSoftirq = 0;
        var timers = new Hrtimer[2 * perCpu];
        for (int i = 0; i < timers.Length; i++)
        {
            int n = i, cpu = i / perCpu;
            timers[i] = rt.HrtimerSetup(t =>
            {
                if (rt.KtimeGetNs() < t.ExpiresNs)
                {
                    Interlocked.Increment(ref early);
                }
                if (CpuContext.CurrentCpuId != cpu)
                {
                    Interlocked.Increment(ref wrongCpu);
                }
                if (!CpuContext.InServingSoftirq)
                {
                    Interlocked.Increment(ref notSoftirq);
                }
                orders[cpu].Enqueue(n);
                return HrtimerRestart.NoRestart;
            }, $"hr{n}");
        }
        var rng = new Random(5);
        long start = rt.KtimeGetNs() + (2 * Ms);
        for (int i = 0; i < deadlines.Length; i++)
        {
            // 100 µs steps over 15 ms: plenty of equal deadlines.
            deadlines[i] = start + (rng.Next(0, 150) * (Ms / 10));
        }
        for (int cpu = 0; cpu < 2; cpu++)
        {
            int c = cpu;
            // One hard IRQ per CPU arms them all: nothing of that CPU runs before the last is queued.
            rt.OnCpu(c, () =>
            {
                for (int i = c * perCpu; i < (c + 1) * perCpu; i++)
                {
                    timers[i].Start(deadlines[i], HrtimerMode.AbsPinned);
                }
            });
        }
        Wait.Until(() => orders[0].Count + orders[1].Count == timers.Length, "every hrtimer");

        for (int cpu = 0; cpu < 2; cpu++)
        {
            var expected = Enumerable.Range(cpu * perCpu, perCpu).OrderBy(i => deadlines[i]).ThenBy(i => i).ToArray();
            Assert.Equal(expected, orders[cpu].ToArray());
        }
        Assert.Equal(0, early);
        Assert.Equal(0, wrongCpu);
        Assert.Equal(0, notSoftirq);
        Assert.All(timers, t => Assert.False(t.IsActive));
        Assert.True(rt.Cpus[0].GetSoftirqCount(SoftirqVector.Hrtimer) > 0);
    }

    [Fact]
    public void Restart_with_Forward_keeps_a_periodic_grid()
    {
        using var rt = TestRuntime.Boot(2);
        const long interval = Ms;
        const int runs = 12;
        int count = 0, early = 0, badForward = 0;
        long overruns = 0;
        var hr = rt.HrtimerSetup(t =>
        {
            if (rt.KtimeGetNs() < t.ExpiresNs)
            {
                Interlocked.Increment(ref early);
            }
            if (Interlocked.Increment(ref count) == runs)
            {
                return HrtimerRestart.NoRestart;
            }
            long now = rt.KtimeGetNs();
            long n = t.Forward(now, interval);
            if (n < 1 || t.ExpiresNs <= now)
            {
                Interlocked.Increment(ref badForward); // asserting here would only be reported as a fault
            }
            overruns += n;
            return HrtimerRestart.Restart;
        }, "periodic");
        long first = rt.KtimeGetNs() + interval;
        rt.Bound(1, () => hr.Start(first, HrtimerMode.Abs));
        Wait.Until(() => Volatile.Read(ref count) == runs && !hr.IsActive, "the last period");

        Assert.Equal(0, early);
        Assert.Equal(0, badForward);
        Assert.Equal(0, rt.Faults.Count);
        Assert.Equal(first + (overruns * interval), hr.ExpiresNs); // whole steps on the grid, missed ones counted
        Assert.Equal(1, hr.Cpu);
        Assert.Equal(0, hr.TryToCancel());
    }

    [Fact]
    public void Forward_counts_overruns_as_the_kernel_does()
    {
        using var rt = TestRuntime.Boot(1);
        var hr = rt.HrtimerSetup(_ => HrtimerRestart.NoRestart, "fwd");
        hr.Start(1_000, HrtimerMode.Abs); // long past: fires at once
        Wait.Until(() => !hr.IsActive, "the past timer");
        Assert.Equal(0, hr.Forward(999, 10)); // now before expiry: nothing
        Assert.Equal(1_000, hr.ExpiresNs);
        Assert.Equal(1, hr.Forward(1_000, 10)); // now == expiry: one step
        Assert.Equal(1_010, hr.ExpiresNs);
        Assert.Equal(3, hr.Forward(1_035, 10)); // 1010 -> 1040
        Assert.Equal(1_040, hr.ExpiresNs);
        Assert.Equal(2, hr.Forward(1_050, 10)); // exactly on the grid: past it
        Assert.Equal(1_060, hr.ExpiresNs);
        Assert.Equal(1, hr.Forward(1_060, 0)); // interval under the resolution counts as 1 ns
        Assert.Equal(1_061, hr.ExpiresNs);

        hr.Start(TimeSpan.FromMinutes(10));
        var queued = Assert.Throws<InvalidOperationException>(() => hr.Forward(long.MaxValue, 10));
        Assert.Contains("hrtimer_forward() on hrtimer 'fwd', which is queued", queued.Message, StringComparison.Ordinal);
        Assert.Equal(1, hr.TryToCancel());
    }

    [Fact]
    public void TryToCancel_returns_minus_one_while_running_zero_inactive_one_cancelled()
    {
        using var rt = TestRuntime.Boot(2);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int runs = 0;
        var hr = rt.HrtimerSetup(_ =>
        {
            Interlocked.Increment(ref runs);
            entered.Set();
            Wait.For(release, "the test to release the callback");
            return HrtimerRestart.NoRestart;
        }, "tri-state");

        Assert.Equal(0, hr.TryToCancel());
        hr.Start(TimeSpan.FromMinutes(10));
        Assert.True(hr.IsQueued);
        Assert.Equal(1, hr.TryToCancel());
        Assert.False(hr.IsActive);
        Assert.Equal(0, hr.TryToCancel());

        hr.Start(0, HrtimerMode.Rel);
        Wait.For(entered, "the callback");
        Assert.True(hr.IsCallbackRunning && hr.IsActive && !hr.IsQueued);
        Assert.Equal(-1, hr.TryToCancel());
        hr.Start(TimeSpan.FromMinutes(10)); // started while running: queued where it runs
        Assert.True(hr.IsQueued);
        Assert.Equal(-1, hr.TryToCancel()); // running wins, nothing changed
        Assert.True(hr.IsQueued);
        release.Set();
        Wait.Until(() => !hr.IsCallbackRunning, "the callback to return");
        Assert.Equal(1, hr.TryToCancel());
        Assert.Equal(1, Volatile.Read(ref runs));
    }

    [Fact]
    public void Cancel_waits_for_a_running_callback_and_cancels_its_restart()
    {
        using var rt = TestRuntime.Boot(2);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        long sequence = 0, callbackFinished = 0, cancelReturned = 0;
        int runs = 0;
        var hr = rt.HrtimerSetup(t =>
        {
            Interlocked.Increment(ref runs);
            entered.Set();
            Wait.For(release, "the test to release the callback");
            t.ForwardNow(60_000 * Ms); // far: only Cancel() may end it, not a second run
            callbackFinished = Interlocked.Increment(ref sequence);
            return HrtimerRestart.Restart;
        }, "cancelled");
        hr.Start(Ms, HrtimerMode.Rel);
        Wait.For(entered, "the callback");
        bool? result = null;
        var canceller = Guarded.Start(() =>
        {
            result = hr.Cancel();
            cancelReturned = Interlocked.Increment(ref sequence);
        }, "canceller");
        Wait.Until(() => Volatile.Read(ref hr.SyncWaiters) == 1, "Cancel() to wait for the callback");
        release.Set();
        canceller.Join();

        Assert.True(cancelReturned > callbackFinished, "hrtimer_cancel() returned before the running callback finished");
        Assert.True(result, "the restart it asked for was queued and is cancelled");
        Assert.False(hr.IsActive);
        Assert.Equal(1, Volatile.Read(ref runs));
        Assert.False(hr.Cancel());
    }

    [Fact]
    public void Cancel_refuses_atomic_context_and_its_own_callback()
    {
        using var rt = TestRuntime.Boot(1);
        var hr = rt.HrtimerSetup(_ => HrtimerRestart.NoRestart, "refused");
        Exception? fromIrq = null;
        rt.OnCpu(0, () => fromIrq = Record.Exception(() => hr.Cancel()));
        Assert.Contains("hrtimer_cancel() on hrtimer 'refused' from atomic context", fromIrq!.Message, StringComparison.Ordinal);

        Exception? own = null;
        int tried = 0;
        var self = rt.HrtimerSetup(me =>
        {
            own = Record.Exception(() => me.Cancel());
            Assert.Equal(-1, me.TryToCancel());
            Interlocked.Increment(ref tried);
            return HrtimerRestart.NoRestart;
        }, "self");
        self.Start(0, HrtimerMode.Rel);
        Wait.Until(() => Volatile.Read(ref tried) == 1, "the callback");
        Assert.Contains("hrtimer_cancel() on hrtimer 'self' from its own callback", own!.Message, StringComparison.Ordinal);
        Assert.Equal(0, rt.Faults.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => hr.Start(0, (HrtimerMode)4));
        Assert.Throws<ArgumentNullException>(() => rt.HrtimerSetup(null!));
    }

    [Fact]
    public void A_restart_without_forward_keeps_firing_but_never_starves_the_cpu()
    {
        using var rt = TestRuntime.Boot(1);
        int runs = 0;
        var stubborn = rt.HrtimerSetup(_ => Interlocked.Increment(ref runs) < 50 ? HrtimerRestart.Restart : HrtimerRestart.NoRestart, "stubborn");
        int other = 0;
        var tasklet = rt.CreateTasklet(_ => Interlocked.Increment(ref other), "other");
        rt.OnCpu(0, () => stubborn.Start(0, HrtimerMode.Rel));
        rt.OnCpu(0, tasklet.Schedule);
        Wait.Until(() => Volatile.Read(ref runs) == 50 && Volatile.Read(ref other) == 1, "both");
        Assert.False(stubborn.IsActive);
    }

    [Fact]
    public void A_throwing_callback_is_reported_and_not_restarted()
    {
        using var rt = TestRuntime.Boot(1);
        int good = 0;
        var bad = rt.HrtimerSetup(_ => throw new InvalidOperationException("hr boom"), "bad-hr");
        var fine = rt.HrtimerSetup(_ =>
        {
            Interlocked.Increment(ref good);
            return HrtimerRestart.NoRestart;
        }, "fine");
        rt.OnCpu(0, () =>
        {
            bad.Start(0, HrtimerMode.Rel);
            fine.Start(Ms, HrtimerMode.Rel);
        });
        Wait.Until(() => Volatile.Read(ref good) == 1, "the hrtimer after the throwing one");
        Assert.Equal(1, rt.Faults.Count);
        Assert.Equal("hrtimer 'bad-hr'", rt.Faults.Recent[0].Source);
        Assert.False(bad.IsActive);
    }

    [Fact]
    public void Start_and_cancel_allocate_nothing_after_warm_up()
    {
        using var rt = TestRuntime.Boot(2);
        var timers = Enumerable.Range(0, 32).Select(n => rt.HrtimerSetup(_ => HrtimerRestart.NoRestart, $"a{n}")).ToArray();
        void Churn(int rounds)
        {
            for (int i = 0; i < rounds; i++)
            {
                var t = timers[i % timers.Length];
                t.Start(TimeSpan.FromSeconds(60 + (i % 17)));
                if (i % 5 == 0)
                {
                    t.TryToCancel();
                }
            }
            foreach (var t in timers)
            {
                t.TryToCancel();
            }
        }
        rt.Bound(1, () =>
        {
            Churn(500); // grows CPU 1's heap and warms up the JIT
            long before = GC.GetAllocatedBytesForCurrentThread();
            Churn(5_000);
            Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
        });
    }
}
