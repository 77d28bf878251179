using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>
/// Concurrency management (nr_running, keep_working, sleeping/running hooks, cpu-intensive detection),
/// worker pools (naming, placement, retirement), the rescuer and the stall watchdog.
/// </summary>
public class ConcurrencyManagementTests
{
    [Fact]
    public void On_one_cpu_an_item_blocked_on_a_completion_does_not_stop_the_next_item()
    {
        using var rt = TestRuntime.Boot(1);
        var done = new Completion();
        int firstFinished = 0, secondRan = 0;
        string? firstThread = null, secondThread = null;
        var first = new WorkStruct(_ =>
        {
            firstThread = Thread.CurrentThread.Name;
            done.WaitForCompletion(); // sleeps: the pool counts it out and wakes another worker
            Volatile.Write(ref firstFinished, 1);
        }, "waiter");
        var second = new WorkStruct(_ =>
        {
            secondThread = Thread.CurrentThread.Name;
            Volatile.Write(ref secondRan, 1);
            done.Complete();
        }, "completer");

        Assert.True(rt.SystemWq.QueueOn(0, first));
        Assert.True(rt.SystemWq.QueueOn(0, second));
        rt.SystemWq.Flush();
        Assert.Equal(1, Volatile.Read(ref firstFinished));
        Assert.Equal(1, Volatile.Read(ref secondRan));
        Assert.NotEqual(firstThread, secondThread);
        Assert.StartsWith("kworker/0:", firstThread, StringComparison.Ordinal);
        Assert.StartsWith("kworker/0:", secondThread, StringComparison.Ordinal);
    }

    [Fact]
    public void On_one_cpu_a_cpu_bound_item_does_not_stop_the_next_item_after_the_threshold()
    {
        using var rt = TestRuntime.Boot(1);
        int flag = 0, spinnerDone = 0;
        var spinner = new WorkStruct(_ =>
        {
            // Never sleeps: only the cpu-intensive detection (10 ms without sleeping) lets the pool start
            // the next item, which is the one that sets the flag.
            while (Volatile.Read(ref flag) == 0)
            {
                Thread.SpinWait(20);
            }
            Volatile.Write(ref spinnerDone, 1);
        }, "spinner");
        var setter = new WorkStruct(_ => Volatile.Write(ref flag, 1), "setter");

        Assert.True(rt.SystemWq.QueueOn(0, spinner));
        Assert.True(rt.SystemWq.QueueOn(0, setter));
        Wait.Until(() => Volatile.Read(ref spinnerDone) == 1, "the spinner to see the flag set by the item behind it");
        rt.SystemWq.Flush();
    }

