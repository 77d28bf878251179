using System.Collections.Concurrent;
using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// raise_softirq() to handler on the same CPU, by the kernel's own same-CPU path: the raise lands in a
/// local_bh_disable() section, and the local_bh_enable() that ends it runs the pending softirq in the
/// caller (__local_bh_enable_ip -> __do_softirq). Per operation: one bh-disabled section, one raise, one
/// handler run. Also the "bound raise is 0 B" proof (MemoryDiagnoser).
/// </summary>
/// <remarks>
/// <code>
/// | bench thread: kthread_bind to CPU 0, pinned to cpu/0's core                 |
/// |   local_bh_disable() ---raise_softirq(NET_RX)---> cpu/0 pending mask        |
/// |   local_bh_enable()  ---__do_softirq-----------> NET_RX handler, same thread |
///   cpu/0 (Hybrid idle): parked, never kicked; ksoftirqd/0: asleep
/// </code>
/// Peers, on the same thread, deferring a pre-allocated callback and running it right after:
/// <list type="bullet">
/// <item>Baseline: <see cref="ConcurrentQueue{T}"/> of <see cref="Action"/>, Enqueue + TryDequeue + invoke. The
/// cheapest thread-safe way .NET has to defer a callback (any thread may enqueue, as any thread may raise).</item>
/// <item>An unbounded single-reader <see cref="Channel{T}"/> of <see cref="Action"/>, TryWrite + TryRead + invoke:
/// what a user reaching for a producer/consumer hand-off would write.</item>
/// </list>
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("SameCpu", "Raise")]
public class SameCpuRaiseBenchmarks
{
    private const int Ops = 1024;

    private BoundThread _bound = null!;
    private Runtime _runtime = null!;
    private readonly ConcurrentQueue<Action> _queue = new();
    private readonly Channel<Action> _channel = Channel.CreateUnbounded<Action>(new UnboundedChannelOptions { SingleReader = true });
    private Action _callback = null!;
    private long _handled;

    [GlobalSetup]
    public void Setup()
    {
        _bound = new BoundThread();
        _runtime = _bound.Runtime;
        _runtime.OpenSoftirq(SoftirqVector.NetRx, () => _handled++);
        _callback = () => _handled++;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        long runs = _bound.Runtime.Cpus[0].GetSoftirqCount(SoftirqVector.NetRx);
        _bound.Dispose();
        if (_handled == 0)
        {
            throw new InvalidOperationException("no handler ran: the benchmark measured nothing");
        }
        Console.WriteLine($"// NET_RX runs on CPU 0: {runs}, handler calls (all paths): {_handled}");
    }

    /// <summary>local_bh_disable(); raise_softirq(NET_RX); local_bh_enable() runs the handler here.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void Softirq_RaiseInBhSection()
    {
        var runtime = _runtime;
        for (int i = 0; i < Ops; i++)
        {
            using (CpuContext.LocalBhDisable())
            {
                runtime.RaiseSoftirq(SoftirqVector.NetRx);
            }
        }
    }

    /// <summary>ConcurrentQueue&lt;Action&gt;: Enqueue, TryDequeue, invoke.</summary>
    [Benchmark(OperationsPerInvoke = Ops, Baseline = true)]
    public void Peer_ConcurrentQueue()
    {
        var queue = _queue;
        var callback = _callback;
        for (int i = 0; i < Ops; i++)
        {
            queue.Enqueue(callback);
            if (queue.TryDequeue(out var action))
            {
                action();
            }
        }
    }

    /// <summary>Channel&lt;Action&gt; (unbounded, single reader): TryWrite, TryRead, invoke.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void Peer_Channel()
    {
        var writer = _channel.Writer;
        var reader = _channel.Reader;
        var callback = _callback;
        for (int i = 0; i < Ops; i++)
        {
            writer.TryWrite(callback);
            if (reader.TryRead(out var action))
            {
                action();
            }
        }
    }
}
