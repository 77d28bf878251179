using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>
/// The workqueue contract (pending bit, non-reentrancy, exact flushes, cancel, drain, destroy,
/// conservation), run against each kind of workqueue: bound, unbound, ordered.
/// </summary>
public abstract class WorkqueueContractTests
{
    /// <summary>A workqueue of the kind under test; <paramref name="maxActive"/> 1 makes a second item wait behind the first.</summary>
    private protected abstract Workqueue Create(Runtime rt, string name, int maxActive = 0);

    private protected static Runtime Boot(int cpus = 2) => TestRuntime.Boot(cpus, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);

    [Fact]
    public void Queueing_a_pending_item_returns_false_and_it_runs_once()
    {
        using var rt = Boot();
        var wq = Create(rt, "pending", maxActive: 1);
        var gate = new Completion();
        var started = new StrongBox<int>();
        int runs = 0;
        var blocker = WqTest.Blocker(gate, started, "blocker");
        var item = new WorkStruct(_ => Interlocked.Increment(ref runs), "item");

        Assert.True(wq.QueueOn(0, blocker));
        Wait.Until(() => started.Value == 1, "the blocker to start");
        Assert.True(wq.QueueOn(0, item));
        Assert.True(item.IsPending);
        Assert.Equal(WorkBusy.Pending, item.Busy);
        for (int i = 0; i < 100; i++)
        {
            Assert.False(wq.QueueOn(0, item));
            Assert.False(wq.Queue(item));
        }
        gate.Complete();
        Assert.True(item.FlushWork());
        Assert.Equal(1, Volatile.Read(ref runs));
        Assert.False(item.IsPending);
        Assert.False(item.FlushWork()); // idle now: nothing to wait for

        Assert.True(wq.Queue(item)); // not pending any more: queueable again
        item.FlushWork();
        Assert.Equal(2, Volatile.Read(ref runs));
        wq.Destroy();
    }

