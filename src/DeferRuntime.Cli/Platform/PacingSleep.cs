using System.Diagnostics;
using System.Runtime.InteropServices;

namespace DeferRuntime.Cli.Platform;

/// <summary>
/// Absolute-deadline sleeps for the CLI's pacing threads (the NIC sender), as the library's storm generator
/// paces itself: clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) to just before a deadline with a 1 ns timer
/// slack, then a short spin. A device thread at nice -10 that yields in a loop between events instead keeps
/// its core busy (sched_yield() hands a nice 0 kworker of that core only a sliver), and delays that core's
/// kworkers by milliseconds.
/// </summary>
internal static partial class PacingSleep
{
    private const int ClockMonotonic = 1; // CLOCK_MONOTONIC: what Stopwatch reads on Linux
    private const int TimerAbsTime = 1; // TIMER_ABSTIME
    private const int PrSetTimerSlack = 29; // PR_SET_TIMERSLACK

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanosleep(int clock, int flags, in TimeSpec request, IntPtr remain);

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    /// <summary>True where <see cref="Until"/> works: Linux, with Stopwatch counting CLOCK_MONOTONIC nanoseconds.</summary>
    public static bool Available { get; } = OperatingSystem.IsLinux() && Stopwatch.Frequency == 1_000_000_000;

    /// <summary>Sleeps until the Stopwatch timestamp <paramref name="deadline"/> (a signal may end it early: callers re-read the clock).</summary>
    public static void Until(long deadline)
    {
        Debug.Assert(Available, "PacingSleep.Until needs CLOCK_MONOTONIC nanosecond timestamps");
        var ts = new TimeSpec { Seconds = deadline / 1_000_000_000, Nanoseconds = deadline % 1_000_000_000 };
        ClockNanosleep(ClockMonotonic, TimerAbsTime, ts, IntPtr.Zero);
    }

    /// <summary>
    /// prctl(PR_SET_TIMERSLACK, 1) for the calling thread, so its sleeps end at their deadline. False if
    /// refused (the sleeps then end up to the default 50 µs late; the spin margin absorbs part of it).
    /// </summary>
    public static bool UsePreciseTimerSlack() => Available && Prctl(PrSetTimerSlack, 1, 0, 0, 0) == 0;
}
