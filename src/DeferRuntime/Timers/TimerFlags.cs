using System.Diagnostics.CodeAnalysis;

namespace DeferRuntime.Timers;

/// <summary>The TIMER_* flags given to <see cref="Runtime.TimerSetup"/> (include/linux/timer.h).</summary>
[Flags]
[SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "Mirrors the kernel's TIMER_* flags (timer->flags); the name is what kernel readers look for.")]
public enum TimerFlags
{
    /// <summary>No flags: the timer goes to the base of the CPU that arms it.</summary>
    None = 0,

    /// <summary>
    /// TIMER_PINNED: the timer expires on the CPU where it was armed. Every timer does in this runtime,
    /// which has no timer-migration hierarchy (the kernel's tmigr, which lets another CPU expire an idle
    /// CPU's unpinned timers); the flag is kept so that code states its intent, and
    /// <see cref="TimerList.AddTimerOn"/> sets it, as the kernel does.
    /// </summary>
    Pinned = 1 << 0,

    /// <summary>
    /// TIMER_DEFERRABLE: the timer does not wake an idle CPU; it runs when the CPU is awake anyway (busy,
    /// or woken by another timer or work). It lives on a second wheel per CPU, as in the kernel.
    /// </summary>
    Deferrable = 1 << 1,
}
