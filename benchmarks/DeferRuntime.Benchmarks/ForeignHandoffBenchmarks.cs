using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Interrupts;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Benchmarks;

/// <summary>
/// Handoff from an application thread (a thread of no CPU) to a polling CPU on the other core, as a round
/// trip: the producer defers a callback, the callback (on the consumer) bumps a done counter, the producer
/// spins until it sees it. One operation = one request + one callback + two cache-line transfers, so half
/// of it bounds the one-way latency from above; the percentiles are in the latency mode
/// (<c>-- latency</c>). Also the "foreign schedule / foreign raise / IRQ delivery are 0 B" proofs (MemoryDiagnoser).
/// </summary>
/// <remarks>
/// <code>
///   core P                                        core C
/// | bench thread (no CPU) |---tasklet_schedule--->| cpu/0 (IdlePolicy.Poll): TASKLET -> callback |
/// |   spin on done line   |&lt;------done++----------|                                              |
/// | bench thread (no CPU) |---raise_softirq------>| cpu/0 (IdlePolicy.Poll): NET_RX handler      |
/// | bench thread (device) |---assert edge line--->| cpu/0 (IdlePolicy.Poll): hard-IRQ handler    |
/// | bench thread          |---UnsafeQueueUserWorkItem---> thread-pool worker (unpinned)          |
/// | bench thread          |---Channel.TryWrite--->| dedicated reader thread: TryRead, SpinWait(1) |
/// | bench thread          |---Channel.TryWrite--->| await WaitToReadAsync on the thread pool      |
/// </code>
/// Each method gets its own setup: the Poll runtime is booted only for the runtime's rows, so it never
/// burns the core a peer's consumer needs. See <see cref="ForeignTopology"/> for why the runtime has one
/// CPU, pinned to core C. The peers' callback is a pre-allocated <see cref="IThreadPoolWorkItem"/>.
/// Baseline: the thread pool with a pre-allocated work item, what a .NET user would reach for first; the
/// spinning channel reader is the like-for-like peer of a Poll CPU (both burn core C).
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Foreign", "Handoff")]
public class ForeignHandoffBenchmarks
{
    private readonly DoneCounter _done = new();
    private long _issued; // the bench thread only
    private Runtime? _runtime;
    private Tasklet _tasklet = null!;
    private int _irq;
    private CountingWorkItem _item = null!;
    private Channel<IThreadPoolWorkItem> _channel = null!;
    private Thread? _spinningReader;
    private Task? _awaitingReader;
    private volatile bool _stop;

    // ---- setups and cleanups, one per row ----

    [GlobalSetup(Targets = [nameof(Tasklet_ForeignSchedule), nameof(Softirq_ForeignRaise), nameof(Irq_AssertToHandler)])]
    public void SetupRuntime()
    {
        _runtime = ForeignTopology.BootRemoteCpu(IdlePolicy.Poll);
        _tasklet = _runtime.CreateTasklet(_ => Volatile.Write(ref _done.Line.Value, _done.Line.Value + 1), "handoff");
        _runtime.OpenSoftirq(SoftirqVector.NetRx, () => Volatile.Write(ref _done.Line.Value, _done.Line.Value + 1));
        _irq = _runtime.Irqs.AllocateIrq();
        _runtime.Irqs.RequestIrq(_irq, (_, done) =>
        {
            var line = (DoneCounter)done!;
            Volatile.Write(ref line.Line.Value, line.Line.Value + 1);
            return IrqReturn.Handled;
        }, IrqFlags.None, "handoff", _done);
    }

    [GlobalCleanup(Targets = [nameof(Tasklet_ForeignSchedule), nameof(Softirq_ForeignRaise), nameof(Irq_AssertToHandler)])]
    public void CleanupRuntime()
    {
        _runtime!.Dispose();
        ForeignTopology.Unpin();
        Report();
    }

    [GlobalSetup(Target = nameof(Peer_ThreadPool))]
    public void SetupThreadPool()
    {
        ForeignTopology.PinProducer();
        _item = new CountingWorkItem(_done, concurrent: false);
    }

