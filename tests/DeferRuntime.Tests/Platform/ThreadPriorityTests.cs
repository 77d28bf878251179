using System.Globalization;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Platform;

/// <summary>
/// The nice a runtime thread runs at is the one its placement names, whatever thread created it: Linux
/// threads inherit their creator's nice, and each pool's first kworker is created by the nice-19
/// workqueue ticker. Before this was set explicitly, every such kworker ran at nice 19 while the report
/// said nice 0, and under idle=poll a bound work item waited up to 263 ms (perf sched) for a core that a
/// nice -10 cpu/N polled on.
/// </summary>
public sealed class ThreadPriorityTests
{
    [Fact]
    public void Kworkers_run_at_their_pools_nice_whoever_created_them()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the OS nice is read from /proc/thread-self/stat
        }
        using var rt = TestRuntime.Boot(2, o => o.Priorities = PriorityPolicy.Nice);
        var bound = rt.AllocWorkqueue("prio_bound", WorkqueueFlags.None);
        var highPri = rt.AllocWorkqueue("prio_highpri", WorkqueueFlags.HighPri);
        var unbound = rt.AllocWorkqueue("prio_unbound", WorkqueueFlags.Unbound);
        var seen = new List<(string Thread, int Nice, int Expected)>();
        foreach (var (wq, expected) in new[] { (bound, 0), (highPri, -20), (unbound, 0) })
        {
            for (int cpu = 0; cpu < rt.Cpus.Count; cpu++)
            {
                var done = new Completion();
                var work = new WorkStruct(_ =>
                {
                    lock (seen)
                    {
                        seen.Add((Thread.CurrentThread.Name ?? "?", ReadOwnNice(), expected));
                    }
                    done.Complete();
                }, "read-nice");
                wq.QueueOn(cpu, work);
                Assert.True(done.WaitForCompletionTimeout(Wait.Ceiling) > 0, "the item never ran");
            }
        }
        Assert.Equal(6, seen.Count);
        foreach (var (thread, nice, expected) in seen)
        {
            // What the OS refused is reported, never assumed granted (raising a nice needs CAP_SYS_NICE).
            var refused = rt.Placements.FirstOrDefault(p => p.Thread == thread && !p.PriorityGranted);
            if (refused is null)
            {
                Assert.True(nice == expected, $"{thread} runs at nice {nice}, its pool's is {expected}");
            }
        }
        bound.Destroy();
        highPri.Destroy();
        unbound.Destroy();
    }

    /// <summary>Field 19 of /proc/thread-self/stat, the calling thread's nice as the scheduler uses it.</summary>
    private static int ReadOwnNice()
    {
        string stat = File.ReadAllText("/proc/thread-self/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(fields[19 - 3], CultureInfo.InvariantCulture);
    }
}
