using System.Collections.Concurrent;
using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Cpus;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// tasklet_schedule() to callback on the same CPU: the schedule lands in a local_bh_disable() section,
/// and the local_bh_enable() that ends it runs TASKLET_SOFTIRQ, hence the tasklet, in the caller. Per
/// operation: one bh-disabled section, one schedule, one callback. Issue target: under 100 ns and 0 B.
/// Also the "bound schedule is 0 B" proof (MemoryDiagnoser).
/// </summary>
/// <remarks>
/// <code>
/// | bench thread: kthread_bind to CPU 0, pinned to cpu/0's core                       |
/// |   local_bh_disable() ---tasklet_schedule---> cpu/0 tasklet_vec + TASKLET pending  |
/// |   local_bh_enable()  ---__do_softirq -> tasklet_action---> callback, same thread  |
///   cpu/0 (Hybrid idle): parked, never kicked; ksoftirqd/0: asleep
/// </code>
/// Peers, on the same thread, with a pre-allocated <see cref="IThreadPoolWorkItem"/> (the .NET analogue of
/// a pre-allocated tasklet): Baseline <see cref="ConcurrentQueue{T}"/> Enqueue + TryDequeue + Execute, and an
/// unbounded single-reader <see cref="Channel{T}"/> TryWrite + TryRead + Execute.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("SameCpu", "Tasklet")]
public class SameCpuTaskletBenchmarks
{
    private const int Ops = 1024;

    private readonly DoneCounter _done = new();
    private readonly ConcurrentQueue<IThreadPoolWorkItem> _queue = new();
    private readonly Channel<IThreadPoolWorkItem> _channel = Channel.CreateUnbounded<IThreadPoolWorkItem>(new UnboundedChannelOptions { SingleReader = true });
    private BoundThread _bound = null!;
    private Tasklet _tasklet = null!;
    private IThreadPoolWorkItem _item = null!;
    private long _runs;

    [GlobalSetup]
    public void Setup()
    {
        _bound = new BoundThread();
        _tasklet = _bound.Runtime.CreateTasklet(_ => _runs++, "bench");
        _item = new CountingWorkItem(_done, concurrent: false);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bound.Dispose();
        Console.WriteLine($"// tasklet runs: {_tasklet.RunCount} (callback count {_runs}); peer runs: {_done.Line.Value}");
        if (_tasklet.RunCount != _runs)
        {
            throw new InvalidOperationException($"tasklet RunCount {_tasklet.RunCount} != callback count {_runs}");
        }
    }

    /// <summary>local_bh_disable(); tasklet_schedule(); local_bh_enable() runs the tasklet here.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void Tasklet_ScheduleInBhSection()
    {
        var tasklet = _tasklet;
        for (int i = 0; i < Ops; i++)
        {
            using (CpuContext.LocalBhDisable())
            {
                tasklet.Schedule();
            }
        }
    }

    /// <summary>ConcurrentQueue&lt;IThreadPoolWorkItem&gt;: Enqueue, TryDequeue, Execute.</summary>
    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void Peer_ConcurrentQueue()
    {
        var queue = _queue;
        var item = _item;
        for (int i = 0; i < Ops; i++)
        {
            queue.Enqueue(item);
            if (queue.TryDequeue(out var next))
            {
                next.Execute();
            }
        }
    }

    /// <summary>Channel&lt;IThreadPoolWorkItem&gt; (unbounded, single reader): TryWrite, TryRead, Execute.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void Peer_Channel()
    {
        var writer = _channel.Writer;
        var reader = _channel.Reader;
        var item = _item;
        for (int i = 0; i < Ops; i++)
        {
            writer.TryWrite(item);
            if (reader.TryRead(out var next))
            {
                next.Execute();
            }
        }
    }
}
