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

    internal CpuBinding(ThreadContext context)
    {
        _context = context;
        _thread = Thread.CurrentThread;
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
        Cpu.Runtime.RemoveBinding(this);
    }
}