    [GlobalSetup(Target = nameof(Peer_ChannelSpinningReader))]
    public void SetupSpinningReader()
    {
        ForeignTopology.PinProducer();
        _item = new CountingWorkItem(_done, concurrent: false);
        _channel = Channel.CreateUnbounded<IThreadPoolWorkItem>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var reader = _channel.Reader;
        _spinningReader = ForeignTopology.StartConsumer("spinning reader", () =>
        {
            while (!_stop)
            {
                if (reader.TryRead(out var item))
                {
                    item.Execute();
                }
                else
                {
                    Thread.SpinWait(1);
                }
            }
        });
    }

    [GlobalSetup(Target = nameof(Peer_ChannelAwaitingReader))]
    public void SetupAwaitingReader()
    {
        ForeignTopology.PinProducer();
        _item = new CountingWorkItem(_done, concurrent: false);
        _channel = Channel.CreateUnbounded<IThreadPoolWorkItem>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var reader = _channel.Reader;
        _awaitingReader = Task.Run(async () =>
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                while (reader.TryRead(out var item))
                {
                    item.Execute();
                }
            }
        });
    }

    [GlobalCleanup(Targets = [nameof(Peer_ThreadPool), nameof(Peer_ChannelSpinningReader), nameof(Peer_ChannelAwaitingReader)])]
    public void CleanupPeers()
    {
        _stop = true;
        _channel?.Writer.Complete();
        _spinningReader?.Join();
        _awaitingReader?.Wait();
        ForeignTopology.Unpin();
        Report();
    }

    private void Report()
    {
        Console.WriteLine($"// handoffs issued: {_issued}, callbacks seen: {Volatile.Read(ref _done.Line.Value)}");
        if (_issued == 0 || Volatile.Read(ref _done.Line.Value) != _issued)
        {
            throw new InvalidOperationException("every handoff must be answered exactly once");
        }
    }

    // ---- the rows ----

    /// <summary>tasklet_schedule() from a thread of no CPU; the tasklet runs on cpu/0 (other core, Poll).</summary>
    [Benchmark]
    public void Tasklet_ForeignSchedule()
    {
        long target = ++_issued;
        _tasklet.Schedule();
        Spin.Until(ref _done.Line.Value, target);
    }

    /// <summary>raise_softirq(NET_RX) from a thread of no CPU; the handler runs on cpu/0 (other core, Poll).</summary>
    [Benchmark]
    public void Softirq_ForeignRaise()
    {
        long target = ++_issued;
        _runtime!.RaiseSoftirq(SoftirqVector.NetRx);
        Spin.Until(ref _done.Line.Value, target);
    }

    /// <summary>A device thread (no CPU) asserts an edge line; its hard-IRQ handler runs on cpu/0 (other core, Poll).</summary>
    [Benchmark]
    public void Irq_AssertToHandler()
    {
        long target = ++_issued;
        _runtime!.Irqs.AssertEdge(_irq);
        Spin.Until(ref _done.Line.Value, target);
    }

    /// <summary>ThreadPool.UnsafeQueueUserWorkItem(pre-allocated IThreadPoolWorkItem, preferLocal: false).</summary>
    [Benchmark(Baseline = true)]
    public void Peer_ThreadPool()
    {
        long target = ++_issued;
        ThreadPool.UnsafeQueueUserWorkItem(_item, preferLocal: false);
        Spin.Until(ref _done.Line.Value, target);
    }

    /// <summary>Channel (unbounded, single reader/writer) read by a dedicated thread pinned to core C that spins on TryRead.</summary>
    [Benchmark]
    public void Peer_ChannelSpinningReader()
    {
        long target = ++_issued;
        _channel.Writer.TryWrite(_item);
        Spin.Until(ref _done.Line.Value, target);
    }

    /// <summary>Channel (unbounded, single reader/writer) read by an async loop on the thread pool (await WaitToReadAsync).</summary>
    [Benchmark]
    public void Peer_ChannelAwaitingReader()
    {
        long target = ++_issued;
        _channel.Writer.TryWrite(_item);
        Spin.Until(ref _done.Line.Value, target);
    }
}
