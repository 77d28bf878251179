using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// A driver with a softirq of its own, as blk-mq's completions use BLOCK_SOFTIRQ: the top half queues
/// events on its CPU's list and raises the vector there with raise_softirq_irqoff(); the action drains
/// the running CPU's list. The same vector may run on several CPUs at once, hence a list per CPU.
/// </summary>
internal sealed class SoftirqPath : DeferredLinePath
{
    public const SoftirqVector Vector = SoftirqVector.Block;

    private IrqAction? _action;

    public SoftirqPath(PathContext context)
        : base(StormPathKind.Softirq, context, rings: context.Runtime.Cpus.Count)
    {
        context.Runtime.OpenSoftirq(Vector, () => DrainRing(Rings[CpuContext.CurrentCpuId]));
    }

    public override void Request() =>
        _action = Runtime.Irqs.RequestIrq(Irq, TopHalf, IrqFlags.None, "storm-softirq");

    protected override HandoffRing RingFor(int cpu) => Rings[cpu];

    protected override void ScheduleBottomHalf() => Runtime.RaiseSoftirqIrqOff(Vector);

    public override void Dispose() => _action?.Dispose();
}
