namespace DeferRuntime.Interrupts;

/// <summary>
/// struct irqaction: one request on a line — primary handler, optional thread function and its
/// <c>irq/L-name</c> thread, flags, name and dev cookie. Returned to the driver as an
/// <see cref="IDisposable"/> registration: disposing it is free_irq().
/// </summary>
public sealed class IrqAction : IDisposable
{
    // Called in hardirq context when the line fires: set by the request, read-only after.
    internal readonly IrqHandler Handler; // I
    internal readonly IrqHandler? ThreadFn; // I
    internal readonly IrqDesc Desc; // I
    internal uint ThreadMask; // L: chosen by IrqDesc.TryAdd under the descriptor lock, before publication (0 without a thread)
    internal IrqThread? Thread; // I (set before the action is published)

    // C: written by the CPU running the chain (the line's in-progress flag serializes chain runs).
    internal IrqReturn LastReturn;

    // T: written by the action's irq thread.
    internal IrqReturn ThreadReturn;

    private int _freed; // A: 1 once free_irq() has started

    internal IrqAction(IrqDesc desc, IrqHandler handler, IrqHandler? threadFn, IrqFlags flags, string name, object? devId)
    {
        Desc = desc;
        Handler = handler;
        ThreadFn = threadFn;
        Flags = flags;
        Name = name;
        DevId = devId;
    }

    /// <summary>The line number.</summary>
    public int Irq => Desc.Irq;

    /// <summary>The name given at request (shown in /proc/interrupts and in the thread's name).</summary>
    public string Name { get; }

    /// <summary>The dev cookie given at request (passed to the handlers; identifies the action for free_irq()).</summary>
    public object? DevId { get; }

    /// <summary>The request flags.</summary>
    public IrqFlags Flags { get; }

    /// <summary>True for a threaded request (RequestThreadedIrq with a thread function).</summary>
    public bool IsThreaded => ThreadFn is not null;

    /// <summary>Times the thread function ran (0 for a non-threaded action).</summary>
    public long ThreadRuns => Thread?.Runs ?? 0;

    /// <summary>True once freed.</summary>
    public bool IsFreed => Volatile.Read(ref _freed) != 0;

    internal bool MarkFreed() => Interlocked.Exchange(ref _freed, 1) == 0;

    /// <summary>free_irq(): removes this action, waits for running handlers and for its thread, and disables the line if it was the last one. Harmless twice.</summary>
    public void Dispose() => Desc.Controller.Free(this);

    /// <inheritdoc/>
    public override string ToString() => $"irq {Irq} '{Name}'";
}
