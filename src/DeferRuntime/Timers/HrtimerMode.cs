namespace DeferRuntime.Timers;

/// <summary>
/// enum hrtimer_mode: how <see cref="Hrtimer.Start(long, HrtimerMode)"/> reads its time. Every hrtimer
/// here expires in HRTIMER_SOFTIRQ (the kernel's HRTIMER_MODE_SOFT); there are no hard-IRQ hrtimers.
/// </summary>
public enum HrtimerMode
{
    /// <summary>HRTIMER_MODE_ABS: an absolute expiry on the runtime's monotonic clock (<see cref="Runtime.KtimeGetNs"/>).</summary>
    Abs = 0,

    /// <summary>HRTIMER_MODE_REL: an expiry relative to now.</summary>
    Rel = 1,

    /// <summary>HRTIMER_MODE_ABS_PINNED: absolute, and expires on the CPU where it was started (every hrtimer does here: no timer migration).</summary>
    AbsPinned = 2,

    /// <summary>HRTIMER_MODE_REL_PINNED: relative and pinned.</summary>
    RelPinned = 3,
}
