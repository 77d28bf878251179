using DeferRuntime.Cpus;
using DeferRuntime.Timers;

namespace DeferRuntime.Tests.Timers;

public class ClockEventTests
{
    [Fact]
    public void An_idle_cpu_wakes_once_for_its_timer_instead_of_ticking_every_jiffy()
    {
        // HZ=2500: 20 ms are 50 jiffies, so a periodic tick would have interrupted at least 50 times.
        using var rt = TestRuntime.Boot(1, o =>
        {
            o.IdlePolicy = IdlePolicy.Halt;
            o.Hz = 2500;
        });
        var cpu = rt.Cpus[0];
        using var fired = new ManualResetEventSlim();
        long firedAt = 0;
        var t = rt.TimerSetup(_ =>
        {
            firedAt = rt.Jiffies;
            fired.Set();
        }, name: "tickless");

        long locBefore = cpu.LocalTimerInterruptCount;
        long armedAt = rt.Jiffies;
        t.ModTimer(armedAt + rt.MsecsToJiffies(20));
        Wait.For(fired, "the timer 20 ms out");
        long loc = cpu.LocalTimerInterruptCount - locBefore;

        Assert.True(firedAt - armedAt >= 50, $"fired {firedAt - armedAt} jiffies after arming, before its expiry");
        Assert.InRange(loc, 1, 5);
    }

    [Fact]
    public void Arming_an_earlier_timer_reprograms_a_parked_cpu()
    {
        using var rt = TestRuntime.Boot(2, o => o.IdlePolicy = IdlePolicy.Halt);
        using var nearFired = new ManualResetEventSlim();
        using var hrFired = new ManualResetEventSlim();
        var far = rt.TimerSetup(_ => { }, name: "far");
        var near = rt.TimerSetup(_ => nearFired.Set(), name: "near");
        var farHr = rt.HrtimerSetup(_ => HrtimerRestart.NoRestart, "far-hr");
        var nearHr = rt.HrtimerSetup(_ =>
        {
            hrFired.Set();
            return HrtimerRestart.NoRestart;
        }, "near-hr");

        // CPU 1 parks with an event a minute out (past the 30 s hang ceiling: without the reprogram
        // the near timers would only fire then, and the waits below would time out).
        far.Expires = rt.Jiffies + rt.MsecsToJiffies(60_000);
        far.AddTimerOn(1);
        Wait.Until(() => IsParked(rt.Cpus[1]), "CPU 1 to park");

        near.Expires = rt.Jiffies + 3;
        near.AddTimerOn(1);
        Wait.For(nearFired, "the earlier timer on the parked CPU");
        Assert.True(far.TimerPending);

        rt.Bound(1, () => farHr.Start(TimeSpan.FromMinutes(1)));
        Wait.Until(() => IsParked(rt.Cpus[1]), "CPU 1 to park again");
        rt.Bound(1, () => nearHr.Start(TimeSpan.FromMilliseconds(2)));
        Wait.For(hrFired, "the earlier hrtimer on the parked CPU");
        Assert.True(farHr.IsQueued);
        Assert.True(far.DelTimer());
        Assert.Equal(1, farHr.TryToCancel());
    }

    private static bool IsParked(VirtualCpu cpu) => Volatile.Read(ref cpu.Line.IdleState) == VirtualCpu.Parked;

    [Fact]
    public void A_busy_cpu_notices_expiry_between_passes()
    {
        using var rt = TestRuntime.Boot(1, o => o.IdlePolicy = IdlePolicy.Halt);
        int fired = 0;
        long busyRuns = 0;
        var t = rt.TimerSetup(_ => Volatile.Write(ref fired, 1), name: "while-busy");
        var busy = rt.CreateTasklet(self =>
        {
            Interlocked.Increment(ref busyRuns);
            if (Volatile.Read(ref fired) == 0)
            {
                self.Schedule(); // keeps CPU 0 busy until the timer has run
            }
        }, "busy");
        rt.OnCpu(0, () =>
        {
            t.ModTimer(rt.Jiffies + 5);
            busy.Schedule();
        });
        Wait.Until(() => Volatile.Read(ref fired) == 1 && !busy.IsScheduled && !busy.IsRunning, "the timer on the busy CPU");
        Assert.True(Interlocked.Read(ref busyRuns) > 1);
        Assert.True(rt.Cpus[0].LocalTimerInterruptCount >= 1);
    }

