using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>What every path's driver is given.</summary>
/// <param name="Runtime">The booted runtime.</param>
/// <param name="WorkTicks">Simulated work per event in the bottom half (Stopwatch ticks, 0 for none).</param>
/// <param name="ThrowEvery">--fault throw-every=N: the handler that completes the Nth, 2Nth, ... event throws (0: off).</param>
/// <param name="HandoffCapacity">Top-half to bottom-half queue size per path (per CPU for the softirq path).</param>
/// <param name="DeviceCores">OS cores for the device threads (--device-cores); empty: not pinned.</param>
internal sealed record PathContext(Runtime Runtime, long WorkTicks, long ThrowEvery, int HandoffCapacity, IReadOnlyList<int>? DeviceCores = null);

/// <summary>The exception a handler throws under <c>--fault throw-every=N</c>; the report counts it in the runtime's fault log.</summary>
internal sealed class InjectedFaultException : Exception
{
    public InjectedFaultException(string message)
        : base(message)
    {
    }

    public InjectedFaultException()
    {
    }

    public InjectedFaultException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// One driver the storm drives, with its latency histograms and counts. Subclasses are the drivers:
/// each mirrors how a kernel driver of that kind splits its interrupt work.
/// </summary>
/// <remarks>
/// Counts are written by the path's handlers (an Interlocked add per batch, not per event) and read by
/// the progress display and the report. <see cref="BeginMeasurement"/> clears them after the warm-up.
/// </remarks>
internal abstract class StormPath : IDisposable
{
    private long _handled; // A: events whose bottom half finished
    private long _batches; // A: bottom-half runs that processed at least one event
    private long _faultEvents; // A: events counted toward --fault throw-every
    private long _injected; // A: handler runs that threw on purpose

    protected StormPath(StormPathKind kind, PathContext context)
    {
        Kind = kind;
        Context = context;
        Latency = new StageHistograms(context.Runtime.Cpus.Count);
    }

    public StormPathKind Kind { get; }

    public string Name => Kind.CliName();

    public StageHistograms Latency { get; }

    protected PathContext Context { get; }

    protected Runtime Runtime => Context.Runtime;

    /// <summary>The interrupt line the driver serves.</summary>
    public abstract int Irq { get; }

    /// <summary>Events the device generated in the measured storm.</summary>
    public abstract long Generated { get; }

    /// <summary>Events whose bottom half has finished.</summary>
    public long Handled => Interlocked.Read(ref _handled);

    /// <summary>Bottom-half runs that processed events (events per run = batching).</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Handler runs that threw under --fault throw-every.</summary>
    public long InjectedFaults => Interlocked.Read(ref _injected);

    /// <summary>True while events are generated and not yet handled.</summary>
    public bool Drained => Handled >= Generated;

    /// <summary>Clears counts and histograms after the warm-up; no handler may be running.</summary>
    public virtual void BeginMeasurement()
    {
        Interlocked.Exchange(ref _handled, 0);
        Interlocked.Exchange(ref _batches, 0);
        Interlocked.Exchange(ref _faultEvents, 0);
        Interlocked.Exchange(ref _injected, 0);
        Latency.Reset();
    }

    /// <summary>Counts a finished batch; true when it crossed a multiple of --fault throw-every, so the handler must throw once it has finished.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected bool CompleteBatch(long events)
    {
        Interlocked.Add(ref _handled, events);
        Interlocked.Increment(ref _batches);
        long every = Context.ThrowEvery;
        if (every == 0)
        {
            return false;
        }
        long total = Interlocked.Add(ref _faultEvents, events);
        return total / every != (total - events) / every;
    }

    /// <summary>Throws the injected fault (after the handler's work is done and counted, so nothing is stranded).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    protected void ThrowInjected()
    {
        Interlocked.Increment(ref _injected);
        throw new InjectedFaultException($"storm path '{Name}': injected fault (--fault throw-every={Context.ThrowEvery})");
    }

    /// <summary>Simulated work for <paramref name="events"/> events, measured against the clock read at the batch start.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected void Work(long start, long events)
    {
        if (Context.WorkTicks == 0)
        {
            return;
        }
        long until = start + (Context.WorkTicks * events);
        while (Stopwatch.GetTimestamp() < until)
        {
            Thread.SpinWait(8);
        }
    }

    public abstract void Dispose();
}
