using Microsoft.Win32.SafeHandles;

namespace DeferRuntime.Platform;

/// <summary>
/// The calling thread's run delay as the OS scheduler counts it: the second field of
/// /proc/thread-self/schedstat, the nanoseconds it has spent runnable but waiting for a CPU. A thread
/// opens its own file once; a look is one pread(2) and allocates nothing. On a VM it tells a thread that
/// waited for a CPU of this OS from one whose vCPU the hypervisor did not run (the OS counts that time
/// as the thread running, or as its sleep). Linux only.
/// </summary>
internal static class ThreadSchedStat
{
    /// <summary>Opens the calling thread's schedstat file, or null where there is none (not Linux, no /proc, no CONFIG_SCHED_INFO).</summary>
    public static SafeFileHandle? OpenForCurrentThread()
    {
        var handle = ThreadRunState.OpenThreadSelf("schedstat");
        if (handle is not null && ReadRunDelayNs(handle) < 0)
        {
            handle.Dispose();
            return null;
        }
        return handle;
    }

    /// <summary>Run delay in ns so far ("on-CPU-ns run-delay-ns timeslices"), or -1 if it cannot be read.</summary>
    public static long ReadRunDelayNs(SafeFileHandle schedstat)
    {
        Span<byte> buffer = stackalloc byte[96];
        int read;
        try
        {
            read = RandomAccess.Read(schedstat, buffer, 0);
        }
        catch (IOException)
        {
            return -1;
        }
        var text = buffer[..read];
        int space = text.IndexOf((byte)' ');
        if (space < 0)
        {
            return -1;
        }
        long value = 0;
        int digits = 0;
        for (int i = space + 1; i < text.Length && text[i] is >= (byte)'0' and <= (byte)'9'; i++, digits++)
        {
            value = value * 10 + (text[i] - '0');
        }
        return digits > 0 ? value : -1;
    }
}
