namespace DeferRuntime.Cpus;

/// <summary>
/// The kernel's preempt_count layout (include/linux/preempt.h), kept per OS thread.
/// </summary>
/// <remarks>
/// Bit layout of <see cref="ThreadContext.PreemptCount"/>:
/// <code>
///   bits  0-7  PREEMPT  preempt_disable() nesting (spinlocks held)
///   bits  8-15 SOFTIRQ  bit 8 = serving a softirq (SOFTIRQ_OFFSET),
///                       units of 2 &lt;&lt; 8 = local_bh_disable() nesting (SOFTIRQ_DISABLE_OFFSET)
///   bits 16-19 HARDIRQ  hard-IRQ nesting
/// </code>
/// </remarks>
internal static class PreemptCount
{
    public const int PreemptOffset = 1 << 0;
    public const int PreemptMask = 0xff;
    public const int SoftirqOffset = 1 << 8;
    public const int SoftirqDisableOffset = 2 * SoftirqOffset;
    public const int SoftirqMask = 0xff << 8;
    public const int HardirqOffset = 1 << 16;
    public const int HardirqMask = 0xf << 16;
}
