using System.Runtime.InteropServices;

namespace DeferRuntime.Platform;

/// <summary>The Linux futex(2) system call: FUTEX_WAIT_PRIVATE / FUTEX_WAKE_PRIVATE on one word.</summary>
internal static unsafe partial class Futex
{
    private const int FutexWaitPrivate = 0 | 128;
    private const int FutexWakePrivate = 1 | 128;

    // Syscall numbers differ per architecture; elsewhere the Parker falls back to a monitor.
    private static readonly long s_sysFutex = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 => 98,
        _ => -1,
    };

    public static bool IsAvailable { get; } = OperatingSystem.IsLinux() && s_sysFutex > 0;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, int* address, int op, int value, Timespec* timeout, int* address2, int value3);

    /// <summary>Sleeps while <c>*address == expected</c>, at most <paramref name="timeoutNs"/> (negative: forever).</summary>
    public static void Wait(int* address, int expected, long timeoutNs)
    {
        if (timeoutNs < 0)
        {
            Syscall(s_sysFutex, address, FutexWaitPrivate, expected, null, null, 0);
            return;
        }
        var ts = new Timespec { Seconds = timeoutNs / 1_000_000_000, Nanoseconds = timeoutNs % 1_000_000_000 };
        Syscall(s_sysFutex, address, FutexWaitPrivate, expected, &ts, null, 0);
    }

    /// <summary>Wakes up to <paramref name="count"/> threads sleeping on <paramref name="address"/>.</summary>
    public static void Wake(int* address, int count) => Syscall(s_sysFutex, address, FutexWakePrivate, count, null, null, 0);
}
