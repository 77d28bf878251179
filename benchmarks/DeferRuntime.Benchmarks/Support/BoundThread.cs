using DeferRuntime.Cpus;

namespace DeferRuntime.Benchmarks.Support;

/// <summary>
/// The same-CPU setup: a runtime with default options (Hybrid idle: cpu/N spin 50 µs, then park), and
/// the measuring thread bound to CPU 0 (kthread_bind) and pinned to cpu/0's core, so it is a task of
/// CPU 0 the way a kthread bound to a CPU is. cpu/0 stays parked: nothing in the measured paths kicks it.
/// </summary>
internal sealed class BoundThread : IDisposable
{
    private readonly CpuBinding _binding;

    public BoundThread()
    {
        Runtime = Runtime.Boot(new RuntimeOptions());
        ThreadAffinity.Pin(Runtime.Cpus[0].Core);
        _binding = Runtime.Cpus[0].BindCurrentThread();
    }

    public Runtime Runtime { get; }

    /// <summary>Unbinds and unpins the thread, then shuts the runtime down (which runs anything left).</summary>
    public void Dispose()
    {
        _binding.Dispose();
        ThreadAffinity.Pin(ThreadAffinity.OriginalCores);
        Runtime.Dispose();
    }
}