    [Fact]
    public void Queueing_while_it_runs_gives_exactly_one_more_run()
    {
        using var rt = Boot();
        var wq = Create(rt, "requeue");
        var gate = new Completion();
        int runs = 0;
        var item = new WorkStruct(_ =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                gate.WaitForCompletion();
            }
        }, "item");

        Assert.True(wq.Queue(item));
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the first run to start");
        Assert.False(item.IsPending, "PENDING is cleared before the function runs");
        Assert.Equal(WorkBusy.Running, item.Busy);
        Assert.True(wq.Queue(item));
        for (int i = 0; i < 10; i++)
        {
            Assert.False(wq.Queue(item));
        }
        Assert.Equal(WorkBusy.Running | WorkBusy.Pending, item.Busy);
        gate.Complete();
        wq.Flush();
        Assert.Equal(2, Volatile.Read(ref runs));
        wq.Destroy();
    }

    [Fact]
    public void Never_runs_concurrently_with_itself_under_hammering()
    {
        using var rt = Boot();
        var wq = Create(rt, "hammered");
        var meter = new OverlapMeter();
        long runs = 0, accepted = 0;
        var item = new WorkStruct(_ =>
        {
            meter.Enter();
            Thread.SpinWait(200); // widen the window in which a second worker could enter
            Interlocked.Increment(ref runs);
            meter.Exit();
        }, "hammered");

        int perThread = Stress.Scale(20_000, 400_000);
        var hammers = Enumerable.Range(0, 3).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < perThread; n++)
            {
                bool ok = (n & 1) == 0 ? wq.Queue(item) : wq.QueueOn((n >> 1) & 1, item);
                if (ok)
                {
                    Interlocked.Increment(ref accepted);
                }
            }
        }, $"hammer/{i}")).ToList();
        // From inside the runtime too: hard-IRQ context on both CPUs, and from another item.
        var chained = new WorkStruct(_ =>
        {
            if (wq.Queue(item))
            {
                Interlocked.Increment(ref accepted);
            }
        }, "chainer");
        for (int n = 0; n < 200; n++)
        {
            rt.SmpCallFunctionSingle(n & 1, () =>
            {
                if (wq.Queue(item))
                {
                    Interlocked.Increment(ref accepted);
                }
            }, wait: true);
            rt.SystemWq.Queue(chained);
        }
        hammers.ForEach(h => h.Join());
        rt.SystemWq.Flush();
        wq.Flush();

        Assert.Equal(1, meter.Max);
        Assert.Equal(Interlocked.Read(ref accepted), Interlocked.Read(ref runs)); // each accepted queue ran exactly once
        Assert.InRange(Interlocked.Read(ref runs), 1, (3L * perThread) + 400);
        wq.Destroy();
    }

    [Fact]
    public void Flush_waits_for_exactly_the_work_queued_before_it()
    {
        using var rt = Boot();
        var wq = Create(rt, "flushed");
        var earlierGate = new Completion();
        var laterGate = new Completion();
        var earlierStarted = new StrongBox<int>();
        var laterStarted = new StrongBox<int>();
        int earlierDone = 0;
        var earlier = new WorkStruct(_ =>
        {
            Interlocked.Increment(ref earlierStarted.Value);
            earlierGate.WaitForCompletion();
            Interlocked.Increment(ref earlierDone);
        }, "earlier");
        var later = WqTest.Blocker(laterGate, laterStarted, "later");

        long flushes = wq.FlushesStarted;
        wq.Queue(earlier);
        var flusher = Guarded.Start(() =>
        {
            wq.Flush();
            Assert.Equal(1, Volatile.Read(ref earlierDone));
        }, "flusher");
        Wait.Until(() => wq.FlushesStarted > flushes, "the flush to take its color");
        // Queued after the flush began: a later item blocked on a gate nobody opens until the end.
        wq.Queue(later);
        if (!wq.IsOrdered)
        {
            Wait.Until(() => laterStarted.Value == 1, "the later item to start beside the earlier one");
        }
        earlierGate.Complete();
        flusher.Join(); // returns although 'later' is still blocked (or, ordered, waiting behind)
        Assert.True(later.IsPending || later.Busy == WorkBusy.Running);

        laterGate.Complete();
        wq.Flush();
        Assert.Equal(1, laterStarted.Value);
        wq.Destroy();
    }

    [Fact]
    public void Concurrent_flushes_each_wait_for_their_own_work()
    {
        using var rt = Boot();
        var wq = Create(rt, "colors");
        const int flushers = 20; // more than the 15 colors the ring holds at once
        var gates = Enumerable.Range(0, flushers).Select(_ => new Completion()).ToArray();
        var done = new int[flushers];
        var threads = new List<Guarded>();
        for (int i = 0; i < flushers; i++)
        {
            int k = i;
            wq.Queue(new WorkStruct(_ =>
            {
                gates[k].WaitForCompletion();
                Volatile.Write(ref done[k], 1);
            }, $"item{k}"));
            long before = wq.FlushesStarted;
            threads.Add(Guarded.Start(() =>
            {
                wq.Flush();
                for (int j = 0; j <= k; j++)
                {
                    Assert.Equal(1, Volatile.Read(ref done[j])); // everything queued before this flush
                }
            }, $"flusher{k}"));
            if (k < 15)
            {
                Wait.Until(() => wq.FlushesStarted > before, $"flush {k} to take a color");
            }
        }
        for (int i = 0; i < flushers; i++)
        {
            gates[i].Complete();
        }
        threads.ForEach(t => t.Join());
        wq.Destroy();
    }

    [Fact]
    public void Flush_work_waits_for_the_instance_queued_before_the_call_only()
    {
        using var rt = Boot();
        var wq = Create(rt, "flush_work");
        var firstGate = new Completion();
        var secondGate = new Completion();
        int runs = 0;
        var item = new WorkStruct(_ =>
        {
            int run = Interlocked.Increment(ref runs);
            (run == 1 ? firstGate : secondGate).WaitForCompletion();
        }, "item");

        wq.Queue(item);
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the first run to start");
        int waiters = rt.Wq.WaiterCount;
        var flusher = Guarded.Start(() => Assert.True(item.FlushWork()), "flusher");
        WqTest.UntilWaiters(rt, waiters + 1, "flush_work() to sleep");
        Assert.True(wq.Queue(item)); // a second instance after the call: not waited for
        firstGate.Complete();
        flusher.Join();
        Wait.Until(() => Volatile.Read(ref runs) == 2, "the second run to start");

        secondGate.Complete();
        item.FlushWork();
        Assert.Equal(2, Volatile.Read(ref runs));
        wq.Destroy();
    }

    [Fact]
    public void Cancel_sync_of_a_pending_item_takes_it_off_and_it_never_runs()
    {
        using var rt = Boot();
        var wq = Create(rt, "cancel-pending", maxActive: 1);
        var gate = new Completion();
        var started = new StrongBox<int>();
        int runs = 0;
        var blocker = WqTest.Blocker(gate, started, "blocker");
        var item = new WorkStruct(_ => Interlocked.Increment(ref runs), "victim");

        wq.QueueOn(0, blocker);
        Wait.Until(() => started.Value == 1, "the blocker to start");
        Assert.True(wq.QueueOn(0, item));
        Assert.True(item.CancelWorkSync());
        Assert.False(item.IsPending);
        Assert.False(item.CancelWorkSync()); // idle now
        Assert.False(item.CancelWork());
        Assert.False(item.FlushWork());
        gate.Complete();
        wq.Flush();
        Assert.Equal(0, Volatile.Read(ref runs));

        Assert.True(wq.Queue(item)); // cancel leaves it queueable
        item.FlushWork();
        Assert.Equal(1, Volatile.Read(ref runs));
        wq.Destroy();
    }

    [Fact]
    public void Cancel_sync_waits_for_the_running_instance_and_blocks_requeues_meanwhile()
    {
        using var rt = Boot();
        var wq = Create(rt, "cancel-running");
        var gate = new Completion();
        int runs = 0, requeueAccepted = -1;
        var item = new WorkStruct(w =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                gate.WaitForCompletion();
                Volatile.Write(ref requeueAccepted, wq.Queue(w) ? 1 : 0);
            }
        }, "item");

        wq.Queue(item);
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the item to start");
        int waiters = rt.Wq.WaiterCount;
        int returned = 0;
        var canceler = Guarded.Start(() =>
        {
            Assert.False(item.CancelWorkSync()); // it was running, not pending
            Volatile.Write(ref returned, 1);
            Assert.Equal(WorkBusy.None, item.Busy);
        }, "canceler");
        WqTest.UntilWaiters(rt, waiters + 1, "cancel_work_sync() to wait for the running instance");
        Assert.Equal(0, Volatile.Read(ref returned));
        gate.Complete();
        canceler.Join();
        Assert.Equal(0, Volatile.Read(ref requeueAccepted)); // the canceler held PENDING: the re-queue was refused
        wq.Flush();
        Assert.Equal(1, Volatile.Read(ref runs));
        wq.Destroy();
    }

    [Fact]
    public void Drain_runs_chained_work_and_refuses_anything_else_meanwhile()
    {
        using var rt = Boot();
        var wq = Create(rt, "drained");
        const int chain = 50;
        var gate = new Completion();
        int runs = 0;
        var item = new WorkStruct(w =>
        {
            int run = Interlocked.Increment(ref runs);
            if (run == 10)
            {
                gate.WaitForCompletion(); // hold the chain mid-way while the test pokes at the drain
            }
            if (run < chain)
            {
                Assert.True(wq.Queue(w)); // chained: allowed while draining
            }
        }, "chain");
        var outsider = new WorkStruct(_ => { }, "outsider");

        wq.Queue(item);
        var drainer = Guarded.Start(wq.Drain, "drainer");
        Wait.Until(() => wq.IsDraining && Volatile.Read(ref runs) >= 10, "the drain to start with the chain held");
        var refused = Assert.Throws<InvalidOperationException>(() => wq.Queue(outsider));
        Assert.Contains("drain", refused.Message, StringComparison.Ordinal);
        Assert.Contains("'outsider'", refused.Message, StringComparison.Ordinal);
        Assert.False(outsider.IsPending); // the refused queue left nothing behind
        gate.Complete();
        drainer.Join();
        Assert.Equal(chain, Volatile.Read(ref runs));
        Assert.False(wq.IsDraining);
        Assert.True(wq.Queue(outsider)); // a drained workqueue takes work again
        outsider.FlushWork();
        wq.Destroy();
    }

    [Fact]
    public void Destroy_drains_then_refuses_all_queueing()
    {
        using var rt = Boot();
        var wq = Create(rt, "destroyed");
        int runs = 0;
        var items = Enumerable.Range(0, 64).Select(i => new WorkStruct(_ =>
        {
            Thread.SpinWait(1000);
            Interlocked.Increment(ref runs);
        }, $"item{i}")).ToArray();
        foreach (var item in items)
        {
            wq.Queue(item);
        }
        wq.Destroy();
        Assert.Equal(items.Length, Volatile.Read(ref runs));
        Assert.True(wq.IsDestroyed);
        var e = Assert.Throws<ObjectDisposedException>(() => wq.Queue(items[0]));
        Assert.Contains("destroy_workqueue()", e.Message, StringComparison.Ordinal);
        Assert.False(items[0].IsPending);
        Assert.Throws<ObjectDisposedException>(wq.Flush);
        wq.Destroy(); // twice: harmless
        wq.Dispose();
    }

    [Fact]
    public void Every_accepted_item_runs_once_or_is_reported_cancelled_under_a_random_mixed_workload()
    {
        using var rt = Boot();
        var wq = Create(rt, "mixed");
        const int itemCount = 32;
        long queued = 0, cancelled = 0;
        var runs = new long[itemCount];
        var items = new WorkStruct[itemCount];
        for (int i = 0; i < itemCount; i++)
        {
            int k = i;
            items[i] = new WorkStruct(_ =>
            {
                Interlocked.Increment(ref runs[k]);
                if ((Interlocked.Read(ref runs[k]) & 7) == 0 && wq.Queue(items[(k * 7 + 3) % itemCount]))
                {
                    Interlocked.Increment(ref queued); // chained from an item
                }
                if ((k & 3) == 0)
                {
                    Thread.SpinWait(50);
                }
            }, $"mixed{k}");
        }

        // Each thread's ops: enough to cover every interleaving class many times; small enough that a
        // starved shared machine (pinned workers at a tenth of a core) stays far from the 30 s ceiling.
        int ops = Stress.Scale(10_000, 400_000);
        var threads = Enumerable.Range(0, 3).Select(t => Guarded.Start(() =>
        {
            var rng = new Random(1234 + t);
            for (int n = 0; n < ops; n++)
            {
                var item = items[rng.Next(itemCount)];
                switch (rng.Next(10))
                {
                    case < 5:
                        if (wq.Queue(item))
                        {
                            Interlocked.Increment(ref queued);
                        }
                        break;
                    case 5:
                        if (wq.QueueOn(rng.Next(2), item))
                        {
                            Interlocked.Increment(ref queued);
                        }
                        break;
                    case 6:
                    case 7:
                        if (item.CancelWork())
                        {
                            Interlocked.Increment(ref cancelled);
                        }
                        break;
                    case 8:
                        if (item.CancelWorkSync())
                        {
                            Interlocked.Increment(ref cancelled);
                        }
                        break;
                    default:
                        item.FlushWork();
                        break;
                }
            }
        }, $"mixer/{t}")).ToList();
        threads.ForEach(t => t.Join());
        wq.Drain();

        long ran = runs.Sum();
        Assert.Equal(Interlocked.Read(ref queued), ran + Interlocked.Read(ref cancelled));
        Assert.All(items, i => Assert.Equal(WorkBusy.None, i.Busy));
        wq.Destroy();
    }
}

/// <summary>The contract on a bound (per-CPU) workqueue.</summary>
public sealed class BoundWorkqueueContractTests : WorkqueueContractTests
{
    private protected override Workqueue Create(Runtime rt, string name, int maxActive = 0) => rt.AllocWorkqueue(name, WorkqueueFlags.None, maxActive);
}

/// <summary>The contract on an unbound workqueue.</summary>
public sealed class UnboundWorkqueueContractTests : WorkqueueContractTests
{
    private protected override Workqueue Create(Runtime rt, string name, int maxActive = 0) => rt.AllocWorkqueue(name, WorkqueueFlags.Unbound, maxActive);
}

/// <summary>The contract on an ordered workqueue (max_active is always 1).</summary>
public sealed class OrderedWorkqueueContractTests : WorkqueueContractTests
{
    private protected override Workqueue Create(Runtime rt, string name, int maxActive = 0) => rt.AllocOrderedWorkqueue(name);
}
