using BenchmarkDotNet.Attributes;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// Throughput of tiny pre-allocated work items: queue_work() of <see cref="Batch"/> distinct items from a
/// thread of no CPU, then wait until all have run, against the thread pool doing the same with
/// pre-allocated <see cref="IThreadPoolWorkItem"/>s. One operation = one item queued and run; items/s =
/// 1e9 / Mean(ns). Also the "queueing a pre-allocated item is 0 B" proof (MemoryDiagnoser).
/// </summary>
/// <remarks>
/// <code>
///   core P                                          core C
/// | bench thread (no CPU) |---Batch x queue_work--->| kworker/0:M of a one-CPU runtime: runs them in  |
/// |   spin until all ran  |&lt;---done counter--------|   turn (keep_working: one worker, no wake-ups)  |
///
/// | bench thread          |---Batch x UnsafeQueueUserWorkItem---> thread-pool workers (both cores) |
/// </code>
/// Issue target: at least the thread pool's throughput. The runtime is booted Hybrid on core C (see
/// <see cref="ForeignTopology"/>); its worker polls between batches, as a busy pool does.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Throughput", "Workqueue")]
public class WorkqueueThroughputBenchmarks
{
    private const int RunsPerInvoke = 1024; // a multiple of every Batch

    private readonly DoneCounter _done = new();
    private readonly DoneCounter _poolDone = new();
    private Runtime _runtime = null!;
    private Workqueue _wq = null!;
    private WorkStruct[] _items = null!;
    private CountingWorkItem[] _poolItems = null!;
    private long _issued;
    private long _poolIssued;

    /// <summary>Items queued per batch before waiting for them.</summary>
    [Params(1, 16, 64)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _runtime = ForeignTopology.BootRemoteCpu(IdlePolicy.Hybrid);
        _wq = _runtime.SystemWq;
        _items = Enumerable.Range(0, Batch).Select(i => new WorkStruct(_ => Interlocked.Increment(ref _done.Line.Value), $"w{i}")).ToArray();
        _poolItems = Enumerable.Range(0, Batch).Select(_ => new CountingWorkItem(_poolDone, concurrent: true)).ToArray();
        var warm = new WorkStruct(_ => { }, "warm");
        _wq.Queue(warm);
        warm.FlushWork();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _runtime.Dispose();
        ForeignTopology.Unpin();
        Console.WriteLine($"// workqueue runs: {_done.Line.Value} of {_issued} queued; pool runs: {_poolDone.Line.Value}");
        if (_done.Line.Value != _issued)
        {
            throw new InvalidOperationException($"workqueue runs {_done.Line.Value} != queued {_issued}");
        }
    }

    /// <summary>Batch x queue_work() on system_wq, then spin until all ran.</summary>
    [Benchmark(OperationsPerInvoke = RunsPerInvoke)]
    public void Workqueue_ForeignBatch()
    {
        var wq = _wq;
        var items = _items;
        for (int done = 0; done < RunsPerInvoke; done += items.Length)
        {
            foreach (var item in items)
            {
                wq.Queue(item);
            }
            _issued += items.Length;
            Spin.Until(ref _done.Line.Value, _issued);
        }
    }

    /// <summary>Batch x ThreadPool.UnsafeQueueUserWorkItem(preferLocal: false), then spin until the workers ran them all.</summary>
    [Benchmark(OperationsPerInvoke = RunsPerInvoke, Baseline = true)]
    public void Peer_ThreadPool()
    {
        var items = _poolItems;
        for (int done = 0; done < RunsPerInvoke; done += items.Length)
        {
            foreach (var item in items)
            {
                ThreadPool.UnsafeQueueUserWorkItem(item, preferLocal: false);
            }
            _poolIssued += items.Length;
            Spin.Until(ref _poolDone.Line.Value, _poolIssued);
        }
    }
}

/// <summary>
/// Throughput when the producer is itself a work item on the pool's CPU (the shape of a driver's
/// bottom half fanning out work): one item queues 1024 distinct items on its own CPU's pool; concurrency
/// management keeps them on the same worker, back to back, after it returns. Peer: a thread-pool item
/// queueing 1024 items with preferLocal (its worker's local queue). One operation = one item queued and run.
/// </summary>
/// <remarks>
/// <code>
///   core C
/// | kworker/0:M: driver item: 1024 x queue_work(own CPU) ; then the 1024 items, same worker |
/// | pool worker: driver item: 1024 x UnsafeQueueUserWorkItem(preferLocal: true) ; workers run them |
/// </code>
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Throughput", "Workqueue")]
public class WorkqueueChainedThroughputBenchmarks
{
    private const int RunsPerInvoke = 1024;

    private readonly DoneCounter _done = new();
    private readonly DoneCounter _poolDone = new();
    private Runtime _runtime = null!;
    private WorkStruct _driver = null!;
    private WorkStruct[] _items = null!;
    private LocalQueueDriver _poolDriver = null!;
    private long _issued;
    private long _poolIssued;

    [GlobalSetup]
    public void Setup()
    {
        _runtime = ForeignTopology.BootRemoteCpu(IdlePolicy.Hybrid);
        var wq = _runtime.SystemWq;
        _items = Enumerable.Range(0, RunsPerInvoke).Select(i => new WorkStruct(_ => Interlocked.Increment(ref _done.Line.Value), $"w{i}")).ToArray();
        _driver = new WorkStruct(_ =>
        {
            foreach (var item in _items)
            {
                wq.Queue(item);
            }
        }, "driver");
        _poolDriver = new LocalQueueDriver(Enumerable.Range(0, RunsPerInvoke).Select(_ => new CountingWorkItem(_poolDone, concurrent: true)).ToArray());
        wq.Queue(_driver);
        _issued = RunsPerInvoke;
        Spin.Until(ref _done.Line.Value, _issued);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _runtime.Dispose();
        ForeignTopology.Unpin();
    }

    /// <summary>A work item queues 1024 items on its own CPU's pool; they run on the same worker after it.</summary>
    [Benchmark(OperationsPerInvoke = RunsPerInvoke)]
    public void Workqueue_ChainedOnOwnCpu()
    {
        _runtime.SystemWq.Queue(_driver);
        _issued += RunsPerInvoke;
        Spin.UntilQuietly(ref _done.Line.Value, _issued);
    }

    /// <summary>A thread-pool item queues 1024 items to its worker's local queue.</summary>
    [Benchmark(OperationsPerInvoke = RunsPerInvoke, Baseline = true)]
    public void Peer_ThreadPoolLocal()
    {
        ThreadPool.UnsafeQueueUserWorkItem(_poolDriver, preferLocal: false);
        _poolIssued += RunsPerInvoke;
        Spin.UntilQuietly(ref _poolDone.Line.Value, _poolIssued);
    }
}
