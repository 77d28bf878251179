using DeferRuntime.Interrupts;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>The classic split: the top half queues events and tasklet_schedule()s; the tasklet (TASKLET softirq, never on two CPUs at once) drains them.</summary>
internal sealed class TaskletPath : DeferredLinePath
{
    private readonly Tasklet _tasklet;
    private IrqAction? _action;

    public TaskletPath(PathContext context)
        : base(StormPathKind.Tasklet, context, rings: 1)
    {
        _tasklet = context.Runtime.CreateTasklet(_ => DrainRing(Rings[0]), "storm-tasklet");
    }

    public override void Request() =>
        _action = Runtime.Irqs.RequestIrq(Irq, TopHalf, IrqFlags.None, "storm-tasklet");

    protected override void ScheduleBottomHalf() => _tasklet.Schedule();

    public override void Dispose()
    {
        _action?.Dispose();
        _tasklet.Kill();
    }
}
