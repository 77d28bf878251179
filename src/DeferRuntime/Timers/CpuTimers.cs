using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Timers;

/// <summary>
/// One CPU's timers and its clock event device: the standard and deferrable timer wheels
/// (<see cref="TimerBase"/>), the soft hrtimer queue (<see cref="HrtimerBase"/>), and the one-shot
/// programming that wakes cpu/N for the earliest of them (tickless, NO_HZ_IDLE all the time).
/// </summary>
/// <remarks>
/// <para><b>What runs where.</b> The clock event of CPU N is hard-IRQ vector 1 (LOCAL_TIMER_VECTOR) of
/// cpu/N. There is no periodic tick: CPU N's "next event" is a ktime (ns) in its shared line,
/// <see cref="CpuSharedLine.NextEventNs"/> = min(standard wheel's next expiry, earliest hrtimer), and
/// <see cref="CpuSharedLine.NextDeferrableNs"/> for the deferrable wheel. cpu/N parks only until the next
/// event (the futex timeout is the one-shot timer), and a busy cpu/N compares the clock with it once
/// per loop pass; when it is due, vector 1 is set pending and taken like any interrupt: irq gate held,
/// hardirq context. The handler (<see cref="LocalTimerInterrupt"/>) counts it (the LOC row of
/// /proc/interrupts) and raises TIMER_SOFTIRQ and/or HRTIMER_SOFTIRQ only when a wheel or the hrtimer
/// queue has something due; the softirqs run the callbacks on irq exit, on the CPU's bh-gate holder.</para>
/// <para><b>Programming without losing an event.</b> The next-event word only ever errs early (an early
/// event costs one spurious interrupt, which recomputes it; a late one would be a missed timer):
/// <list type="bullet">
/// <item>Arming files the timer under its base lock, then lowers the word with a CAS-min
/// (<see cref="Program"/>) and kicks cpu/N only if it lowered it and cpu/N is parked: arming a timer that
/// is not the CPU's earliest costs one read.</item>
/// <item>The handler exchanges the words to "none" first, then recomputes them from the bases under their
/// locks: an arm that came before the exchange is seen by the recomputation, one that came after lowers
/// the word itself. A source found due is left out (its softirq is raised instead), and the softirq
/// programs that source's next expiry when it has run the due timers: otherwise the word would stay in
/// the past and interrupt every pass until the softirq ran.</item>
/// <item>A parking cpu/N announces Parked, then reads the word; an armer lowers the word, then reads the
/// idle state: both with full barriers, so either cpu/N parks with the new deadline or the armer kicks.</item>
/// <item>Deleting a timer does not reprogram (as in the kernel): the event fires, finds nothing due and
/// recomputes.</item>
/// </list></para>
/// <para><b>Deferrable timers</b> do not wake an idle CPU: parking and polling look at the standard word
/// only, and so does shutdown's drain. A CPU that is awake anyway (it did work in its last pass) also
/// looks at the deferrable word, and every clock event handler runs both wheels.</para>
/// <para><b>Shutdown</b> runs what is due and leaves what is not: a CPU is not quiescent while its next
/// event falls before the end of the jiffy in which shutdown began. That window (at most one jiffy
/// ahead) takes in a timer armed for the past while its wheel was busy expiring the current jiffy,
/// which the wheel files for the next jiffy, and a self re-arming timer at most once more. "Due" for a
/// wheel timer is its bucket time (its expiry rounded up to its level's granularity), as on a live
/// system. <see cref="Runtime.AbandonedTimerCount"/> says how many timers were still armed at the end.
/// Nothing is run early and the drain never waits for a far-future timer.</para>
/// </remarks>
internal sealed class CpuTimers
{
    /// <summary>No event programmed.</summary>
    internal const long NoEvent = long.MaxValue;

    internal CpuTimers(VirtualCpu cpu)
    {
        Cpu = cpu;
        Standard = new TimerBase(this, deferrable: false);
        Deferrable = new TimerBase(this, deferrable: true);
        Hrtimers = new HrtimerBase(this);
    }

    internal VirtualCpu Cpu { get; }

    /// <summary>BASE_STD: the wheel whose expiry wakes the CPU.</summary>
    internal TimerBase Standard { get; }

    /// <summary>BASE_DEF: the wheel of <see cref="TimerFlags.Deferrable"/> timers.</summary>
    internal TimerBase Deferrable { get; }

    /// <summary>HRTIMER_BASE_MONOTONIC_SOFT.</summary>
    internal HrtimerBase Hrtimers { get; }

