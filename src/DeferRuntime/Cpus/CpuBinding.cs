using DeferRuntime.Platform;

namespace DeferRuntime.Cpus;

/// <summary>
/// The binding made by <see cref="VirtualCpu.BindCurrentThread"/>: while it lasts, the thread is a task
/// of that CPU. Dispose on the same thread, in process context, to unbind.
/// </summary>
public sealed class CpuBinding : IDisposable
{
    private readonly ThreadContext _context;
    private readonly Thread _thread;
    private bool _disposed;

    private readonly int[]? _previousCores; // the thread's affinity before it was pinned, or null if not pinned

    internal CpuBinding(ThreadContext context, ThreadPlacementReport placement, int[]? previousCores)
    {
        _context = context;
        _thread = Thread.CurrentThread;
        Placement = placement;
        _previousCores = previousCores;
    }

    /// <summary>What the OS granted the bound thread: pinned to the CPU's core, or why not (as the boot report says it for the runtime's own threads).</summary>
    public ThreadPlacementReport Placement { get; }

    internal void RestoreAffinity()
    {
        if (_previousCores is { Length: > 0 } cores)
        {
            ThreadPlacement.PinCurrentThreadToCores(cores);
        }
    }

    /// <summary>The name of the bound thread, for shutdown reports.</summary>
    public string ThreadName => _thread.Name ?? $"managed thread {_thread.ManagedThreadId}";

    /// <summary>The CPU the thread is bound to.</summary>
    public VirtualCpu Cpu => _context.Cpu;

    /// <summary>Unbinds the thread. Refused while it is still atomic (bh or interrupts disabled, preemption off).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        if (!ReferenceEquals(Thread.CurrentThread, _thread))
        {
            throw new InvalidOperationException($"CpuBinding.Dispose() on thread '{Thread.CurrentThread.Name}': a binding is undone by the thread it binds.");
        }
        if (_context.PreemptCount != 0 || _context.IrqsOff)
        {
            throw new InvalidOperationException($"CpuBinding.Dispose() in atomic context ({_context.Describe()}): re-enable bottom halves, interrupts and preemption first.");
        }
        _disposed = true;
        ThreadContext.Detach();
        RestoreAffinity();
        Cpu.Runtime.RemoveBinding(this);
    }
}
