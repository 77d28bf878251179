using System.Runtime.InteropServices;

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
    /// True when the thread of <paramref name="statPath"/> sleeps in the kernel (state S or D); false when
    /// it runs, waits for a core, has exited, or the state cannot be read.
    /// </summary>
    public static bool IsBlocked(string? statPath)
    {
        if (statPath is null)
        {
            return false;
        }
        Span<byte> buffer = stackalloc byte[512];
        int read;
        try
        {
            using var handle = File.OpenHandle(statPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            read = RandomAccess.Read(handle, buffer, 0);
        }
        catch (IOException)
        {
            return false; // the thread exited between the look and the read
        }
        catch (UnauthorizedAccessException)
        {
            return false;
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
