using System.Runtime.InteropServices;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Cpus;

/// <summary>
/// The words of one CPU that other threads write: raisers, IPI senders, tasklet producers, timer armers
/// and kickers. They sit together on purpose (a producer touches a list head, the pending mask and the
/// idle state in one go; an armer the next event and the idle state): 88 bytes, so two cache lines, since the owning object is only 8-byte aligned. The 64
/// bytes of padding on each side keep other CPUs' lines and this CPU's private counters off them.
/// cpu/N polls these words; anything only producers write (the rundown count) lives elsewhere, so a
/// producer's read-modify-writes here are only the ones the consumer must see.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 216)]
internal struct CpuSharedLine
{
    /// <summary>A: softirq pending mask; any thread ORs a bit in, the bh-gate holder swaps it to 0.</summary>
    [FieldOffset(64)] public int SoftirqPending;

    /// <summary>A: <see cref="VirtualCpu.Running"/> or <see cref="VirtualCpu.Parked"/>; cpu/N parks, kickers CAS back.</summary>
    [FieldOffset(68)] public int IdleState;

    /// <summary>A: pending hard-IRQ vectors 0-255, four words; any thread ORs, cpu/N swaps each word to 0.</summary>
    [FieldOffset(72)] public long IrqPending0;
    [FieldOffset(80)] public long IrqPending1;
    [FieldOffset(88)] public long IrqPending2;
    [FieldOffset(96)] public long IrqPending3;

    /// <summary>A: tasklet_vec: normal tasklets, pushed by any thread, taken by the bh-gate holder.</summary>
    [FieldOffset(112)] public Tasklet? TaskletHead;

    /// <summary>A: tasklet_hi_vec.</summary>
    [FieldOffset(120)] public Tasklet? HiTaskletHead;

    /// <summary>A: call_single_queue: IPI function calls, pushed by any thread, taken by cpu/N in hard-IRQ context.</summary>
    [FieldOffset(128)] public CallSingleData? CallHead;

    /// <summary>
    /// A: the clock event: ktime (ns) of the CPU's next timer or hrtimer expiry, or long.MaxValue. Armers
    /// lower it (CAS-min) and kick; the local timer interrupt resets and recomputes it; cpu/N parks until it.
    /// </summary>
    [FieldOffset(136)] public long NextEventNs;

    /// <summary>A: as <see cref="NextEventNs"/>, for the deferrable wheel, which never wakes an idle CPU.</summary>
    [FieldOffset(144)] public long NextDeferrableNs;
}

/// <summary>An int alone on its cache line (64 bytes of padding each side), for a word one side writes often.</summary>
[StructLayout(LayoutKind.Explicit, Size = 132)]
internal struct PaddedInt32
{
    [FieldOffset(64)] public int Value;
}
