using DeferRuntime.Interrupts;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// The top half queues events and queue_work()s one pre-allocated work item on a workqueue of its own:
/// bound (the kworker of the CPU that took the interrupt), WQ_UNBOUND, or WQ_BH (softirq context). A
/// work item never runs concurrently with itself, so one ring serves it; queue_work() of a pending item
/// is a no-op, and one queued while it runs runs again after.
/// </summary>
internal sealed class WorkqueuePath : DeferredLinePath
{
    private readonly WorkStruct _work;
    private IrqAction? _action;

    public WorkqueuePath(StormPathKind kind, PathContext context)
        : base(kind, context, rings: 1)
    {
        var flags = kind switch
        {
            StormPathKind.WorkqueueBound => WorkqueueFlags.None,
            StormPathKind.WorkqueueUnbound => WorkqueueFlags.Unbound,
            StormPathKind.BhWorkqueue => WorkqueueFlags.Bh,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a workqueue path"),
        };
        Workqueue = context.Runtime.AllocWorkqueue($"storm_{kind.CliName().Replace('-', '_')}", flags);
        _work = new WorkStruct(_ => DrainRing(Rings[0]), $"storm-{kind.CliName()}");
    }

    /// <summary>The path's workqueue (the stuck-work fault queues on the bound one).</summary>
    public Workqueue Workqueue { get; }

    public override void Request() =>
        _action = Runtime.Irqs.RequestIrq(Irq, TopHalf, IrqFlags.None, $"storm-{Kind.CliName()}");

    protected override void ScheduleBottomHalf() => Workqueue.Queue(_work);

    public override void Dispose()
    {
        _action?.Dispose();
        Workqueue.Destroy();
    }
}
