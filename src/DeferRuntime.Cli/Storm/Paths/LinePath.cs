using DeferRuntime.Devices;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// A driver of one synthetic storm line (<see cref="StormLineSource"/>): its edge line is requested with
/// <see cref="TopHalf"/>, which drains the device FIFO. The source is swapped between the warm-up storm
/// and the measured one, so the handler reads it from a field rather than from its dev cookie.
/// </summary>
internal abstract class LinePath : StormPath
{
    private volatile StormLineSource? _source; // set before each storm starts, while the line is quiet
    private IrqLineStats? _baseline; // the line's counts when measurement began

    protected LinePath(StormPathKind kind, PathContext context)
        : base(kind, context)
    {
        Irq = context.Runtime.Irqs.AllocateIrq(IrqTrigger.Edge);
    }

    public override int Irq { get; }

    /// <summary>The device FIFO the top half drains.</summary>
    protected StormLineSource Source => _source!;

    public override long Generated => _source?.Generated ?? 0;

    /// <summary>The device's counts in the measured storm.</summary>
    public StormLineStats? DeviceStats => _source?.GetStats();

    /// <summary>The line's counts at the start of measurement (for the identities over the measured storm).</summary>
    public IrqLineStats? Baseline => _baseline;

    /// <summary>Assertions this driver made itself: a queue that had been full has room again and the device is re-raised for what it holds.</summary>
    public virtual long Reraises => 0;

    /// <summary>Requests the line; called once, after the constructor.</summary>
    public abstract void Request();

    /// <summary>Points the driver at the FIFO of the storm about to start.</summary>
    public void Attach(StormLineSource source) => _source = source;

    public override void BeginMeasurement()
    {
        base.BeginMeasurement();
        _baseline = Runtime.Irqs.GetStats(Irq);
    }

    /// <summary>The hard-IRQ handler.</summary>
    protected abstract IrqReturn TopHalf(int irq, object? devId);
}
