using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Timers;

namespace DeferRuntime;

// The runtime's clock (ktime, jiffies, conversions) and the timer factories.
public sealed partial class Runtime
{
    private const long NsPerSec = 1_000_000_000;

    // Stopwatch ticks to ns: 1 on Linux (a 1 GHz Stopwatch), 100 on Windows, 0 when the frequency does
    // not divide a second and the exact slow path is needed.
    private static readonly long s_nsPerTimestampTick =
        NsPerSec % Stopwatch.Frequency == 0 ? NsPerSec / Stopwatch.Frequency : 0;

    private readonly long _bootTimestamp = Stopwatch.GetTimestamp(); // I: ktime 0
    private long _abandonedTimers; // written once by Dispose
    private long _timerDrainCutoffNs; // written once by Dispose, before the drain: see CpuTimers

    /// <summary>CONFIG_HZ of this runtime: jiffies per second (<see cref="RuntimeOptions.Hz"/>).</summary>
    public int Hz { get; }

    /// <summary>
    /// jiffies (jiffies_64): ticks of 1/<see cref="Hz"/> s since boot, read from the monotonic clock on
    /// every call.
    /// </summary>
    /// <remarks>
    /// The kernel increments jiffies from the tick of one CPU, and a CPU leaving tickless idle catches
    /// it up (tick_nohz_update_jiffies). Here the clock event is one-shot on every CPU: when all of them
    /// are idle nobody ticks, so a counter bumped by ticks would be stale exactly when a thread of no CPU
    /// arms a timer against it. Computing it from the clock makes it exact at any moment, for the price of
    /// a clock read and a multiply.
    /// </remarks>
    public long Jiffies => NsToJiffies(KtimeGetNs());

    /// <summary>ktime_get_ns(): nanoseconds since boot on the monotonic clock (Stopwatch), the clock of hrtimers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long KtimeGetNs() => KtimeFromTimestamp(Stopwatch.GetTimestamp());

    /// <summary>
    /// The number of timers and hrtimers still armed when <see cref="Dispose"/> stopped the CPUs: those
    /// not due by the end of the jiffy in which shutdown began (and deferrable ones, which never hold up
    /// an idle CPU). Nothing runs them early; like the kernel, the runtime leaves them. 0 before shutdown.
    /// </summary>
    public long AbandonedTimerCount => Volatile.Read(ref _abandonedTimers);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal long KtimeFromTimestamp(long timestamp)
    {
        long ticks = timestamp - _bootTimestamp;
        return s_nsPerTimestampTick != 0 ? ticks * s_nsPerTimestampTick : TicksToNsSlow(ticks);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static long TicksToNsSlow(long ticks)
    {
        long frequency = Stopwatch.Frequency;
        return (ticks / frequency * NsPerSec) + (ticks % frequency * NsPerSec / frequency);
    }

    /// <summary>The jiffy that <paramref name="ns"/> since boot falls in: floor(ns * HZ / 10^9), exactly, without overflow.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal long NsToJiffies(long ns)
    {
        // Split at whole seconds so ns * HZ cannot overflow; both divisions are by a constant.
        long seconds = ns / NsPerSec;
        return (seconds * Hz) + ((ns - (seconds * NsPerSec)) * Hz / NsPerSec);
    }

    /// <summary>The first nanosecond of jiffy <paramref name="jiffies"/>: the least ns with NsToJiffies(ns) == jiffies.</summary>
    internal long JiffyStartNs(long jiffies)
    {
        long seconds = jiffies / Hz;
        long rest = jiffies - (seconds * Hz);
        return (seconds * NsPerSec) + (((rest * NsPerSec) + Hz - 1) / Hz);
    }

    /// <summary>msecs_to_jiffies(): rounded up, so a timeout is never shorter than asked; at most <see cref="Timers.Jiffies.MaxJiffyOffset"/>.</summary>
    public long MsecsToJiffies(long msecs) => ToJiffies(msecs, 1_000, nameof(msecs));

    /// <summary>usecs_to_jiffies(): rounded up, so a timeout is never shorter than asked; at most <see cref="Timers.Jiffies.MaxJiffyOffset"/>.</summary>
    public long UsecsToJiffies(long usecs) => ToJiffies(usecs, 1_000_000, nameof(usecs));

    /// <summary>jiffies_to_msecs(): rounded down when a jiffy is a whole number of ms or more (HZ &lt;= 1000), up when it is less (HZ &gt; 1000, so one jiffy is not 0 ms), as the kernel does.</summary>
    public long JiffiesToMsecs(long jiffies) => FromJiffies(jiffies, 1_000, roundUp: Hz > 1_000, nameof(jiffies));

    /// <summary>jiffies_to_usecs(): rounded down (a jiffy is at least 100 µs at the highest HZ).</summary>
    public long JiffiesToUsecs(long jiffies) => FromJiffies(jiffies, 1_000_000, roundUp: false, nameof(jiffies));

    private long ToJiffies(long value, long unitsPerSecond, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value, name);
        Int128 jiffies = (((Int128)value * Hz) + unitsPerSecond - 1) / unitsPerSecond;
        return jiffies > Timers.Jiffies.MaxJiffyOffset ? Timers.Jiffies.MaxJiffyOffset : (long)jiffies;
    }

