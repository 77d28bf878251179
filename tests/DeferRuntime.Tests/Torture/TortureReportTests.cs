using DeferRuntime.Torture;

namespace DeferRuntime.Tests.Torture;

public class TortureReportTests
{
    [Fact]
    public void Json_round_trips_a_failing_run()
    {
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.Locks | TortureSuites.Tasklets, TimeSpan.FromMilliseconds(100), o =>
        {
            o.LockTypes = [TortureLockTypes.SpinLock];
            o.Busted = true;
            o.Pinning = false; // shuffles still move threads between CPUs, and say that nothing was pinned
        }));
        Assert.False(report.Passed);

        string json = report.ToJson();
        var back = TortureReport.FromJson(json);

        Assert.Equal(json, back.ToJson());
        Assert.Equal(report.Render(), back.Render());
        Assert.False(back.Passed);
        Assert.Equal(report.Failures, back.Failures);
        Assert.Equal(TortureReport.SchemaVersion, back.Schema);
        Assert.Equal(6, back.Settings.Seed);
        Assert.Equal([TortureLockTypes.SpinLock, TortureLockTypes.LockBusted, TortureRunner.TaskletTest], back.Settings.Tests);
        Assert.Equal(report.Locks[1].Writes.Fail, back.Locks[1].Writes.Fail);
        Assert.Equal(report.Tasklets!.Schedules, back.Tasklets!.Schedules);
        Assert.All(back.Locks, l => Assert.Equal("pinning off", l.Placement));
        Assert.Equal("pinning off", back.Tasklets.Placement);
        Assert.StartsWith("pinning off", back.Environment.Placement, StringComparison.Ordinal);
        Assert.Contains("\"passed\": false", json, StringComparison.Ordinal);
        Assert.Contains("\"unfair\":", json, StringComparison.Ordinal);
    }

    [Fact]
    public void Cancelled_run_reports_what_ran_and_does_not_pass()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var progress = new List<TortureProgress>();
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.All), new SynchronousProgress(progress.Add), cts.Token);

        Assert.True(report.Cancelled);
        Assert.False(report.Passed);
        Assert.Empty(report.Locks);
        Assert.Empty(progress);
        Assert.Contains("End of run: FAILURE (cancelled)", report.Render(), StringComparison.Ordinal);
    }

    [Fact]
    public void Plan_lists_tests_in_run_order_and_progress_names_them()
    {
        var options = TortureTest.Options(TortureSuites.Tasklets | TortureSuites.Shutdown, TimeSpan.FromMilliseconds(50), o => o.Busted = true);
        Assert.Equal([TortureLockTypes.LockBusted, TortureRunner.TaskletTest, TortureRunner.ShutdownTest], TortureRunner.PlanTests(options));
        Assert.Equal([.. TortureLockTypes.Names, TortureRunner.TaskletTest, TortureRunner.WorkqueueTest, TortureRunner.PerCpuTest, TortureRunner.ShutdownTest],
            TortureRunner.PlanTests(new TortureOptions()));

        var progress = new List<TortureProgress>();
        var report = TortureRunner.Run(options, new SynchronousProgress(p => { lock (progress) { progress.Add(p); } }));
        Assert.Equal(TortureRunner.PlanTests(options), progress.Select(p => p.Test).Distinct());
        Assert.All(progress, p => Assert.Equal(3, p.TestCount));
        Assert.False(report.Passed); // lock_busted
        Assert.True(report.Tasklets!.Passed);
        Assert.True(report.Shutdown!.Passed);
    }

    /// <summary>Progress&lt;T&gt; posts to the thread pool; tests want the reports in order, on the reporting thread.</summary>
    private sealed class SynchronousProgress(Action<TortureProgress> report) : IProgress<TortureProgress>
    {
        public void Report(TortureProgress value) => report(value);
    }
}
