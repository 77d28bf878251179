using System.Runtime.InteropServices;

namespace DeferRuntime.Platform;

/// <summary>
/// Another thread's consumed CPU time, as the kernel's task->se.sum_exec_runtime: the thread takes its
/// clock id (pthread_getcpuclockid) and any thread reads it with clock_gettime(2). Linux only; elsewhere
/// <see cref="Create"/> returns <see cref="None"/> and callers fall back to wall time.
/// </summary>
internal static unsafe partial class ThreadCpuClock
{
    /// <summary>No CPU clock (unsupported platform or refused).</summary>
    public const int None = int.MinValue;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "pthread_self")]
    private static partial nuint PthreadSelf();

    [LibraryImport("libc", EntryPoint = "pthread_getcpuclockid")]
    private static partial int PthreadGetCpuClockId(nuint thread, int* clockId);

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clockId, Timespec* time);

    /// <summary>The calling thread's CPU clock id, or <see cref="None"/>.</summary>
    public static int Create()
    {
        if (!OperatingSystem.IsLinux())
        {
            return None;
        }
        int id;
        return PthreadGetCpuClockId(PthreadSelf(), &id) == 0 ? id : None;
    }

    /// <summary>CPU time consumed by the thread of <paramref name="clockId"/> in nanoseconds, or -1 if it cannot be read.</summary>
    public static long ReadNs(int clockId)
    {
        if (clockId == None)
        {
            return -1;
        }
        Timespec ts;
        return ClockGetTime(clockId, &ts) == 0 ? (ts.Seconds * 1_000_000_000) + ts.Nanoseconds : -1;
    }
}
