using System.Diagnostics;
using System.Runtime.InteropServices;

namespace DeferRuntime.Platform;

/// <summary>
/// Real sleeps shorter than Thread.Sleep(1). <see cref="Short"/>: usleep(50) on Linux (about 50-110 µs
/// with the default timer slack), Thread.Sleep(1) elsewhere; long enough for a lower-priority thread on
/// the same core to run, short enough that a spinner that backed off does not add a millisecond to every
/// hand-over. <see cref="Until"/>: an absolute-deadline sleep for pacing threads.
/// </summary>
internal static partial class Nap
{
    private const int ClockMonotonic = 1; // CLOCK_MONOTONIC: the clock Stopwatch reads on Linux
    private const int TimerAbsTime = 1; // TIMER_ABSTIME
    private const int PrSetTimerSlack = 29; // PR_SET_TIMERSLACK

    [LibraryImport("libc", EntryPoint = "usleep", SetLastError = true)]
    private static partial int USleep(uint microseconds);

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanosleep(int clock, int flags, in TimeSpec request, IntPtr remain);

    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    private static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    /// <summary>True where <see cref="Until"/> sleeps to a Stopwatch deadline (Linux, where Stopwatch reads CLOCK_MONOTONIC in ns).</summary>
    public static bool CanSleepUntil { get; } = OperatingSystem.IsLinux() && Stopwatch.Frequency == 1_000_000_000;

    public static void Short()
    {
        if (OperatingSystem.IsLinux())
        {
            USleep(50);
        }
        else
        {
            Thread.Sleep(1);
        }
    }

    /// <summary>
    /// clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME): sleeps until the Stopwatch timestamp
    /// <paramref name="deadline"/> (a signal only ends it early; callers re-read the clock). Only where
    /// <see cref="CanSleepUntil"/>.
    /// </summary>
    public static void Until(long deadline)
    {
        Debug.Assert(CanSleepUntil, "Nap.Until needs CLOCK_MONOTONIC timestamps");
        var ts = new TimeSpec { Seconds = deadline / 1_000_000_000, Nanoseconds = deadline % 1_000_000_000 };
        ClockNanosleep(ClockMonotonic, TimerAbsTime, ts, IntPtr.Zero);
    }

    /// <summary>
    /// prctl(PR_SET_TIMERSLACK, 1) for the calling thread: its timed sleeps end at their deadline instead
    /// of up to 50 µs later (the default slack, which lets the kernel batch wake-ups). Returns the OS's
    /// refusal, or null.
    /// </summary>
    public static string? UsePreciseTimerSlack()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "timer slack is a Linux setting";
        }
        return Prctl(PrSetTimerSlack, 1, 0, 0, 0) == 0 ? null : $"prctl(PR_SET_TIMERSLACK) failed: errno {Marshal.GetLastPInvokeError()}";
    }
}
