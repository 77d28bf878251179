using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Benchmarks.Latency;

/// <summary>
/// Concurrency management measured: every worker of a pool is blocked, and an item waits behind them;
/// latency = send start -> start of the item behind, which is the one that releases the blocked ones.
/// DeferRuntime: a one-CPU runtime (core C), a blocker and the item behind it queued on CPU 0's pool.
/// The blocker waits in a runtime <see cref="Completion"/> (wq_worker_sleeping(): another worker is
/// woken at once) or in a plain <see cref="SemaphoreSlim"/> the runtime cannot see (the ticker counts the
/// worker out once the OS reports it sleeping, two looks in a row).
/// </summary>
/// <remarks>
/// <code>
///   core P                                      core C
/// | producer (no CPU) |--queue blocker, item-->| kworker/0:A: blocker waits                   |
/// |  spin on probe    |&lt;--probe line-----------| kworker/0:B: item (probe), releases blocker |
/// </code>
/// </remarks>
internal sealed class BlockedWorkqueuePath(bool runtimePrimitive) : LatencyPath
{
    private readonly Completion _completion = new();
    private readonly SemaphoreSlim _semaphore = new(0);
    private Runtime? _runtime;
    private WorkStruct? _blocker, _behind;

    public override string Name => runtimePrimitive
        ? "DeferRuntime: kworker blocked in a runtime Completion -> next item on the pool starts"
        : "DeferRuntime: kworker blocked in a plain SemaphoreSlim.Wait -> next item on the pool starts";

    public override long MinGapNs => 1_000_000; // the released blocker finishes before the next sample

    public override int? Samples => runtimePrimitive ? 20_000 : 2_000;

    public override int? Warmup => 200;

    public override void Start(LatencyProbe probe)
    {
        _runtime = ForeignTopology.BootRemoteCpu(IdlePolicy.Hybrid);
        _blocker = runtimePrimitive
            ? new WorkStruct(_ => _completion.WaitForCompletion(), "blocker")
            : new WorkStruct(_ => _semaphore.Wait(), "blocker");
        _behind = runtimePrimitive
            ? new WorkStruct(_ =>
            {
                probe.OnCallback();
                _completion.Complete();
            }, "behind")
            : new WorkStruct(_ =>
            {
                probe.OnCallback();
                _semaphore.Release();
            }, "behind");
        var warm = new WorkStruct(_ => { }, "warm");
        _runtime.SystemWq.Queue(warm);
        warm.FlushWork();
    }

    public override void Send()
    {
        var wq = _runtime!.SystemWq;
        wq.QueueOn(0, _blocker!);
        wq.QueueOn(0, _behind!);
    }

    public override void Dispose()
    {
        _runtime?.Dispose();
        _semaphore.Dispose();
    }
}

/// <summary>
/// The peer: every ThreadPool thread blocked in a plain SemaphoreSlim.Wait (one blocker queued per thread
/// the pool has at send time), then the item behind them, which releases them all. The pool has no
/// hook for blocking outside Task.Wait, so the item starts when its starvation detection injects a thread.
/// </summary>
internal sealed class BlockedThreadPoolPath : LatencyPath
{
    private readonly SemaphoreSlim _semaphore = new(0);
    private Blocker? _blocker;
    private Behind? _behind;

    public override string Name => "peer: every ThreadPool thread blocked in SemaphoreSlim.Wait -> next item starts";

    public override long MinGapNs => 1_000_000;

    public override int? Samples => 30;

    public override int? Warmup => 2;

    public override void Start(LatencyProbe probe)
    {
        _blocker = new Blocker(_semaphore);
        _behind = new Behind(probe, _semaphore);
    }

    public override void Send()
    {
        int threads = ThreadPool.ThreadCount;
        _behind!.Blocked = threads;
        for (int i = 0; i < threads; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_blocker!, preferLocal: false);
        }
        ThreadPool.UnsafeQueueUserWorkItem(_behind, preferLocal: false);
    }

    public override void Dispose() => _semaphore.Dispose();

    private sealed class Blocker(SemaphoreSlim semaphore) : IThreadPoolWorkItem
    {
        public void Execute() => semaphore.Wait();
    }

    private sealed class Behind(LatencyProbe probe, SemaphoreSlim semaphore) : IThreadPoolWorkItem
    {
        public int Blocked;

        public void Execute()
        {
            probe.OnCallback();
            if (Blocked > 0)
            {
                semaphore.Release(Blocked);
            }
        }
    }
}
