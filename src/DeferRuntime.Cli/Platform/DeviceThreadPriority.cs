using System.Runtime.InteropServices;

namespace DeferRuntime.Cli.Platform;

/// <summary>
/// The storm's device threads (the generator, the NIC sender) stand in for hardware, which no CPU
/// scheduler delays. On a small machine they share cores with cpu/N at nice -10, so left at nice 0 they
/// are preempted for milliseconds and the storm they deliver is not the one asked for. Linux threads
/// inherit the nice value of the thread that creates them: <see cref="Raise"/> sets the calling thread's
/// nice for the scope in which the device threads are started, then puts it back.
/// </summary>
internal static partial class DeviceThreadPriority
{
    private const int PrioProcess = 0;

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, int who, int prio);

    [LibraryImport("libc", EntryPoint = "getpriority", SetLastError = true)]
    private static partial int GetPriority(int which, int who);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();

    /// <summary>Sets the calling thread's nice to <paramref name="nice"/> until the scope is disposed; a refusal (no CAP_SYS_NICE) leaves it as it was and says why.</summary>
    public static Scope Raise(int nice)
    {
        if (!OperatingSystem.IsLinux())
        {
            return new Scope(null, $"not available on {RuntimeInformation.OSDescription}");
        }
        int tid = GetTid();
        Marshal.SetLastPInvokeError(0);
        int before = GetPriority(PrioProcess, tid);
        if (before == -1 && Marshal.GetLastPInvokeError() != 0)
        {
            return new Scope(null, $"getpriority failed (errno {Marshal.GetLastPInvokeError()})");
        }
        return SetPriority(PrioProcess, tid, nice) == 0
            ? new Scope(() => SetPriority(PrioProcess, tid, before), null)
            : new Scope(null, $"setpriority(nice {nice}) refused (errno {Marshal.GetLastPInvokeError()})");
    }

    internal readonly struct Scope(Func<int>? restore, string? error) : IDisposable
    {
        /// <summary>Why the priority was not granted, or null.</summary>
        public string? Error { get; } = error;

        public void Dispose() => restore?.Invoke();
    }
}
