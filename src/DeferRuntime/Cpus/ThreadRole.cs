namespace DeferRuntime.Cpus;

/// <summary>What a thread bound to a virtual CPU is, as the kernel names its threads.</summary>
public enum ThreadRole
{
    /// <summary><c>cpu/N</c>: hard-IRQ handlers and softirqs on irq exit.</summary>
    Cpu,
    /// <summary><c>ksoftirqd/N</c>: softirqs that overflowed the irq-exit budget.</summary>
    Ksoftirqd,
    /// <summary><c>kworker/N:M</c>: a work item of a bound worker pool.</summary>
    Worker,
    /// <summary><c>irq/L-name</c>: the threaded handler of one irqaction.</summary>
    IrqThread,
    /// <summary>An application thread bound with <see cref="VirtualCpu.BindCurrentThread"/>: a task of that CPU.</summary>
    Task,
}
