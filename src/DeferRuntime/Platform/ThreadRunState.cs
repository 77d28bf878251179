using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DeferRuntime.Platform;

/// <summary>
/// Whether another thread of this process is blocked in the OS, as the scheduler sees it: the state letter
/// of /proc/self/task/TID/stat (S: interruptible sleep, D: uninterruptible; R: running or runnable). Linux
/// only; elsewhere every thread reads as not blocked.
/// </summary>
internal static partial class ThreadRunState
{
    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();

    /// <summary>The path the ticker reads for the calling thread's state, or null where there is none.</summary>
    public static string? StatPathOfCurrentThread() =>
        OperatingSystem.IsLinux() ? $"/proc/self/task/{GetTid()}/stat" : null;

    /// <summary>
    /// Opens the state file of a thread (kept open and re-read from offset 0, which regenerates it, so a
    /// look allocates nothing), or null where it cannot be opened.
    /// </summary>
    public static SafeFileHandle? Open(string? statPath)
    {
        if (statPath is null)
        {
            return null;
        }
        try
        {
            return File.OpenHandle(statPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
        catch (IOException)
        {
            return null; // the thread has exited
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// True when the thread whose state file <paramref name="stat"/> is sleeps in the kernel (state S or
    /// D); false when it runs, waits for a core, has exited, or the state cannot be read.
    /// </summary>
    public static bool IsBlocked(SafeFileHandle? stat)
    {
        if (stat is null)
        {
            return false;
        }
        Span<byte> buffer = stackalloc byte[512];
        int read;
        try
        {
            read = RandomAccess.Read(stat, buffer, 0);
        }
        catch (IOException)
        {
            return false; // the thread exited between the look and the read (ESRCH)
        }
        // "tid (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ')'.
        var text = buffer[..read];
        int close = text.LastIndexOf((byte)')');
        if (close < 0 || close + 2 >= text.Length)
        {
            return false;
        }
        byte state = text[close + 2];
        return state is (byte)'S' or (byte)'D';
    }
}
