namespace DeferRuntime.Cpus;

/// <summary>
/// /proc/stat's per-CPU split, as far as user space can see it: where one virtual CPU's time went.
/// Each part is null where it is not measured (see <see cref="VirtualCpu.GetCpuTime"/>).
/// </summary>
/// <param name="Cpu">The virtual CPU.</param>
/// <param name="HardIrq">Wall time cpu/N spent in hard-IRQ entries (the irq column; needs <see cref="RuntimeOptions.IrqTimeAccounting"/>).</param>
/// <param name="Softirq">Wall time spent in softirqs outside ksoftirqd/N, nested hard IRQs excluded (the softirq column; needs IrqTimeAccounting).</param>
/// <param name="Ksoftirqd">CPU time consumed by ksoftirqd/N (the kernel, too, charges softirqs run there to the thread).</param>
/// <param name="Workers">CPU time consumed by the kworkers of CPU N's bound pools, normal and high priority, retired ones included.</param>
/// <param name="IrqThreads">CPU time consumed by the irq threads bound to CPU N now.</param>
/// <param name="CpuThread">CPU time consumed by the cpu/N thread itself: hard IRQs, softirqs on irq exit and idle polling.</param>
public sealed record CpuTimeStats(
    int Cpu, TimeSpan? HardIrq, TimeSpan? Softirq, TimeSpan? Ksoftirqd, TimeSpan? Workers, TimeSpan? IrqThreads, TimeSpan? CpuThread);