    [Theory]
    [InlineData("ManualResetEventSlim")]
    [InlineData("Monitor.Wait")]
    [InlineData("Task.Wait")]
    public void On_one_cpu_an_item_blocked_outside_the_runtime_does_not_stop_the_next_item(string primitive)
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the OS's view of a thread's state is read from /proc
        }
        using var rt = TestRuntime.Boot(1);
        using var gate = new ManualResetEventSlim();
        var monitor = new object();
        bool signalled = false;
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bool released = false;
        string? firstThread = null, secondThread = null;
        // The first item blocks in a .NET primitive the runtime knows nothing about; only the ticker's look
        // at the OS's thread state lets the pool start the second item, which is the one that releases it.
        var first = new WorkStruct(_ =>
        {
            firstThread = Thread.CurrentThread.Name;
            switch (primitive)
            {
                case "ManualResetEventSlim":
                    released = gate.Wait(TimeSpan.FromSeconds(60));
                    break;
                case "Monitor.Wait":
                    lock (monitor)
                    {
                        while (!signalled && Monitor.Wait(monitor, TimeSpan.FromSeconds(60)))
                        {
                        }
                        released = signalled;
                    }
                    break;
                default:
                    released = tcs.Task.Wait(TimeSpan.FromSeconds(60));
                    break;
            }
        }, "blocked-outside");
        var second = new WorkStruct(_ =>
        {
            secondThread = Thread.CurrentThread.Name;
            gate.Set();
            lock (monitor)
            {
                signalled = true;
                Monitor.PulseAll(monitor);
            }
            tcs.TrySetResult();
        }, "releaser");

        Assert.True(rt.SystemWq.QueueOn(0, first));
        Assert.True(rt.SystemWq.QueueOn(0, second));
        rt.SystemWq.Flush();
        Assert.True(released, $"the first item was released by the second, not by its 60 s timeout ({primitive})");
        Assert.NotEqual(firstThread, secondThread);
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        pool.Lock();
        long countedOut = pool.BlockedOutside;
        int running = pool.Hot.NrRunning;
        pool.Unlock();
        Assert.True(countedOut >= 1, "the ticker counted the blocked worker out");
        Assert.Equal(0, running); // re-counted when its item returned, then idle: nr_running back to zero
    }

    /// <summary>
    /// wq_worker_running(): a worker counted out for a block in the OS counts again once it runs (from an
    /// independent review: the first version kept it counted out until its item returned).
    /// </summary>
    [Fact]
    public void A_worker_counted_out_for_an_os_block_counts_again_once_it_runs()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        // The CPU-bound rest of the item is about concurrency, not cpu-intensive detection: out of reach.
        using var rt = TestRuntime.Boot(1, o => o.WorkqueueCpuIntensiveThreshold = TimeSpan.FromSeconds(10));
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        using var gate = new ManualResetEventSlim();
        int runningAfterWake = -1;
        var first = new WorkStruct(_ =>
        {
            gate.Wait(); // blocked in the OS: counted out by the ticker
            long looks = rt.Wq.TickerLooks;
            while (rt.Wq.TickerLooks < looks + 3)
            {
                Thread.SpinWait(100); // running again, CPU-bound: two looks see it use CPU (or runnable)
            }
            pool.Lock();
            runningAfterWake = pool.Hot.NrRunning;
            pool.Unlock();
        }, "blocks-then-computes");
        Assert.True(rt.SystemWq.QueueOn(0, first));
        Wait.Until(() =>
        {
            pool.Lock();
            long n = pool.BlockedOutside;
            pool.Unlock();
            return n >= 1;
        }, "the ticker to count the worker out");
        gate.Set();
        rt.SystemWq.Flush();
        Assert.Equal(1, runningAfterWake);
    }

    [Fact]
    public void An_item_blocked_outside_the_runtime_holds_its_pool_when_the_detection_is_off()
    {
        using var rt = TestRuntime.Boot(1, o => o.WorkqueueDetectBlockedOutside = false);
        using var gate = new ManualResetEventSlim();
        using var firstBlocked = new ManualResetEventSlim();
        int secondRan = 0;
        var first = new WorkStruct(_ =>
        {
            firstBlocked.Set();
            gate.Wait();
        }, "blocked-outside");
        var second = new WorkStruct(_ => Volatile.Write(ref secondRan, 1), "behind");
        Assert.True(rt.SystemWq.QueueOn(0, first));
        Assert.True(firstBlocked.Wait(TimeSpan.FromSeconds(60)));
        Assert.True(rt.SystemWq.QueueOn(0, second));
        // No window: wait for the ticker to look 20 more times (two blocked looks count a worker out when
        // the detection is on; the count changes inside the tick), then nothing may have been counted out.
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        long ticks = rt.Wq.TickerLooks;
        Wait.Until(() => rt.Wq.TickerLooks >= ticks + 20, "20 ticker looks while the first item is blocked");
        pool.Lock();
        long countedOut = pool.BlockedOutside;
        pool.Unlock();
        Assert.Equal(0, countedOut);
        Assert.Equal(0, Volatile.Read(ref secondRan));
        gate.Set();
        rt.SystemWq.Flush();
        Assert.Equal(1, Volatile.Read(ref secondRan));
    }

    [Fact]
    public void Items_that_do_not_block_run_one_after_another_on_one_worker()
    {
        // The cpu-intensive detection is wall time: on a loaded machine the batch item could pass 10 ms
        // and rightly be counted out. This test is about keep_working, so put the threshold out of reach.
        using var rt = TestRuntime.Boot(1, o => o.WorkqueueCpuIntensiveThreshold = TimeSpan.FromSeconds(10));
        var threads = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        var meter = new OverlapMeter();
        var items = Enumerable.Range(0, 200).Select(i => new WorkStruct(_ =>
        {
            meter.Enter();
            threads.TryAdd(Thread.CurrentThread.Name!, 0);
            meter.Exit();
        }, $"short{i}")).ToArray();
        // Queued from one item, so the whole batch is on the worklist before the pool looks again:
        // keep_working lets the running worker take them all, nobody else is woken.
        var batch = new WorkStruct(_ =>
        {
            foreach (var item in items)
            {
                rt.SystemWq.Queue(item);
            }
        }, "batch");
        rt.SystemWq.Queue(batch);
        batch.FlushWork();
        rt.SystemWq.Flush(); // the batch's items: queued before this flush (not before one that began while it ran)
        Assert.Equal(1, meter.Max);
        Assert.Single(threads);
    }

    [Fact]
    public void Cpu_intensive_workqueue_items_do_not_hold_back_the_pool()
    {
        using var rt = TestRuntime.Boot(1);
        var wq = rt.AllocWorkqueue("intensive", WorkqueueFlags.CpuIntensive);
        int flag = 0;
        var spinner = new WorkStruct(_ =>
        {
            while (Volatile.Read(ref flag) == 0)
            {
                Thread.SpinWait(20);
            }
        }, "spinner");
        var setter = new WorkStruct(_ => Volatile.Write(ref flag, 1), "setter");
        wq.Queue(spinner);
        rt.SystemWq.Queue(setter); // same CPU pool: the WQ_CPU_INTENSIVE item does not count as running
        wq.Flush();
        rt.SystemWq.Flush();
        wq.Destroy();
    }

    [Fact]
    public void Max_active_is_never_exceeded()
    {
        using var rt = TestRuntime.Boot(1);
        const int maxActive = 3;
        var wq = rt.AllocWorkqueue("limited", WorkqueueFlags.None, maxActive);
        var meter = new OverlapMeter();
        var release = new WaitQueue();
        int open = 0, ran = 0;
        var items = Enumerable.Range(0, 12).Select(i => new WorkStruct(_ =>
        {
            meter.Enter();
            release.WaitEvent(() => Volatile.Read(ref open) != 0); // sleeps: the pool would happily start more
            Interlocked.Increment(ref ran);
            meter.Exit();
        }, $"limited{i}")).ToArray();
        foreach (var item in items)
        {
            Assert.True(wq.Queue(item));
        }
        Wait.Until(() => meter.Inside == maxActive, "max_active items to be running");
        Assert.Equal(maxActive, meter.Max);
        Assert.Equal(items.Length - maxActive, items.Count(i => i.IsPending)); // the rest wait, inactive

        Volatile.Write(ref open, 1);
        release.WakeUpAll();
        wq.Flush();
        Assert.Equal(items.Length, Volatile.Read(ref ran));
        Assert.Equal(maxActive, meter.Max);

        wq.SetMaxActive(6);
        Volatile.Write(ref open, 0);
        foreach (var item in items)
        {
            wq.Queue(item);
        }
        Wait.Until(() => meter.Inside == 6, "the raised max_active to be used");
        Volatile.Write(ref open, 1);
        release.WakeUpAll();
        wq.Flush();
        Assert.Equal(6, meter.Max);
        wq.Destroy();
    }

    [Fact]
    public void Ordered_workqueue_runs_one_at_a_time_in_strict_fifo_order()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        var wq = rt.AllocOrderedWorkqueue("ordered");
        int count = Stress.Scale(2_000, 50_000);
        var order = new int[count];
        int next = 0;
        var meter = new OverlapMeter();
        var items = new WorkStruct[count];
        for (int i = 0; i < count; i++)
        {
            int k = i;
            items[i] = new WorkStruct(_ =>
            {
                meter.Enter();
                order[Interlocked.Increment(ref next) - 1] = k;
                if ((k & 15) == 0)
                {
                    Delay.Msleep(0); // a sleep must not let the next item start
                }
                meter.Exit();
            }, $"o{k}");
        }
        for (int i = 0; i < count; i++)
        {
            Assert.True((i & 1) == 0 ? wq.Queue(items[i]) : wq.QueueOn(1, items[i]));
        }
        wq.Flush();
        Assert.Equal(1, meter.Max);
        Assert.Equal(Enumerable.Range(0, count), order);
        wq.Destroy();
    }

    [Fact]
    public void Workers_are_named_and_bound_to_their_cpu()
    {
        using var rt = TestRuntime.Boot(2);
        var wq = rt.AllocWorkqueue("hp", WorkqueueFlags.HighPri);
        var unbound = rt.AllocWorkqueue("ub", WorkqueueFlags.Unbound);
        var seen = new System.Collections.Concurrent.ConcurrentBag<(string Name, int Cpu, bool Bound)>();
        void Record() => seen.Add((Thread.CurrentThread.Name!, CpuContext.CurrentCpuId, CpuContext.InAtomic));
        var items = new[]
        {
            (rt.SystemWq, 0), (rt.SystemWq, 1), (wq, 0), (wq, 1), (unbound, 0),
        };
        foreach (var (q, cpu) in items)
        {
            var w = new WorkStruct(_ => Record(), "probe");
            q.QueueOn(cpu, w);
            w.FlushWork();
        }
        Assert.Contains(seen, s => s.Name.StartsWith("kworker/0:", StringComparison.Ordinal) && !s.Name.EndsWith('H') && s.Cpu == 0);
        Assert.Contains(seen, s => s.Name.StartsWith("kworker/1:", StringComparison.Ordinal) && !s.Name.EndsWith('H') && s.Cpu == 1);
        Assert.Contains(seen, s => s.Name.StartsWith("kworker/0:", StringComparison.Ordinal) && s.Name.EndsWith('H') && s.Cpu == 0);
        Assert.Contains(seen, s => s.Name.StartsWith("kworker/1:", StringComparison.Ordinal) && s.Name.EndsWith('H') && s.Cpu == 1);
        Assert.Contains(seen, s => s.Name.StartsWith("kworker/u", StringComparison.Ordinal));
        Assert.All(seen, s => Assert.False(s.Bound, $"{s.Name} ran its item in atomic context"));
        foreach (var p in rt.Placements.Where(p => p.Thread.StartsWith("kworker/", StringComparison.Ordinal) && p.Core is not null))
        {
            Assert.Equal(rt.Cpus[p.Cpu].Core, p.Core);
        }
        wq.Destroy();
        unbound.Destroy();
    }

    [Fact]
    public void Idle_workers_beyond_two_retire_after_the_idle_timeout()
    {
        using var rt = TestRuntime.Boot(1, o => o.WorkqueueIdleTimeout = TimeSpan.FromMilliseconds(50));
        var gate = new Completion();
        var started = new StrongBox<int>();
        const int blockers = 6;
        for (int i = 0; i < blockers; i++)
        {
            rt.SystemWq.Queue(WqTest.Blocker(gate, started, $"b{i}"));
        }
        Wait.Until(() => started.Value == blockers, "every blocker to get a worker of its own");
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        Assert.True(pool.Counts.Workers > blockers, "each sleeping item got a worker, plus one in reserve");
        gate.CompleteAll();
        rt.SystemWq.Flush();
        Wait.Until(() => pool.Counts is { Workers: 2, Idle: 2 }, "the pool to shrink to the two idle workers it keeps");
        // And it still works.
        var probe = new WorkStruct(_ => { }, "after");
        rt.SystemWq.Queue(probe);
        probe.FlushWork();
    }

    /// <summary>
    /// Two MemReclaim workqueues rescue one pool at once (the kernel allows it): the pool keeps both
    /// rescuers in view, so the watchdog's in-flight list (and find_worker_executing_work) still sees the
    /// first after the second has finished. It kept one rescuer slot before, which the second overwrote
    /// and then cleared.
    /// </summary>
    [Fact]
    public void Two_rescuers_on_one_pool_are_both_in_view()
    {
        using var rt = TestRuntime.Boot(1);
        var first = rt.AllocWorkqueue("reclaim-a", WorkqueueFlags.MemReclaim);
        var second = rt.AllocWorkqueue("reclaim-b", WorkqueueFlags.MemReclaim);
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        foreach (var wq in new[] { first, second })
        {
            var warm = new WorkStruct(_ => { }, "warm");
            wq.Queue(warm);
            warm.FlushWork();
        }
        var gate = new Completion();
        WqTest.OccupyAllButOneWorker(rt, pool, gate);
        var held = new Completion();
        int heldStarted = 0;
        string? heldOn = null, quickOn = null;
        var slow = new WorkStruct(_ =>
        {
            heldOn = Thread.CurrentThread.Name;
            Volatile.Write(ref heldStarted, 1);
            held.WaitForCompletion();
        }, "rescued-and-held");
        var quick = new WorkStruct(_ => quickOn = Thread.CurrentThread.Name, "rescued-quick");
        first.Queue(slow);
        Wait.Until(() => Volatile.Read(ref heldStarted) == 1, "the first rescuer to run its item");
        second.Queue(quick);
        quick.FlushWork();
        Assert.Equal("reclaim-a", heldOn);
        Assert.Equal("reclaim-b", quickOn);

        pool.Lock();
        string inFlight = pool.DescribeWorkLocked(16);
        var executing = pool.FindWorkerExecuting(slow);
        pool.Unlock();
        Assert.Contains("'rescued-and-held'", inFlight, StringComparison.Ordinal);
        Assert.NotNull(executing);
        Assert.Equal("reclaim-a", executing.Name);

        rt.Wq.HoldWorkerCreation = false;
        held.Complete();
        gate.CompleteAll();
        slow.FlushWork();
        rt.SystemWq.Flush();
        first.Destroy();
        second.Destroy();
    }

    [Fact]
    public void Rescuer_runs_memreclaim_work_when_no_worker_can_be_created()
    {
        using var rt = TestRuntime.Boot(1);
        var reclaim = rt.AllocWorkqueue("reclaim", WorkqueueFlags.MemReclaim);
        var warm = new WorkStruct(_ => { }, "warm");
        reclaim.Queue(warm);
        warm.FlushWork();
        var pool = rt.Wq.CpuPool(0, highPri: false, bh: false);
        var gate = new Completion();
        WqTest.OccupyAllButOneWorker(rt, pool, gate);
        // The last worker wakes for this item, finds no idle worker in reserve, becomes the manager and
        // fails to create one; after 10 ms the ticker sends mayday and the rescuer runs it.
        string? ranOn = null;
        var rescued = new WorkStruct(_ => ranOn = Thread.CurrentThread.Name, "rescued");
        reclaim.Queue(rescued);
        rescued.FlushWork();
        Assert.Equal("reclaim", ranOn);

        rt.Wq.HoldWorkerCreation = false;
        gate.CompleteAll();
        rt.SystemWq.Flush();
        reclaim.Destroy();
    }

    [Fact]
    public void Stall_watchdog_reports_a_pool_that_makes_no_progress()
    {
        using var rt = TestRuntime.Boot(1, o => o.WorkqueueWatchdogThreshold = TimeSpan.FromMilliseconds(100));
        var gate = new Completion();
        var started = new StrongBox<int>();
        int workers = WqTest.StallCpu0Pool(rt, gate, started).Blockers;
        // The last blocker waits: its worker is stuck managing, no rescuer: the pool stalls.
        Wait.Until(() => rt.Faults.Recent.Any(r => r.Source == "workqueue watchdog"), "the watchdog to report the stall");
        var report = rt.Faults.Recent.First(r => r.Source == "workqueue watchdog").Exception.Message;
        Assert.Contains("BUG: workqueue lockup", report, StringComparison.Ordinal);
        Assert.Contains("'stuck0'", report, StringComparison.Ordinal); // in flight
        Assert.Contains($"pending: 'stuck{workers - 1}'", report, StringComparison.Ordinal);

        rt.Wq.HoldWorkerCreation = false;
        gate.CompleteAll();
        rt.SystemWq.Flush();
    }
}
