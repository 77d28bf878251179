using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Cpus;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// Tasklet throughput on one CPU: how many schedule+run pairs a bound thread gets through per second.
/// Each bh-disabled section schedules <see cref="Batch"/> distinct tasklets; its local_bh_enable() runs
/// them all in one TASKLET_SOFTIRQ pass, as a busy CPU drains its tasklet_vec. Batch 1 is the same path
/// as <see cref="SameCpuTaskletBenchmarks"/>. One operation = one tasklet run; runs/s = 1e9 / Mean(ns).
/// Issue target: at least 20 M runs/s on one CPU (50 ns per run).
/// </summary>
/// <remarks>
/// <code>
/// | bench thread: kthread_bind to CPU 0, pinned to cpu/0's core                              |
/// |   local_bh_disable() ---Batch x tasklet_schedule---> cpu/0 tasklet_vec (Batch entries)  |
/// |   local_bh_enable()  ---one __do_softirq pass------> Batch callbacks, same thread        |
///
/// | bench thread |---Batch x UnsafeQueueUserWorkItem--->| thread-pool workers (both cores) |
/// |  spin until  |&lt;---------------all Batch done--------|                                  |
/// </code>
/// Peers with the same batching and pre-allocated <see cref="IThreadPoolWorkItem"/>s: Baseline an unbounded
/// single-reader <see cref="Channel{T}"/> written and drained on the bench thread (the single-CPU peer),
/// and the thread pool, whose workers run the batch on any core while the bench thread waits for it.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Throughput", "Tasklet")]
public class TaskletThroughputBenchmarks
{
    private const int RunsPerInvoke = 1024; // a multiple of every Batch

    private readonly DoneCounter _done = new();
    private readonly DoneCounter _poolDone = new();
    private readonly Channel<IThreadPoolWorkItem> _channel = Channel.CreateUnbounded<IThreadPoolWorkItem>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private BoundThread _bound = null!;
    private Tasklet[] _tasklets = null!;
    private CountingWorkItem[] _items = null!;
    private CountingWorkItem[] _poolItems = null!;
    private long _runs;
    private long _poolIssued;

    /// <summary>Tasklets scheduled per bh-disabled section (work items queued per batch for the peers).</summary>
    [Params(1, 16, 64)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _bound = new BoundThread();
        _tasklets = Enumerable.Range(0, Batch).Select(i => _bound.Runtime.CreateTasklet(_ => _runs++, $"t{i}")).ToArray();
        _items = Enumerable.Range(0, Batch).Select(_ => new CountingWorkItem(_done, concurrent: false)).ToArray();
        _poolItems = Enumerable.Range(0, Batch).Select(_ => new CountingWorkItem(_poolDone, concurrent: true)).ToArray();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bound.Dispose();
        long counted = _tasklets.Sum(t => t.RunCount);
        Console.WriteLine($"// tasklet runs: {counted} (callback count {_runs}); channel runs: {_done.Line.Value}; pool runs: {_poolDone.Line.Value}");
        if (counted != _runs)
        {
            throw new InvalidOperationException($"tasklet RunCount sum {counted} != callback count {_runs}");
        }
    }

    /// <summary>Batch x tasklet_schedule() in a bh-disabled section; local_bh_enable() runs them all.</summary>
    [Benchmark(OperationsPerInvoke = RunsPerInvoke)]
    public void Tasklet_BatchInBhSection()
    {
        var tasklets = _tasklets;
        for (int done = 0; done < RunsPerInvoke; done += tasklets.Length)
        {
            using (CpuContext.LocalBhDisable())
            {
                foreach (var t in tasklets)
                {
                    t.Schedule();
                }
            }
        }
    }

    /// <summary>Batch x Channel.TryWrite, then TryRead + Execute until empty, on the bench thread.</summary>
    [Benchmark(OperationsPerInvoke = RunsPerInvoke, Baseline = true)]
    public void Peer_Channel()
    {
        var writer = _channel.Writer;
        var reader = _channel.Reader;
        var items = _items;
        for (int done = 0; done < RunsPerInvoke; done += items.Length)
        {
            foreach (var item in items)
            {
                writer.TryWrite(item);
            }
            while (reader.TryRead(out var next))
            {
                next.Execute();
            }
        }
    }

    /// <summary>Batch x ThreadPool.UnsafeQueueUserWorkItem(preferLocal: false), then spin until the workers ran them all.</summary>
    [Benchmark(OperationsPerInvoke = RunsPerInvoke)]
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
