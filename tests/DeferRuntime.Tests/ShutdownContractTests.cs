using System.Diagnostics;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests;

/// <summary>
/// The shutdown contract a program relies on: after Shutdown(timeout) returns, no callback of the runtime
/// starts, ever; every accepted item either ran, or is in the report as not started, or as still running
/// (its thread left behind), exactly once; and the call returns within its timeout plus a small bound
/// (the 5 s checked here only catches a hang: the bound is measured in RuntimeShutdownBoundTests and
/// docs). Each scenario runs many times: the races it guards against are between a thread that returns
/// from a stuck callback and shutdown's close.
/// </summary>
public class ShutdownContractTests
{
    private static readonly TimeSpan Timeout = ShutdownTesting.Timeout;
    private static readonly TimeSpan HangBound = ShutdownTesting.HangBound;
    private static readonly int Iterations = Environment.GetEnvironmentVariable("DEFER_STRESS") == "1" ? 40 : 4;

    [Fact]
    public void Work_queued_behind_a_stuck_item_is_reported_not_started_and_never_starts()
    {
        for (int i = 0; i < Iterations; i++)
        {
            var rt = TestRuntime.Boot(2);
            using var stuck = new StuckCallback();
            var ordered = rt.AllocOrderedWorkqueue("contract_ordered");
            var blocker = new WorkStruct(_ => stuck.Block(), "stuck");
            ordered.Queue(blocker);
            stuck.WaitEntered();

            // Behind the stuck item on its ordered workqueue: never start. On another: all run.
            var behind = Enumerable.Range(0, 20).Select(n => new WorkStruct(_ => stuck.CountStart(), $"behind-{n}")).ToArray();
            foreach (var w in behind)
            {
                Assert.True(ordered.Queue(w));
            }
            int ranElsewhere = 0;
            var elsewhere = Enumerable.Range(0, 10).Select(n => new WorkStruct(_ => Interlocked.Increment(ref ranElsewhere), $"elsewhere-{n}")).ToArray();
            foreach (var w in elsewhere)
            {
                rt.SystemWq.Queue(w);
            }

            var report = ShutdownTesting.ShutdownWithinBound(rt);
            int startedAtReturn = stuck.Starts;

            Assert.False(report.Completed);
            Assert.Equal(10, Volatile.Read(ref ranElsewhere));
            Assert.Equal(0, startedAtReturn);
            var running = Assert.Single(report.StillRunning);
            Assert.Same(blocker, running.Item);
            Assert.Equal(ShutdownItemKind.Work, running.Kind);
            Assert.Equal("contract_ordered", running.Workqueue);
            Assert.StartsWith("kworker/", running.Thread, StringComparison.Ordinal);
            Assert.Contains(report.StuckThreads, t => t.Thread == running.Thread);
            AssertExactlyOnce(report.NotStarted, behind);
            Assert.All(report.NotStarted, item => Assert.Equal(ShutdownItemState.NotStarted, item.State));
            Assert.DoesNotContain(report.NotStarted, item => elsewhere.Contains(item.Item));

            // Let the stuck item return: its worker must start none of what was behind it.
            stuck.ReleaseAndJoinItsThread();
            Assert.Equal(0, stuck.Starts);
        }
    }

    [Fact]
    public void Tasklets_held_by_a_stuck_cpu_are_reported_not_started_and_never_start()
    {
        for (int i = 0; i < Iterations; i++)
        {
            var rt = TestRuntime.Boot(2);
            using var stuck = new StuckCallback();
            var spinner = rt.CreateTasklet(_ => stuck.Spin(), "spinner");
            var batch = Enumerable.Range(0, 5).Select(n => rt.CreateTasklet(_ => stuck.CountStart(), $"batch-{n}")).ToArray();
            // From a hard IRQ on CPU 0: all six go on CPU 0's list, run by irq exit in one batch, the
            // spinner first. The other five are then held by the stuck thread, on no shared list.
            rt.OnCpu(0, () =>
            {
                spinner.Schedule();
                foreach (var t in batch)
                {
                    t.Schedule();
                }
            });
            stuck.WaitEntered();
            // Scheduled from outside while CPU 0 is stuck: on its shared list.
            var later = Enumerable.Range(0, 5).Select(n => rt.CreateTasklet(_ => stuck.CountStart(), $"later-{n}")).ToArray();
            rt.Bound(0, () =>
            {
                foreach (var t in later)
                {
                    t.Schedule(); // a task of CPU 0: onto CPU 0's shared list
                }
            });

            var report = ShutdownTesting.ShutdownWithinBound(rt);

            Assert.Equal(0, stuck.Starts);
            var running = Assert.Single(report.StillRunning);
            Assert.Same(spinner, running.Item);
            Assert.Equal(ShutdownItemKind.Tasklet, running.Kind);
            Assert.Equal(0, running.Cpu);
            AssertExactlyOnce(report.NotStarted.Where(n => n.Kind == ShutdownItemKind.Tasklet), [.. batch, .. later]);

            stuck.ReleaseAndJoinItsThread();
            Assert.Equal(0, stuck.Starts);
        }
    }

