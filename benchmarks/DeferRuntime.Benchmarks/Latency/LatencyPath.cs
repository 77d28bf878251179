using System.Threading.Channels;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Benchmarks.Latency;

/// <summary>
/// One way of deferring a callback from the producer (a thread of no CPU on core P) to core C, as
/// <see cref="ForeignHandoffBenchmarks"/> lays it out: <see cref="Start"/> builds the consumer side,
/// <see cref="Send"/> is the producer's request (allocation-free), Dispose tears it down.
/// </summary>
internal abstract class LatencyPath : IDisposable
{
    public abstract string Name { get; }

    public abstract void Start(LatencyProbe probe);

    public abstract void Send();

    public abstract void Dispose();

    /// <summary>Added to every random gap: paths that measure a parked consumer wait long enough for it to park.</summary>
    public virtual long MinGapNs => 0;

    /// <summary>Measured samples for this path, when it differs from the command line's (slow, idle paths).</summary>
    public virtual int? Samples => null;

    /// <summary>Warm-up samples for this path, when it differs from the command line's (slow paths); at least 1 s of warm-up either way.</summary>
    public virtual int? Warmup => null;

    /// <summary>Samples for a path with an idle gap: about 4 s of gaps, at most 40,000 (null: the command line's).</summary>
    protected static int? IdleSamples(long idleGapNs) => idleGapNs == 0 ? null : (int)Math.Min(40_000, 4_000_000_000 / idleGapNs);

    /// <summary>Every path, in report order.</summary>
    public static LatencyPath[] All() =>
    [
        new FloorPath(),
        new TaskletPath(),
        new SoftirqPath(),
        new ThreadPoolPath(),
        new ChannelSpinningPath(),
        new ChannelAwaitingPath(),
        new IrqAssertPath(IdlePolicy.Poll, idle: false),
        new IrqAssertPath(IdlePolicy.Hybrid, idle: false),
        new IrqAssertPath(IdlePolicy.Hybrid, idle: true),
        new IrqAssertPath(IdlePolicy.Halt, idle: true),
        new RawFutexWakePath(),
        new WorkqueuePath(idleGapNs: 0),
        new WorkqueuePath(idleGapNs: 100_000),
        new ThreadPoolPath(idleGapNs: 100_000),
        new ChannelAwaitingPath(idleGapNs: 100_000),
        new WorkqueuePath(idleGapNs: 1_000_000),
        new WorkqueuePath(idleGapNs: 1_000_000, pollWindow: TimeSpan.FromMilliseconds(2)),
        new ThreadPoolPath(idleGapNs: 1_000_000),
        new RawFutexWakePath(gapNs: 1_000_000),
        new BlockedWorkqueuePath(runtimePrimitive: true),
        new BlockedWorkqueuePath(runtimePrimitive: false),
        new BlockedThreadPoolPath(),
    ];
}

/// <summary>The floor: a bare store to a line a pinned thread on core C spins on (no pause), no queue at all.</summary>
internal sealed class FloorPath : LatencyPath
{
    private PaddedCounter _request; // written by the producer only
    private Thread? _consumer;
    private volatile bool _stop;

    public override string Name => "floor: store to a line a pinned thread spins on";

    public override void Start(LatencyProbe probe)
    {
        _consumer = ForeignTopology.StartConsumer("floor spinner", () =>
        {
            long seen = 0;
            while (!_stop)
            {
                long now = Volatile.Read(ref _request.Value);
                if (now != seen)
                {
                    seen = now;
                    probe.OnCallback();
                }
            }
        });
    }

    public override void Send() => Volatile.Write(ref _request.Value, _request.Value + 1);

    public override void Dispose()
    {
        _stop = true;
        _consumer?.Join();
    }
}

/// <summary>tasklet_schedule() from a thread of no CPU to a one-CPU runtime polling on core C.</summary>
internal sealed class TaskletPath : LatencyPath
{
    private Runtime? _runtime;
    private Tasklet? _tasklet;

    public override string Name => "DeferRuntime: foreign tasklet_schedule -> cpu/0 (Poll)";

    public override void Start(LatencyProbe probe)
    {
        _runtime = ForeignTopology.BootRemoteCpu(IdlePolicy.Poll);
        _tasklet = _runtime.CreateTasklet(_ => probe.OnCallback(), "latency");
    }

