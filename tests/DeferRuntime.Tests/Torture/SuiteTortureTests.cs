using DeferRuntime.Torture;

namespace DeferRuntime.Tests.Torture;

/// <summary>
/// The tasklet, workqueue and shutdown suites at a small size, each with fault injection on (every 7th
/// callback throws): each passes, its books balance exactly, and every injected fault was reported.
/// </summary>
public class SuiteTortureTests
{
    private const int FaultEvery = 7;

    [Fact]
    public void Tasklet_suite_passes_and_every_schedule_is_accounted()
    {
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.Tasklets, configure: o => o.FaultEvery = FaultEvery));

        TortureTest.AssertPassed(report);
        var t = report.Tasklets!;
        Assert.Empty(report.Locks);
        Assert.Null(report.Workqueues);
        Assert.True(t.Runs > 0);
        Assert.Equal(t.Schedules, t.Runs + t.Coalesced);   // each run consumed one accepted schedule; the rest coalesced
        Assert.True(t.Coalesced >= 0);
        Assert.Equal(t.Runs, t.RuntimeRuns);               // the runtime's count agrees with the test's
        Assert.Equal(0, t.ConcurrentRuns);
        Assert.Equal(0, t.RunsWhileDisabled);
        Assert.Equal(0, t.LostSchedules);
        Assert.Equal(t.Runs / FaultEvery, t.Faults.Injected); // every callback run calls the injector once
        Assert.Equal(t.Faults.Injected, t.Faults.Reported);
        Assert.Equal(0, t.Faults.UnexpectedCount);
        string text = report.Render();
        Assert.Contains($"tasklet-torture: Schedules: {t.Schedules} (chained {t.ChainedSchedules})  Runs: {t.Runs}  Coalesced: {t.Coalesced}", text, StringComparison.Ordinal);
        Assert.Contains("tasklet-torture:--- End of test: SUCCESS", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Workqueue_suite_passes_with_conservation_no_reentrancy_and_max_active()
    {
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.Workqueues, configure: o => o.FaultEvery = FaultEvery));

        TortureTest.AssertPassed(report);
        var w = report.Workqueues!;
        Assert.Equal(["bound", "unbound", "ordered", "bound", "unbound", "bh"], w.Workqueues.Select(q => q.Kind));
        foreach (var q in w.Workqueues)
        {
            Assert.Equal(q.Queued, q.Run + q.Cancelled); // conservation (delayed items included)
            Assert.Equal(q.Kind is "bound" or "unbound" ? 2 : 0, q.DelayedItems);
            Assert.Equal(0, q.Reentrant);
            Assert.Equal(0, q.MaxActiveExceeded);
            Assert.Equal(0, q.FlushViolations);
            Assert.Equal(0, q.OrderViolations);
            if (q.MaxActive > 0)
            {
                Assert.InRange(q.MaxConcurrent, 1, q.MaxActive);
            }
        }
        Assert.Equal(1, w.Workqueues.Single(q => q.Kind == "ordered").MaxConcurrent);
        long runs = w.Workqueues.Sum(q => q.Run);
        Assert.Equal(runs / FaultEvery, w.Faults.Injected); // every function run calls the injector once
        Assert.Equal(w.Faults.Injected, w.Faults.Reported);
        Assert.Contains("workqueue-torture:--- End of test: SUCCESS", report.Render(), StringComparison.Ordinal);
    }

    [Fact]
    public void Shutdown_under_load_loses_nothing_accepted_and_refuses_the_rest()
    {
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.Shutdown, configure: o => o.FaultEvery = FaultEvery));

        TortureTest.AssertPassed(report);
        var d = report.Shutdown!;
        Assert.Equal(d.WorkAccepted, d.WorkRun);
        Assert.Equal(0, d.TaskletSchedulesLost);
        Assert.Equal(0, d.SoftirqRaisesLost);
        Assert.True(d.Refused >= d.LoadThreads / 2, "every thread of no CPU ends refused");
        Assert.Empty(d.UnexpectedErrors);
        Assert.Null(d.DisposeError);
        Assert.Equal((d.WorkRun + d.TaskletRuns + d.SoftirqRuns) / FaultEvery, d.Faults.Injected);
        Assert.Equal(d.Faults.Injected, d.Faults.Reported);
        Assert.Contains("shutdown-torture:--- End of test: SUCCESS", report.Render(), StringComparison.Ordinal);
    }
}
