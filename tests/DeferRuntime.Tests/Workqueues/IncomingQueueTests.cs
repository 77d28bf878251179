using DeferRuntime.Cpus;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>
/// Queueing without the pool lock while a worker of the pool runs (the incoming list): order, cancel,
/// flush and destroy must behave exactly as for items linked under the lock.
/// </summary>
public class IncomingQueueTests
{
    /// <summary>One CPU, cpu-intensive detection out of the way, and an item that runs (never sleeps) until released.</summary>
    private static (Runtime Rt, WorkStruct Spinner, Action Release) BootWithRunningWorker()
    {
        var rt = TestRuntime.Boot(1, o => o.WorkqueueCpuIntensiveThreshold = TimeSpan.FromSeconds(10));
        int release = 0, started = 0;
        var spinner = new WorkStruct(_ =>
        {
            Volatile.Write(ref started, 1);
            while (Volatile.Read(ref release) == 0)
            {
                Thread.SpinWait(20);
            }
        }, "spinner");
        rt.SystemWq.Queue(spinner);
        Wait.Until(() => Volatile.Read(ref started) == 1 && rt.Wq.CpuPool(0, false, false).Queue.Running != 0, "the spinner to run");
        return (rt, spinner, () => Volatile.Write(ref release, 1));
    }

    /// <summary>Releases the spinner however the test ends, so a failed assertion is not masked by a shutdown timeout.</summary>
    private sealed class Released(Action release) : IDisposable
    {
        public void Dispose() => release();
    }

    [Fact]
    public void Items_queued_behind_a_running_item_keep_fifo_order_and_can_be_cancelled_and_flushed()
    {
        var (rt, _, release) = BootWithRunningWorker();
        using var _rt = rt;
        using var released = new Released(release);
        var wq = rt.AllocWorkqueue("behind");
        var order = new List<int>();
        var items = Enumerable.Range(0, 100).Select(i => new WorkStruct(_ => order.Add(i), $"i{i}")).ToArray();
        for (int i = 0; i < items.Length; i++)
        {
            Assert.True(wq.Queue(items[i]));
            if (i == 50)
            {
                // A queue under the lock (from hard-IRQ context... any path) between lock-free ones.
                rt.OnCpu(0, () => Assert.False(wq.Queue(items[50])));
            }
        }
        // Still on the incoming list, or already spliced by the ticker (it splices every tick a pool is busy).
        Assert.Contains(items[0].ListKind, new[] { WorkListKind.Incoming, WorkListKind.Worklist });
        for (int i = 10; i < 20; i++)
        {
            Assert.True(items[i].CancelWork());
            Assert.False(items[i].IsPending);
        }
        Assert.True(items[30].CancelWorkSync());

        int waiters = rt.Wq.WaiterCount;
        var flusher = Guarded.Start(() => Assert.True(items[60].FlushWork()), "flusher");
        WqTest.UntilWaiters(rt, waiters + 1, "flush_work() on an item still on the incoming list to wait");
        release();
        flusher.Join();
        wq.Flush();
        var expected = Enumerable.Range(0, 100).Where(i => i is not (>= 10 and < 20) and not 30).ToArray();
        Assert.Equal(expected, order);
        wq.Destroy();
    }

    [Fact]
    public void A_flush_waits_for_items_still_on_the_incoming_list()
    {
        var (rt, _, release) = BootWithRunningWorker();
        using var _rt = rt;
        using var released = new Released(release);
        var wq = rt.AllocWorkqueue("flush-incoming");
        int ran = 0;
        var items = Enumerable.Range(0, 20).Select(i => new WorkStruct(_ => Interlocked.Increment(ref ran), $"i{i}")).ToArray();
        foreach (var item in items)
        {
            wq.Queue(item);
        }
        long before = wq.FlushesStarted;
        var flusher = Guarded.Start(() =>
        {
            wq.Flush();
            Assert.Equal(20, Volatile.Read(ref ran));
        }, "flusher");
        Wait.Until(() => wq.FlushesStarted > before, "the flush to take its color");
        release();
        flusher.Join();
        wq.Destroy();
    }

    [Fact]
    public void Destroy_racing_with_queuers_loses_nothing_every_queue_is_refused_or_runs_once()
    {
        int rounds = Stress.Scale(20, 200);
        for (int round = 0; round < rounds; round++)
        {
            using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
            var wq = rt.AllocWorkqueue($"doomed{round}");
            const int itemCount = 16;
            var runs = new long[itemCount];
            long accepted = 0, refused = 0;
            var items = Enumerable.Range(0, itemCount).Select(i => new WorkStruct(_ =>
            {
                Interlocked.Increment(ref runs[i]);
                Thread.SpinWait(100);
            }, $"d{i}")).ToArray();
            using var go = new ManualResetEventSlim();
            var queuers = Enumerable.Range(0, 2).Select(t => Guarded.Start(() =>
            {
                go.Wait();
                for (int n = 0; ; n++)
                {
                    try
                    {
                        if (wq.QueueOn(n & 1, items[(n + t) % itemCount]))
                        {
                            Interlocked.Increment(ref accepted);
                        }
                    }
                    catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
                    {
                        Interlocked.Increment(ref refused);
                        if (e is ObjectDisposedException)
                        {
                            return;
                        }
                    }
                }
            }, $"queuer/{t}")).ToList();
            go.Set();
            Wait.Until(() => Interlocked.Read(ref accepted) > 100, "queueing to get going");
            wq.Destroy();
            queuers.ForEach(q => q.Join());
            Assert.Equal(Interlocked.Read(ref accepted), runs.Sum());
            Assert.All(items, i => Assert.Equal(WorkBusy.None, i.Busy));
            Assert.True(Interlocked.Read(ref refused) >= 2);
        }
    }
}
