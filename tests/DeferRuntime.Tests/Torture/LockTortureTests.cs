using DeferRuntime.Tests.Locking;
using DeferRuntime.Torture;
using DeferRuntime.Torture.Locks;

namespace DeferRuntime.Tests.Torture;

public class LockTortureTests : ValidatedTest
{
    [Fact]
    public void Every_lock_type_passes_with_consistent_counts()
    {
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.Locks, TimeSpan.FromMilliseconds(Stress.Scale(150, 3_000))));

        TortureTest.AssertPassed(report);
        Assert.Equal(TortureLockTypes.Names, report.Locks.Select(l => l.LockType));
        string text = report.Render();
        foreach (var l in report.Locks)
        {
            bool readSide = l.LockType == TortureLockTypes.RwsemLock;
            Assert.Equal(readSide ? 2 : 4, l.Writers); // 2x CPUs, or CPUs writers + CPUs readers (locktorture's split)
            Assert.Equal(readSide ? 2 : 0, l.Readers);
            Assert.Equal(0, l.Writes.Fail);
            Assert.Equal(l.Writes.PerThread.Sum(), l.Writes.Total);
            Assert.Equal(l.Writers, l.Writes.PerThread.Count);
            Assert.All(l.Writes.PerThread, n => Assert.True(n >= 1)); // every writer acquires at least once
            Assert.Equal(l.Writes.Total, l.GuardedCounter);
            Assert.Equal(readSide, l.Reads is not null);
            Assert.Equal(0, l.Reads?.Fail ?? 0);
            Assert.Equal(0, l.ContextViolations);
            Assert.Contains($"{l.LockType}-torture: Writes:  Total: {l.Writes.Total}  Max/Min: {l.Writes.Max}/{l.Writes.Min}", text, StringComparison.Ordinal);
            Assert.Contains($"{l.LockType}-torture:--- End of test: SUCCESS: nwriters_stress={l.Writers}", text, StringComparison.Ordinal);
        }
        Assert.Equal(["hardirq", "hardirq", "softirq"],
            report.Locks.Where(l => l.HeldContext is not null).Select(l => l.HeldContext!));
        Assert.DoesNotContain("!!!", text, StringComparison.Ordinal);
        Assert.EndsWith("every check held, " + report.ElapsedSeconds.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) + " s)\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Busted_lock_is_reported_failing_with_a_fail_count_and_bangs()
    {
        // Two writers and no long holds: nothing but the forced overlap makes it fail, on every run.
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.None, TimeSpan.FromMilliseconds(100), o =>
        {
            o.Busted = true;
            o.Writers = 2;
            o.LongHoldProbability = 0;
        }));

        Assert.False(report.Passed);
        var busted = Assert.Single(report.Locks);
        Assert.Equal(TortureLockTypes.LockBusted, busted.LockType);
        Assert.True(busted.Busted);
        Assert.True(busted.Writes.Fail > 0, "the guard saw no overlap");
        var exclusion = Assert.Single(busted.Checks, c => c.Name == "exclusion");
        Assert.False(exclusion.Passed);
        Assert.Contains("forced to overlap 1 time", exclusion.Detail, StringComparison.Ordinal);
        Assert.Contains(report.Failures, f => f.StartsWith("lock_busted: exclusion:", StringComparison.Ordinal));
        string text = report.Render();
        Assert.Contains($"lock_busted-torture: Writes:  Total: {busted.Writes.Total}", text, StringComparison.Ordinal);
        Assert.Contains($"Fail: {busted.Writes.Fail} !!!", text, StringComparison.Ordinal);
        Assert.Contains("lock_busted-torture: !!! exclusion:", text, StringComparison.Ordinal);
        Assert.Contains("lock_busted-torture:--- End of test: FAILURE", text, StringComparison.Ordinal);
        Assert.Contains("torture: End of run: FAILURE: lock_busted !!!", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Guard_counts_every_overlap_it_is_shown_without_relying_on_timing()
    {
        var guard = new ExclusionGuard();
        Assert.Equal(0, guard.EnterWrite(0, out long c0));
        Assert.Equal(1, guard.EnterWrite(1, out long c1));     // writer 1 finds writer 0 inside
        Assert.Equal(1, guard.EnterRead());                    // a reader finds a writer inside
        Assert.Equal(1, guard.ExitRead());
        Assert.Equal(0, guard.ExitWrite(1, c1));               // the slot is writer 1's
        Assert.Equal(1, guard.ExitWrite(0, c0));               // writer 0's was taken over while it held
        Assert.Equal(1, guard.Counter);                        // two holds, one increment: lost to the overlap

        Assert.Equal(0, guard.EnterRead());
        Assert.Equal(1, guard.EnterWrite(0, out long c2));     // a writer finds a reader inside
        Assert.Equal(0, guard.ExitWrite(0, c2));
        Assert.Equal(0, guard.ExitRead());
    }

    [Fact]
    public void Fairness_flag_is_locktortures_max_over_two_above_min_and_not_a_failure()
    {
        var unfair = AcquisitionStats.From([10, 4], [0, 0]);
        var fair = AcquisitionStats.From([10, 5], [0, 0]);
        Assert.True(unfair.Unfair);
        Assert.False(fair.Unfair);
        Assert.Equal("Writes:  Total: 14  Max/Min: 10/4 ???  Fail: 0", unfair.Render(write: true));
        Assert.Equal("Reads :  Total: 15  Max/Min: 10/5   Fail: 0", fair.Render(write: false));
        Assert.Equal("Writes:  Total: 15  Max/Min: 10/5   Fail: 1 !!!", AcquisitionStats.From([10, 5], [1, 0]).Render(write: true));

        var report = new TortureReport
        {
            Settings = new TortureSettings(),
            Environment = new TortureEnvironment(),
            Locks =
            [
                new LockTortureResult
                {
                    LockType = TortureLockTypes.SpinLock,
                    Writes = unfair,
                    Faults = new FaultAccounting(),
                    Checks = [new TortureCheck("exclusion", true, "0 violations")],
                },
            ],
        };
        Assert.True(report.Passed);
        Assert.Contains("???", report.Render(), StringComparison.Ordinal);
    }

    [Fact]
    public void Lock_types_resolve_like_locktorture_and_bad_options_name_the_rule()
    {
        Assert.Equal(TortureLockTypes.Names, TortureLockTypes.Resolve(["all"], busted: false));
        Assert.DoesNotContain(TortureLockTypes.LockBusted, TortureLockTypes.Resolve(["all"], busted: false));
        Assert.Equal([TortureLockTypes.SpinLockBh, TortureLockTypes.MutexLock, TortureLockTypes.LockBusted],
            TortureLockTypes.Resolve(["mutex_lock", "SPIN_LOCK_BH", "mutex_lock"], busted: true));

        var e = Assert.Throws<ArgumentException>(() => TortureLockTypes.Resolve(["ticket_lock"], busted: false));
        Assert.Contains("invalid torture type: \"ticket_lock\"", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => TortureRunner.Run(new TortureOptions { LockTypes = ["nope"] }));
        Assert.Throws<ArgumentException>(() => TortureRunner.Run(new TortureOptions { Busted = true, Writers = 1 }));
        Assert.Throws<ArgumentException>(() => TortureRunner.Run(new TortureOptions { Duration = TimeSpan.Zero }));
        Assert.Throws<ArgumentException>(() => TortureRunner.Run(new TortureOptions { LongHoldProbability = 2 }));
        Assert.Throws<ArgumentException>(() => TortureRunner.Run(new TortureOptions { FaultEvery = -1 }));
    }
}
