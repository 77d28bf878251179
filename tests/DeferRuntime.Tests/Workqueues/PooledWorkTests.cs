using DeferRuntime.Cpus;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>Workqueue.QueuePooled: per-request work in pooled items, in the core library (no Hosting).</summary>
public class PooledWorkTests
{
    // A state type per test, so each test has a pool of its own (pools are per state type, process-wide).
    private readonly record struct AllocProbe(int Value);
    private readonly record struct OnProbe(int[] Cpus, int Index);
    private readonly record struct RefusedProbe(int Value);
    private readonly record struct BurstProbe(ManualResetEventSlim Gate);

    private static long s_sum;

    [Fact]
    public void Runs_every_callback_once_with_its_own_state_from_many_threads()
    {
        using var runtime = TestRuntime.Boot(2);
        var wq = runtime.AllocWorkqueue("core-pooled", WorkqueueFlags.Unbound, maxActive: 8);
        const int Threads = 4, PerThread = 2_000;
        var seen = new int[Threads * PerThread];
        var producers = Enumerable.Range(0, Threads).Select(t => Guarded.Start(() =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                wq.QueuePooled((Seen: seen, Index: (t * PerThread) + i), static s => Interlocked.Increment(ref s.Seen[s.Index]));
            }
        }, $"core-pooled-producer-{t}")).ToArray();
        foreach (var p in producers)
        {
            p.Join();
        }
        wq.Flush();
        Assert.All(seen, n => Assert.Equal(1, n));
    }

    [Fact]
    public void Allocates_nothing_per_queue_once_the_pool_is_warm()
    {
        using var runtime = TestRuntime.Boot(2);
        var wq = runtime.AllocWorkqueue("core-pooled-alloc", WorkqueueFlags.Unbound, maxActive: 4);
        Interlocked.Exchange(ref s_sum, 0);
        long allocated = 0;
        const int Rounds = 20, PerRound = 64;
        for (int round = 0; round < Rounds; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < PerRound; i++)
            {
                wq.QueuePooled(new AllocProbe(i), static p => Interlocked.Add(ref s_sum, p.Value));
            }
            long spent = GC.GetAllocatedBytesForCurrentThread() - before;
            wq.Flush(); // every item ran and is back in the pool (returned before its completion is counted)
            if (round >= 2)
            {
                allocated += spent;
            }
        }
        Assert.Equal(Rounds * (PerRound * (PerRound - 1) / 2), Interlocked.Read(ref s_sum));
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void QueuePooledOn_runs_on_the_cpu_asked_for()
    {
        using var runtime = TestRuntime.Boot(2);
        var wq = runtime.AllocWorkqueue("core-pooled-on", WorkqueueFlags.None);
        var cpus = new int[40];
        for (int i = 0; i < cpus.Length; i++)
        {
            wq.QueuePooledOn(i % 2, new OnProbe(cpus, i), static p => p.Cpus[p.Index] = CpuContext.CurrentCpuId);
        }
        wq.Flush();
        for (int i = 0; i < cpus.Length; i++)
        {
            Assert.Equal(i % 2, cpus[i]);
        }
        Assert.ThrowsAny<ArgumentException>(() => wq.QueuePooledOn(7, new OnProbe(cpus, 0), static _ => { }));
        Assert.Throws<ArgumentNullException>(() => wq.QueuePooled(new OnProbe(cpus, 0), null!));
    }

    [Fact]
    public void A_refused_queue_throws_and_puts_the_item_back()
    {
        using var runtime = TestRuntime.Boot(1);
        var wq = runtime.AllocWorkqueue("core-pooled-refused", WorkqueueFlags.Unbound);
        wq.QueuePooled(new RefusedProbe(1), static _ => { });
        wq.Flush();
        int idle = PooledWork<RefusedProbe>.IdleCount;
        Assert.True(idle >= 1);
        wq.Destroy();
        Assert.ThrowsAny<Exception>(() => wq.QueuePooled(new RefusedProbe(2), static _ => Assert.Fail("a refused item ran")));
        Assert.Equal(idle, PooledWork<RefusedProbe>.IdleCount); // rented, refused, returned
    }

    [Fact]
    public void A_burst_beyond_the_limit_is_left_to_the_gc()
    {
        using var runtime = TestRuntime.Boot(1);
        var wq = runtime.AllocOrderedWorkqueue("core-pooled-burst");
        using var gate = new ManualResetEventSlim();
        int burst = Workqueue.MaxPooledPerStateType + 50;
        for (int i = 0; i < burst; i++)
        {
            wq.QueuePooled(new BurstProbe(gate), static p => p.Gate.Wait()); // all rented at once: the first holds the rest queued
        }
        gate.Set();
        wq.Flush();
        Assert.InRange(PooledWork<BurstProbe>.IdleCount, Workqueue.MaxPooledPerStateType, Workqueue.MaxPooledPerStateType + 1);
    }
}
