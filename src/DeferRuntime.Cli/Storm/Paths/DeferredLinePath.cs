using System.Diagnostics;
using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// A driver with a bottom half: the top half stamps each event it takes from the device (its entry stamp,
/// re-read for an event asserted after it) and queues it on a <see cref="HandoffRing"/>, then defers (subclasses: tasklet, softirq, thread, work item); the
/// bottom half drains the ring in batches with one clock read at the start and one at the end of each.
/// </summary>
/// <remarks>
/// <para>A full ring: the top half stops taking and leaves the rest in the device's FIFO, as a driver
/// whose completion queue is full stops acknowledging. Those events' edges are spent, so the device
/// must be raised again once there is room: the top half sets <see cref="_throttled"/>, and the bottom
/// half, after it released entries, takes the flag and re-asserts the line — a device that still holds
/// events asserts its interrupt again when the driver re-enables it (counted in <see cref="Reraises"/>).</para>
/// <para>No stranding, by the usual flag-then-recheck: the top half sets the flag (full barrier) and
/// re-reads the ring; the bottom half releases (store), then exchanges the flag (full barrier). Either the
/// top half sees the room and goes on taking, or the bottom half sees the flag; if both do, the exchange
/// decides which one acts.</para>
/// </remarks>
internal abstract class DeferredLinePath : LinePath
{
    // A batch is at most this many events: one start and one end clock read per batch, so the end stamp
    // of the first event of a batch is never far behind its own work.
    private const int MaxBatch = 256;

    private int _throttled; // A: the top half left events in the device for want of room
    private long _reraises; // A

    protected DeferredLinePath(StormPathKind kind, PathContext context, int rings)
        : base(kind, context)
    {
        Rings = new HandoffRing[rings];
        for (int i = 0; i < rings; i++)
        {
            Rings[i] = new HandoffRing(context.HandoffCapacity);
        }
    }

    protected HandoffRing[] Rings { get; }

    public override long Reraises => Interlocked.Read(ref _reraises);

    public override void BeginMeasurement()
    {
        base.BeginMeasurement();
        Interlocked.Exchange(ref _reraises, 0);
    }

    /// <summary>The ring the top half running on <paramref name="cpu"/> fills.</summary>
    protected virtual HandoffRing RingFor(int cpu) => Rings[0];

    /// <summary>Defers the bottom half: called by the top half when it queued events.</summary>
    protected abstract void ScheduleBottomHalf();

    /// <summary>What the top half returns when it queued events (IRQ_WAKE_THREAD for a threaded IRQ).</summary>
    protected virtual IrqReturn QueuedReturn => IrqReturn.Handled;

    protected sealed override IrqReturn TopHalf(int irq, object? devId)
    {
        long entry = Stopwatch.GetTimestamp();
        int cpu = CpuContext.CurrentCpuId;
        var ring = RingFor(cpu);
        var source = Source;
        long moved = 0;
        while (true)
        {
            bool full = false;
            while (true)
            {
                if (ring.IsFull)
                {
                    full = true;
                    break;
                }
                if (!source.TryTake(out long intended, out long asserted))
                {
                    break;
                }
                if (asserted >= entry)
                {
                    // Asserted while this run was under way: it was taken now, not at our entry.
                    entry = Stopwatch.GetTimestamp();
                }
                Latency.RecordGeneratorLag(intended, asserted);
                Latency.Record(LatencyStage.TopHalf, cpu, entry, intended, asserted);
                ring.Push(intended, asserted);
                moved++;
            }
            if (!full)
            {
                break;
            }
            Interlocked.Exchange(ref _throttled, 1);
            if (ring.IsFull || Interlocked.Exchange(ref _throttled, 0) == 0)
            {
                break; // the bottom half will find the flag (or already took it) and re-raise the line
            }
        }
        if (moved == 0)
        {
            // An edge whose events an earlier run took: still this device's interrupt.
            return IrqReturn.Handled;
        }
        ScheduleBottomHalf();
        return QueuedReturn;
    }

    /// <summary>The bottom half: drains <paramref name="ring"/> in batches, then throws if --fault throw-every says so.</summary>
    protected void DrainRing(HandoffRing ring)
    {
        int cpu = CpuContext.CurrentCpuId;
        bool fault = false;
        while (true)
        {
            long n = Math.Min(ring.Available, MaxBatch);
            if (n == 0)
            {
                break;
            }
            long start = Stopwatch.GetTimestamp();
            for (long i = 0; i < n; i++)
            {
                ring.Peek(i, out long intended, out long asserted);
                Latency.Record(LatencyStage.BottomHalfStart, cpu, start, intended, asserted);
            }
            Work(start, n);
            long end = Stopwatch.GetTimestamp();
            for (long i = 0; i < n; i++)
            {
                ring.Peek(i, out long intended, out long asserted);
                Latency.Record(LatencyStage.BottomHalfEnd, cpu, end, intended, asserted);
            }
            ring.Release(n);
            fault |= CompleteBatch(n);
            if (Volatile.Read(ref _throttled) != 0 && Interlocked.Exchange(ref _throttled, 0) != 0)
            {
                Interlocked.Increment(ref _reraises);
                Runtime.Irqs.AssertEdge(Irq);
            }
        }
        if (fault)
        {
            ThrowInjected();
        }
    }
}
