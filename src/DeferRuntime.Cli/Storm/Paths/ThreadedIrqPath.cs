using DeferRuntime.Interrupts;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>request_threaded_irq(): the primary handler queues events and returns IRQ_WAKE_THREAD; irq/L-storm-threaded drains them in task context.</summary>
internal sealed class ThreadedIrqPath : DeferredLinePath
{
    private IrqAction? _action;

    public ThreadedIrqPath(PathContext context)
        : base(StormPathKind.ThreadedIrq, context, rings: 1)
    {
    }

    public override void Request() =>
        _action = Runtime.Irqs.RequestThreadedIrq(Irq, TopHalf, ThreadFn, IrqFlags.None, "storm-threaded");

    protected override IrqReturn QueuedReturn => IrqReturn.WakeThread;

    // IRQ_WAKE_THREAD does the scheduling.
    protected override void ScheduleBottomHalf()
    {
    }

    private IrqReturn ThreadFn(int irq, object? devId)
    {
        DrainRing(Rings[0]);
        return IrqReturn.Handled;
    }

    public override void Dispose() => _action?.Dispose();
}