    [Fact]
    public void A_completed_shutdown_reports_nothing_left()
    {
        var rt = TestRuntime.Boot(2);
        int ran = 0;
        for (int n = 0; n < 50; n++)
        {
            rt.SystemWq.Queue(new WorkStruct(_ => Interlocked.Increment(ref ran), $"w{n}"));
        }
        var report = rt.Shutdown(TimeSpan.FromSeconds(30));
        Assert.True(report.Completed, string.Join("; ", report.NotStarted.Concat(report.StillRunning)));
        Assert.Empty(report.NotStarted);
        Assert.Empty(report.StillRunning);
        Assert.Equal(50, ran);
    }

    [Fact]
    public async Task ShutdownAsync_returns_to_its_caller_at_once_and_reports_as_Shutdown_does()
    {
        var rt = TestRuntime.Boot(2);
        using var stuck = new StuckCallback();
        var blocker = new WorkStruct(_ => stuck.Block(), "stuck");
        rt.SystemWq.Queue(blocker);
        stuck.WaitEntered();
        var behind = new WorkStruct(_ => stuck.CountStart(), "behind");
        Assert.True(rt.SystemWq.Queue(behind));

        var clock = Stopwatch.StartNew();
        var shutdown = rt.ShutdownAsync(Timeout);
        // The drain cannot finish before the timeout (the item is stuck): a caller that got the task back
        // was not blocked by the drain.
        Assert.False(shutdown.IsCompleted, "ShutdownAsync blocked its caller");
        var report = await shutdown.WaitAsync(HangBound);
        Assert.True(clock.Elapsed < HangBound);
        int startsAtReturn = stuck.Starts;
        // Concurrency management may have run it on another worker while the first was blocked: it
        // either ran, or is listed as not started, never both.
        Assert.Equal(1, startsAtReturn + report.NotStarted.Count(i => ReferenceEquals(i.Item, behind)));

        Assert.False(report.Completed);
        Assert.Same(blocker, Assert.Single(report.StillRunning).Item);
        // A second caller, sync or async, gets the same report once the first is done.
        Assert.Same(report, rt.Shutdown(Timeout));
        Assert.Same(report, await rt.ShutdownAsync(Timeout));
        stuck.ReleaseAndJoinItsThread();
        Assert.Equal(startsAtReturn, stuck.Starts);
    }

    [Fact]
    public async Task DisposeAsync_drains_what_was_accepted()
    {
        var rt = TestRuntime.Boot(2);
        int ran = 0;
        var tasklet = rt.CreateTasklet(_ => Interlocked.Increment(ref ran), "counted");
        rt.OnCpu(1, tasklet.Schedule);
        for (int n = 0; n < 20; n++)
        {
            rt.SystemWq.Queue(new WorkStruct(_ => Interlocked.Increment(ref ran), $"w{n}"));
        }
        await rt.DisposeAsync();
        Assert.Equal(21, Volatile.Read(ref ran));
        Assert.True(rt.IsShutDown);
    }

    private static void AssertExactlyOnce(IEnumerable<RuntimeShutdownItem> items, IReadOnlyCollection<object> expected)
    {
        var listed = items.Select(i => i.Item).Where(o => o is not null).ToList();
        foreach (var e in expected)
        {
            Assert.Equal(1, listed.Count(o => ReferenceEquals(o, e)));
        }
    }
}
