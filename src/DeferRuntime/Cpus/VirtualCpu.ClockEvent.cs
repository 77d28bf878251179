using System.Runtime.CompilerServices;
using DeferRuntime.Timers;

namespace DeferRuntime.Cpus;

// The per-CPU clock event device seen from cpu/N: when the programmed next event is due, vector 1 is set
// pending and taken as a hard IRQ (see CpuTimers for the programming protocol).
public sealed partial class VirtualCpu
{
    /// <summary>LOCAL_TIMER_VECTOR: the per-CPU clock event interrupt. Vectors 2-15 are reserved; devices use 16-255.</summary>
    internal const int LocalTimerVector = 1;

    private const long LocalTimerBit = 1L << LocalTimerVector;

    // C: local timer interrupts taken (the LOC row of /proc/interrupts).
    internal long LocalTimerInterrupts;

    /// <summary>This CPU's timer wheels, hrtimer queue and clock event.</summary>
    internal CpuTimers Timers { get; }

    /// <summary>Local timer interrupts (clock events) taken by this CPU: the "LOC:" row of /proc/interrupts. Tickless: it rises only when a timer is due.</summary>
    public long LocalTimerInterruptCount => Volatile.Read(ref LocalTimerInterrupts);

    /// <summary>
    /// Once per loop pass of cpu/N: is the clock event due? A CPU that did work in its last pass is awake,
    /// so deferrable timers count too. PERF: no clock read while nothing is programmed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckClockEvent(bool awake)
    {
        long next = Volatile.Read(ref Line.NextEventNs);
        if (awake)
        {
            next = Math.Min(next, Volatile.Read(ref Line.NextDeferrableNs));
        }
        if (next != CpuTimers.NoEvent)
        {
            CheckClockEventSlow(next);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void CheckClockEventSlow(long next)
    {
        if (Runtime.KtimeGetNs() >= next)
        {
            FireClockEvent();
        }
    }

    /// <summary>The one-shot timer went off: vector 1 pending on this CPU (cpu/N itself, so no kick).</summary>
    private void FireClockEvent()
    {
        if ((Volatile.Read(ref Line.IrqPending0) & LocalTimerBit) == 0)
        {
            Interlocked.Or(ref Line.IrqPending0, LocalTimerBit);
        }
    }

    /// <summary>During an idle poll: true (and vector 1 set pending) if the non-deferrable event is due at <paramref name="timestamp"/>.</summary>
    private bool ClockEventDueWhilePolling(long timestamp)
    {
        long next = Volatile.Read(ref Line.NextEventNs);
        if (next == CpuTimers.NoEvent || Runtime.KtimeFromTimestamp(timestamp) < next)
        {
            return false;
        }
        FireClockEvent();
        return true;
    }

    /// <summary>
    /// How long a parking cpu/N may sleep: until the next non-deferrable event (0: it is due now), or
    /// forever (-1) when none is programmed or vector 1 is already pending behind an irq gate another
    /// thread holds (its release kicks us). Read after Parked is announced.
    /// </summary>
    private long ClockEventTimeoutNs()
    {
        if ((Volatile.Read(ref Line.IrqPending0) & LocalTimerBit) != 0)
        {
            return -1;
        }
        long next = Volatile.Read(ref Line.NextEventNs);
        if (next == CpuTimers.NoEvent)
        {
            return -1;
        }
        return Math.Max(0, next - Runtime.KtimeGetNs());
    }
}