    [Theory]
    [InlineData(IdlePolicy.Poll)]
    [InlineData(IdlePolicy.Hybrid)]
    [InlineData(IdlePolicy.Halt)]
    public void Every_idle_policy_notices_expiry(IdlePolicy policy)
    {
        using var rt = TestRuntime.Boot(1, o => o.IdlePolicy = policy);
        int runs = 0;
        var t = rt.TimerSetup(self =>
        {
            if (Interlocked.Increment(ref runs) < 5)
            {
                self.ModTimer(rt.Jiffies + 2);
            }
        }, name: policy.ToString());
        var hr = rt.HrtimerSetup(_ => HrtimerRestart.NoRestart, "hr");
        t.ModTimer(rt.Jiffies + 2);
        hr.Start(TimeSpan.FromMilliseconds(3));
        Wait.Until(() => Volatile.Read(ref runs) == 5 && !hr.IsActive, "five runs and the hrtimer");
        Assert.InRange(rt.Cpus[0].LocalTimerInterruptCount, 1, 1000);
    }

    [Fact]
    public void Shutdown_runs_due_timers_abandons_future_ones_and_does_not_wait_for_them()
    {
        var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        const int due = 200;
        int dueRuns = 0, hrDueRuns = 0, periodicRuns = 0;
        var far = Enumerable.Range(0, 3).Select(n => rt.TimerSetup(_ => { }, name: $"far{n}")).ToArray();
        var farDeferrable = rt.TimerSetup(_ => { }, TimerFlags.Deferrable, "far-deferrable");
        var farHr = rt.HrtimerSetup(_ => HrtimerRestart.NoRestart, "far-hr");
        var periodic = rt.TimerSetup(self =>
        {
            Interlocked.Increment(ref periodicRuns);
            self.ModTimer(rt.Jiffies + 1); // forever, also while shutdown drains
        }, name: "periodic");
        var dueTimers = Enumerable.Range(0, due).Select(n => rt.TimerSetup(_ => Interlocked.Increment(ref dueRuns), name: $"due{n}")).ToArray();
        var dueHr = rt.HrtimerSetup(_ =>
        {
            Interlocked.Increment(ref hrDueRuns);
            return HrtimerRestart.NoRestart;
        }, "due-hr");

        long hour = rt.MsecsToJiffies(3_600_000);
        foreach (var t in far)
        {
            t.ModTimer(rt.Jiffies + hour);
        }
        farDeferrable.ModTimer(rt.Jiffies + hour);
        farHr.Start(TimeSpan.FromHours(1));
        periodic.ModTimer(rt.Jiffies + 1);
        Wait.Until(() => Volatile.Read(ref periodicRuns) > 3, "the periodic timer to run");

        // Due now (expiry in the past), armed right before shutdown: the drain must run every one, also
        // those the wheel files for the next jiffy because the periodic timer's expiry is in progress.
        long now = rt.Jiffies;
        foreach (var t in dueTimers)
        {
            t.ModTimer(now - 1);
        }
        dueHr.Start(rt.KtimeGetNs() - 1, HrtimerMode.Abs);
        rt.Dispose();

        Assert.True(due == Volatile.Read(ref dueRuns), $"{dueRuns} of {due} due timers ran; {dueTimers.Count(t => t.TimerPending)} were abandoned");
        Assert.Equal(1, Volatile.Read(ref hrDueRuns));
        // Three far timers, the far deferrable one, the far hrtimer and the periodic one's last re-arm.
        Assert.Equal(6, rt.AbandonedTimerCount);
        Assert.True(far[0].TimerPending, "an abandoned timer stays armed, as in the kernel");

        var refused = Assert.Throws<ObjectDisposedException>(() => far[1].ModTimer(now + 5));
        Assert.Contains("mod_timer()", refused.Message, StringComparison.Ordinal);
        Assert.Throws<ObjectDisposedException>(() => farHr.Start(TimeSpan.FromSeconds(1)));
        Assert.Throws<ObjectDisposedException>(() => rt.TimerSetup(_ => { }));
        Assert.True(far[0].DelTimer()); // deleting needs no CPU
        Assert.True(far[2].DelTimerSync());
        Assert.Equal(6, rt.AbandonedTimerCount);
        rt.Dispose();
    }
}