    private long FromJiffies(long jiffies, long unitsPerSecond, bool roundUp, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(jiffies, name);
        Int128 scaled = (Int128)jiffies * unitsPerSecond;
        Int128 result = roundUp ? (scaled + Hz - 1) / Hz : scaled / Hz;
        return result > long.MaxValue ? long.MaxValue : (long)result;
    }

    // ---- timers ----

    /// <summary>
    /// timer_setup(): a timer of the per-CPU timer wheel whose <paramref name="callback"/> runs in
    /// TIMER_SOFTIRQ. Allocate it once, arm it many times (<see cref="TimerList.ModTimer"/>).
    /// </summary>
    public TimerList TimerSetup(Action<TimerList> callback, TimerFlags flags = TimerFlags.None, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(callback);
        if ((flags & ~(TimerFlags.Pinned | TimerFlags.Deferrable)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(flags), flags, "timer_setup(): unknown TIMER_* flags; Pinned and Deferrable are defined.");
        }
        ThrowIfUnusable("timer_setup()");
        return new TimerList(this, callback, flags, name);
    }

    /// <summary>
    /// hrtimer_setup(): a high-resolution timer on the monotonic clock whose <paramref name="function"/>
    /// runs in HRTIMER_SOFTIRQ (HRTIMER_MODE_SOFT). Allocate it once, start it many times.
    /// </summary>
    public Hrtimer HrtimerSetup(Func<Hrtimer, HrtimerRestart> function, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(function);
        ThrowIfUnusable("hrtimer_setup()");
        return new Hrtimer(this, function, name);
    }

    /// <summary>
    /// The CPU that a timer armed by the calling thread goes to: its own CPU (or <paramref name="cpu"/>),
    /// or, from a thread of no CPU, the one placement picks, entered under rundown protection (the caller
    /// must call <c>ExitForeign()</c> on <paramref name="foreign"/> when set).
    /// </summary>
    internal VirtualCpu TimerTarget(int cpu, string caller, out VirtualCpu? foreign)
    {
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, this))
        {
            ThrowIfStoppedForTask(ctx, caller);
            foreign = null;
            return cpu < 0 ? ctx.Cpu : CpuAt(cpu, caller);
        }
        if (cpu < 0)
        {
            foreign = EnterForeign(caller);
        }
        else
        {
            foreign = CpuAt(cpu, caller);
            EnterForeignOn(foreign, caller);
        }
        return foreign;
    }

    /// <summary>The end of the jiffy in which shutdown began (0 before): timer events up to it are drained, later ones abandoned.</summary>
    internal long TimerDrainCutoffNs => Volatile.Read(ref _timerDrainCutoffNs);

    private void StartTimerDrain() => Volatile.Write(ref _timerDrainCutoffNs, JiffyStartNs(Jiffies + 1));

    /// <summary>Counts what shutdown leaves armed; called once every CPU thread has exited.</summary>
    private void CountAbandonedTimers()
    {
        long armed = 0;
        foreach (var cpu in _cpus)
        {
            armed += cpu.Timers.ArmedCount;
        }
        Volatile.Write(ref _abandonedTimers, armed);
    }
}