    public override void Send() => _tasklet!.Schedule();

    public override void Dispose() => _runtime?.Dispose();
}

/// <summary>raise_softirq(NET_RX) from a thread of no CPU to a one-CPU runtime polling on core C.</summary>
internal sealed class SoftirqPath : LatencyPath
{
    private Runtime? _runtime;

    public override string Name => "DeferRuntime: foreign raise_softirq -> cpu/0 (Poll)";

    public override void Start(LatencyProbe probe)
    {
        _runtime = ForeignTopology.BootRemoteCpu(IdlePolicy.Poll);
        _runtime.OpenSoftirq(SoftirqVector.NetRx, probe.OnCallback);
    }

    public override void Send() => _runtime!.RaiseSoftirq(SoftirqVector.NetRx);

    public override void Dispose() => _runtime?.Dispose();
}

/// <summary>
/// ThreadPool.UnsafeQueueUserWorkItem with a pre-allocated work item (workers unpinned). With an idle
/// gap (the workqueue's idle rows), the pool's workers have stopped spinning and sleep between samples.
/// </summary>
internal sealed class ThreadPoolPath(long idleGapNs = 0) : LatencyPath
{
    private ProbeWorkItem? _item;

    public override string Name => idleGapNs == 0 ? "peer: ThreadPool.UnsafeQueueUserWorkItem" : $"peer: ThreadPool.UnsafeQueueUserWorkItem (idle: gap >= {idleGapNs / 1000} µs)";

    public override long MinGapNs => idleGapNs;

    public override int? Samples => IdleSamples(idleGapNs);

    public override void Start(LatencyProbe probe)
    {
        _item = new ProbeWorkItem(probe);
    }

    public override void Send() => ThreadPool.UnsafeQueueUserWorkItem(_item!, preferLocal: false);

    public override void Dispose()
    {
    }
}

/// <summary>An unbounded single-reader Channel read by a dedicated thread pinned to core C, spinning on TryRead with Thread.SpinWait(1).</summary>
internal sealed class ChannelSpinningPath : LatencyPath
{
    private readonly Channel<IThreadPoolWorkItem> _channel = Channel.CreateUnbounded<IThreadPoolWorkItem>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private ProbeWorkItem? _item;
    private Thread? _consumer;
    private volatile bool _stop;

    public override string Name => "peer: Channel, dedicated spinning reader";

    public override void Start(LatencyProbe probe)
    {
        _item = new ProbeWorkItem(probe);
        var reader = _channel.Reader;
        _consumer = ForeignTopology.StartConsumer("spinning reader", () =>
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

    public override void Send() => _channel.Writer.TryWrite(_item!);

    public override void Dispose()
    {
        _stop = true;
        _consumer?.Join();
    }
}

/// <summary>
/// An unbounded single-reader Channel read by an async loop on the thread pool (await WaitToReadAsync).
/// With an idle gap, the loop has gone back to the pool and its thread to sleep between samples.
/// </summary>
internal sealed class ChannelAwaitingPath(long idleGapNs = 0) : LatencyPath
{
    private readonly Channel<IThreadPoolWorkItem> _channel = Channel.CreateUnbounded<IThreadPoolWorkItem>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private ProbeWorkItem? _item;
    private Task? _consumer;

    public override string Name => idleGapNs == 0 ? "peer: Channel, await WaitToReadAsync reader" : $"peer: Channel, await WaitToReadAsync reader (idle: gap >= {idleGapNs / 1000} µs)";

    public override long MinGapNs => idleGapNs;

    public override int? Samples => IdleSamples(idleGapNs);

    public override void Start(LatencyProbe probe)
    {
        _item = new ProbeWorkItem(probe);
        var reader = _channel.Reader;
        _consumer = Task.Run(async () =>
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

    public override void Send() => _channel.Writer.TryWrite(_item!);

    public override void Dispose()
    {
        _channel.Writer.Complete();
        _consumer?.Wait();
    }
}

/// <summary>The peers' pre-allocated callback: reports to the probe.</summary>
internal sealed class ProbeWorkItem(LatencyProbe probe) : IThreadPoolWorkItem
{
    public void Execute()
    {
        ThreadAffinity.WidenPoolThread();
        probe.OnCallback();
    }
}
