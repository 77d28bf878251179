using System.ComponentModel;
using System.Runtime.InteropServices;

namespace DeferRuntime.Platform;

/// <summary>
/// Pins and prioritises the calling thread with the OS's own calls: sched_setaffinity(2) and
/// setpriority(2) / sched_setscheduler(2) on Linux, SetThreadAffinityMask and thread priority on Windows.
/// Every call answers what the OS granted; nothing is faked where the platform cannot do it.
/// </summary>
internal static unsafe partial class ThreadPlacement
{
    private const int MaskBytes = 128; // cpu_set_t of 1024 CPUs
    private const int PrioProcess = 0;
    private const int SchedOther = 0;
    private const int SchedFifo = 1;

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, byte* mask);

    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nint size, byte* mask);

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, int who, int prio);

    [LibraryImport("libc", EntryPoint = "sched_setscheduler", SetLastError = true)]
    private static partial int SchedSetScheduler(int pid, int policy, int* param);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTidFromLibc();

    /// <summary>
    /// The calling thread's kernel id. glibc exports gettid() only from 2.30 on (RHEL 8 has 2.28); there
    /// the id is read from /proc/thread-self, a link to "PID/task/TID". 0, if even that fails, also means
    /// the calling thread to setpriority(PRIO_PROCESS) and sched_setscheduler(), its only users.
    /// </summary>
    private static int GetTid()
    {
        try
        {
            return GetTidFromLibc();
        }
        catch (EntryPointNotFoundException)
        {
            string? target = new DirectoryInfo("/proc/thread-self").LinkTarget;
            return target is not null && int.TryParse(Path.GetFileName(target), System.Globalization.CultureInfo.InvariantCulture, out int tid) ? tid : 0;
        }
    }

    [LibraryImport("kernel32.dll", EntryPoint = "SetThreadAffinityMask", SetLastError = true)]
    private static partial nuint SetThreadAffinityMask(nint thread, nuint mask);

    [LibraryImport("kernel32.dll", EntryPoint = "GetCurrentThread")]
    private static partial nint GetCurrentThread();

    /// <summary>
    /// The OS cores this process may run on, in order (sched_getaffinity on Linux); core i of the list is
    /// where virtual CPUs N with N mod count == i are pinned.
    /// </summary>
    public static int[] AllowedCores() => CurrentThreadCores() ?? Enumerable.Range(0, Environment.ProcessorCount).ToArray();

    /// <summary>The OS cores the calling thread may run on now (sched_getaffinity of the thread), or null where not available.</summary>
    public static int[]? CurrentThreadCores()
    {
        if (OperatingSystem.IsLinux())
        {
            byte* mask = stackalloc byte[MaskBytes];
            if (SchedGetAffinity(0, MaskBytes, mask) == 0)
            {
                var cores = new List<int>();
                for (int i = 0; i < MaskBytes * 8; i++)
                {
                    if ((mask[i / 8] & (1 << (i % 8))) != 0)
                    {
                        cores.Add(i);
                    }
                }
                return cores.Count > 0 ? cores.ToArray() : null;
            }
        }
        return null;
    }

    /// <summary>Pins the calling thread to one OS core. Returns null on success, else why not.</summary>
    public static string? PinCurrentThread(int core)
    {
        if (OperatingSystem.IsLinux())
        {
            byte* mask = stackalloc byte[MaskBytes];
            new Span<byte>(mask, MaskBytes).Clear();
            mask[core / 8] = (byte)(1 << (core % 8));
            return SchedSetAffinity(0, MaskBytes, mask) == 0 ? null : $"sched_setaffinity(core {core}) failed: {LastError()}";
        }
        if (OperatingSystem.IsWindows())
        {
            if (core >= nint.Size * 8)
            {
                return $"core {core} is outside the thread's processor group";
            }
            return SetThreadAffinityMask(GetCurrentThread(), (nuint)1 << core) != 0 ? null : $"SetThreadAffinityMask failed: {LastError()}";
        }
        return $"thread pinning is not available on {RuntimeInformation.OSDescription}";
    }

    /// <summary>
    /// Restricts the calling thread to a set of OS cores (an unbound worker pool's CPU mask). Returns
    /// null on success, else why not.
    /// </summary>
    public static string? PinCurrentThreadToCores(ReadOnlySpan<int> cores)
    {
        if (cores.Length == 1)
        {
            return PinCurrentThread(cores[0]);
        }
        if (OperatingSystem.IsLinux())
        {
            byte* mask = stackalloc byte[MaskBytes];
            new Span<byte>(mask, MaskBytes).Clear();
            foreach (int core in cores)
            {
                mask[core / 8] |= (byte)(1 << (core % 8));
            }
            return SchedSetAffinity(0, MaskBytes, mask) == 0 ? null : $"sched_setaffinity({cores.Length} cores) failed: {LastError()}";
        }
        if (OperatingSystem.IsWindows())
        {
            nuint bits = 0;
            foreach (int core in cores)
            {
                if (core >= nint.Size * 8)
                {
                    return $"core {core} is outside the thread's processor group";
                }
                bits |= (nuint)1 << core;
            }
            return SetThreadAffinityMask(GetCurrentThread(), bits) != 0 ? null : $"SetThreadAffinityMask failed: {LastError()}";
        }
        return $"thread pinning is not available on {RuntimeInformation.OSDescription}";
    }

    /// <summary>
    /// Makes the calling thread SCHED_OTHER at nice <paramref name="nice"/>, whatever it inherited. Returns
    /// null on success, else why not.
    /// </summary>
    /// <remarks>
    /// Linux threads inherit their creator's policy and nice at clone(): a kworker created by the nice-19
    /// workqueue ticker, or a thread started from a SCHED_FIFO cpu/N, would otherwise keep that, and a
    /// nice-19 kworker gets ~0.2% of a core that a nice -10 cpu/N polls on (hundreds of milliseconds of
    /// run delay, measured with perf sched). So nice 0 is set too, never assumed.
    /// </remarks>
    public static string? SetNice(int nice)
    {
        if (OperatingSystem.IsLinux())
        {
            int tid = GetTid();
            int param = 0;
            if (SchedSetScheduler(tid, SchedOther, &param) != 0)
            {
                return $"sched_setscheduler(SCHED_OTHER) failed: {LastError()}";
            }
            return SetPriority(PrioProcess, tid, nice) == 0 ? null : $"setpriority(nice {nice}) failed: {LastError()}";
        }
        if (OperatingSystem.IsWindows())
        {
            Thread.CurrentThread.Priority = nice switch
            {
                <= -10 => ThreadPriority.Highest,
                < 0 => ThreadPriority.AboveNormal,
                0 => ThreadPriority.Normal,
                < 10 => ThreadPriority.BelowNormal,
                _ => ThreadPriority.Lowest,
            };
            return null;
        }
        return $"thread priorities are not available on {RuntimeInformation.OSDescription}";
    }

    /// <summary>Makes the calling thread SCHED_FIFO at <paramref name="priority"/>. Returns null on success, else why not.</summary>
    public static string? SetFifo(int priority)
    {
        if (OperatingSystem.IsLinux())
        {
            int param = priority;
            return SchedSetScheduler(GetTid(), SchedFifo, &param) == 0 ? null : $"sched_setscheduler(SCHED_FIFO {priority}) failed: {LastError()}";
        }
        return SetNice(-20);
    }

    private static string LastError()
    {
        int errno = Marshal.GetLastPInvokeError();
        return $"{new Win32Exception(errno).Message} (errno {errno})";
    }
}
