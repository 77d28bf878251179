using System.Runtime.InteropServices;

namespace DeferRuntime.Benchmarks.Support;

/// <summary>
/// Pins the calling OS thread with sched_setaffinity(2), as <c>taskset</c> would. The library pins its own
/// threads; the benchmarks need the same control over theirs (the measuring thread, the peers' consumer
/// threads), and .NET has no per-thread affinity API on Linux (ProcessThread.ProcessorAffinity throws).
/// </summary>
internal static unsafe partial class ThreadAffinity
{
    private const int MaskBytes = 128; // cpu_set_t of 1024 CPUs

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, byte* mask);

    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nint size, byte* mask);

    // The cores of the first thread this class pinned, read just before (so: the process's own mask).
    private static int[]? s_original;

    [ThreadStatic]
    private static bool t_widened;

    /// <summary>True where this class can pin (Linux).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>The OS cores the calling thread may run on, ascending (all processors where pinning is unsupported).</summary>
    public static int[] AllowedCores()
    {
        if (!IsSupported)
        {
            return Enumerable.Range(0, Environment.ProcessorCount).ToArray();
        }
        byte* mask = stackalloc byte[MaskBytes];
        if (SchedGetAffinity(0, MaskBytes, mask) != 0)
        {
            throw new InvalidOperationException($"sched_getaffinity failed: errno {Marshal.GetLastPInvokeError()}");
        }
        var cores = new List<int>();
        for (int i = 0; i < MaskBytes * 8; i++)
        {
            if ((mask[i / 8] & (1 << (i % 8))) != 0)
            {
                cores.Add(i);
            }
        }
        return cores.ToArray();
    }

    /// <summary>The cores the process could use before anything was pinned here.</summary>
    public static int[] OriginalCores => s_original ?? AllowedCores();

    /// <summary>
    /// Gives a thread-pool worker back the process's cores, once per thread. A new thread inherits the
    /// affinity of the thread that creates it, and the pool creates workers from whichever thread queues
    /// work, here a producer pinned to one core: its workers would then be stuck on the producer's
    /// (busy, spinning) core and wait a scheduler tick (4 ms) per item, which is our artifact, not the
    /// pool's. The peers' callbacks call this first; other threads are left alone, and after the first
    /// call it is one thread-static read.
    /// </summary>
    public static void WidenPoolThread()
    {
        if (!t_widened)
        {
            t_widened = true;
            if (Thread.CurrentThread.IsThreadPoolThread && s_original is { } cores)
            {
                Pin(cores);
            }
        }
    }

    /// <summary>Restricts the calling thread to <paramref name="cores"/>; a no-op where pinning is unsupported.</summary>
    public static void Pin(params ReadOnlySpan<int> cores)
    {
        if (!IsSupported)
        {
            return;
        }
        s_original ??= AllowedCores();
        byte* mask = stackalloc byte[MaskBytes];
        new Span<byte>(mask, MaskBytes).Clear();
        foreach (int core in cores)
        {
            mask[core / 8] |= (byte)(1 << (core % 8));
        }
        if (SchedSetAffinity(0, MaskBytes, mask) != 0)
        {
            throw new InvalidOperationException($"sched_setaffinity({string.Join(",", cores.ToArray())}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }
}
