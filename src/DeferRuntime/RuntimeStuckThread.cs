using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

namespace DeferRuntime;

/// <summary>
/// A thread of the runtime that shutdown told to exit and could not join within its bound, and what it
/// was doing then: left behind (runtime threads are background threads), see
/// <see cref="RuntimeShutdownReport.StuckThreads"/>. Read from the thread's context while it is stuck,
/// so it shows where it is stuck.
/// </summary>
/// <param name="Thread">Its name: <c>cpu/N</c>, <c>ksoftirqd/N</c>, <c>kworker/N:M</c>, <c>irq/L-name</c>, a rescuer's workqueue name, <c>wq-ticker</c>.</param>
/// <param name="Cpu">The virtual CPU it belongs to, or null (the wq ticker; a rescuer between two rescues).</param>
/// <param name="Role">What the thread is, or null for a thread of no CPU.</param>
/// <param name="Context">
/// Its context, as in_hardirq(), in_serving_softirq() and in_task() tell it: <c>"hard-IRQ"</c>,
/// <c>"softirq"</c> or <c>"task"</c> (a kworker's item, an irq thread function, ksoftirqd between two
/// softirqs, a thread of no CPU).
/// </param>
/// <param name="Softirq">The softirq vector it is running, or null.</param>
/// <param name="Running">
/// The innermost callback it is running, named as fault reports name it (<c>irq 5 handler 'eth0'</c>,
/// <c>tasklet 'rx'</c>, <c>work item 'flush'</c>, <c>irq 5 thread function 'eth0'</c>, <c>IPI call
/// function</c>, a timer), or null: none, or a softirq action (see <paramref name="Softirq"/>).
/// </param>
/// <param name="WaitingFor">The gate it is waiting to take (<c>CPU 0's bh gate</c>), or null.</param>
public sealed record RuntimeStuckThread(string Thread, int? Cpu, ThreadRole? Role, string Context, SoftirqVector? Softirq, string? Running, string? WaitingFor)
{
    /// <summary>One line: <c>cpu/0 (CPU 0, softirq TASKLET) running tasklet 'rx'</c>.</summary>
    public override string ToString()
    {
        string where = Cpu is { } cpu ? $"CPU {cpu}, {Context}" : Context;
        string softirq = Softirq is { } nr ? $" {SoftirqTable.Names[(int)nr]}" : "";
        string running = Running is not null ? $" running {Running}" : Softirq is not null ? " running its action" : "";
        string waiting = WaitingFor is not null ? $" waiting for {WaitingFor}" : "";
        return $"{Thread} ({where}{softirq}){running}{waiting}";
    }

    /// <summary>Describes thread <paramref name="name"/> from its context (racy reads of a thread that is not moving).</summary>
    internal static RuntimeStuckThread Of(string name, ThreadContext? ctx)
    {
        if (ctx is null)
        {
            return new RuntimeStuckThread(name, null, null, "task", null, null, null);
        }
        int preempt = Volatile.Read(ref ctx.PreemptCount);
        string context = (preempt & PreemptCount.HardirqMask) != 0 ? "hard-IRQ"
            : (preempt & PreemptCount.SoftirqOffset) != 0 ? "softirq"
            : "task";
        int softirq = Volatile.Read(ref ctx.RunningSoftirq);
        var gate = Volatile.Read(ref ctx.WaitingForGate);
        string? waiting = gate is null ? null
            : ReferenceEquals(gate, ctx.Cpu.IrqGate) ? $"CPU {ctx.Cpu.Id}'s irq gate"
            : ReferenceEquals(gate, ctx.Cpu.BhGate) ? $"CPU {ctx.Cpu.Id}'s bh gate"
            : $"a gate of CPU {ctx.Cpu.Id}";
        return new RuntimeStuckThread(
            name, ctx.Cpu.Id, ctx.Role, context, softirq == 0 ? null : (SoftirqVector)(softirq - 1), ctx.DescribeRunning(), waiting);
    }
}