    /// <summary>Timers and hrtimers queued on this CPU (for the shutdown report).</summary>
    internal int ArmedCount => Standard.Count + Deferrable.Count + Hrtimers.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal TimerBase BaseFor(TimerFlags flags) => (flags & TimerFlags.Deferrable) != 0 ? Deferrable : Standard;

    /// <summary>
    /// tick_program_event() for an expiry at <paramref name="ns"/>: lowers the CPU's next event if this is
    /// earlier and, for a non-deferrable expiry, kicks a parked cpu/N so it parks again with the new
    /// deadline. One read when it is not earlier; any thread, any context.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Program(long ns, bool deferrable)
    {
        if (deferrable)
        {
            LowerTo(ref Cpu.Line.NextDeferrableNs, ns);
        }
        else if (LowerTo(ref Cpu.Line.NextEventNs, ns))
        {
            Cpu.Kick();
        }
    }

    /// <summary>CAS-min; true if it lowered the word. Full barrier when it writes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool LowerTo(ref long word, long ns)
    {
        long current = Volatile.Read(ref word);
        while (ns < current)
        {
            long seen = Interlocked.CompareExchange(ref word, ns, current);
            if (seen == current)
            {
                return true;
            }
            current = seen;
        }
        return false;
    }

    /// <summary>
    /// The LOCAL_TIMER_VECTOR handler (the kernel's local timer interrupt, then tick_sched_timer /
    /// hrtimer_interrupt for the soft bases): counts the interrupt, raises the softirqs that have
    /// something due and reprograms the clock event for what is not. Hardirq context on cpu/N.
    /// </summary>
    internal void LocalTimerInterrupt(ThreadContext ctx)
    {
        var cpu = Cpu;
        cpu.LocalTimerInterrupts++;
        // Forget the programmed events, then recompute them (see the remarks for why in this order).
        Interlocked.Exchange(ref cpu.Line.NextEventNs, NoEvent);
        Interlocked.Exchange(ref cpu.Line.NextDeferrableNs, NoEvent);

        var runtime = cpu.Runtime;
        long nowNs = runtime.KtimeGetNs();
        long now = runtime.NsToJiffies(nowNs);
        bool timerDue = false;
        long next = Standard.NextExpiry();
        if (next <= now)
        {
            timerDue = true;
        }
        else if (next != TimerBase.NoExpiry)
        {
            LowerTo(ref cpu.Line.NextEventNs, runtime.JiffyStartNs(next));
        }
        next = Deferrable.NextExpiry();
        if (next <= now)
        {
            timerDue = true;
        }
        else if (next != TimerBase.NoExpiry)
        {
            LowerTo(ref cpu.Line.NextDeferrableNs, runtime.JiffyStartNs(next));
        }
        next = Hrtimers.NextExpiry();
        if (next <= nowNs)
        {
            cpu.OrSoftirqPending((int)SoftirqVector.Hrtimer);
        }
        else if (next != HrtimerBase.NoExpiry)
        {
            LowerTo(ref cpu.Line.NextEventNs, next);
        }
        if (timerDue)
        {
            cpu.OrSoftirqPending((int)SoftirqVector.Timer);
        }
        System.Diagnostics.Debug.Assert(ctx.InHardirq, "the local timer interrupt runs in hardirq context");
    }

    /// <summary>
    /// Shutdown's quiescence check: true while an event that may wake the CPU is due now or falls before
    /// the drain cutoff (<see cref="Runtime.TimerDrainCutoffNs"/>), so the drain waits for it.
    /// </summary>
    internal bool HasDueEvent()
    {
        long next = Volatile.Read(ref Cpu.Line.NextEventNs);
        return next != NoEvent && next <= Math.Max(Cpu.Runtime.KtimeGetNs(), Cpu.Runtime.TimerDrainCutoffNs);
    }

    /// <summary>run_timer_softirq(): the TIMER_SOFTIRQ action; both wheels of the running CPU.</summary>
    internal static void RunTimerSoftirq()
    {
        var ctx = ThreadContext.Current!;
        var timers = ctx.Cpu.Timers;
        timers.Standard.Run(ctx);
        timers.Deferrable.Run(ctx);
    }

    /// <summary>hrtimer_run_softirq(): the HRTIMER_SOFTIRQ action.</summary>
    internal static void RunHrtimerSoftirq()
    {
        var ctx = ThreadContext.Current!;
        ctx.Cpu.Timers.Hrtimers.Run(ctx);
    }
}
