using Microsoft.Win32.SafeHandles;

namespace DeferRuntime.Platform;

/// <summary>
/// Whether a thread of this process is blocked in the OS, as the scheduler sees it: the state letter of
/// its /proc stat file (S: interruptible sleep, D: uninterruptible; R: running or runnable). The thread
/// opens its own file (/proc/thread-self/stat, which names the task, so the handle stays that thread's
/// whoever reads it) and any thread re-reads it from offset 0, which regenerates it: a look is one
/// pread(2) and allocates nothing. Linux only; elsewhere every thread reads as not blocked.
/// </summary>
internal static class ThreadRunState
{
    /// <summary>Opens the calling thread's state file, or null where there is none (not Linux, no /proc).</summary>
    public static SafeFileHandle? OpenForCurrentThread() => OpenThreadSelf("stat");

    /// <summary>
    /// Opens /proc/thread-self/<paramref name="name"/> for reading, or null where there is none (not
    /// Linux, no /proc, a kernel before 3.17 without thread-self, or a file this kernel does not have).
    /// The handle names the calling thread's task whoever reads it later.
    /// </summary>
    internal static SafeFileHandle? OpenThreadSelf(string name)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        try
        {
            return File.OpenHandle("/proc/thread-self/" + name, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// True when the thread of <paramref name="stat"/> sleeps in the kernel (state S or D); false when it
    /// runs, waits for a core, has exited (its handle closed or ESRCH), or the state cannot be read.
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
            return false; // the thread exited (ESRCH)
        }
        catch (ObjectDisposedException)
        {
            return false; // the thread exited and closed its handle after the caller took it
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
