namespace DeferRuntime.Diagnostics;

/// <summary>
/// "Kernel panic - not syncing": the runtime halted because a handler threw with
/// <see cref="RuntimeOptions.PanicOnOops"/> set. Every later call on the runtime throws it.
/// </summary>
public sealed class KernelPanicException : InvalidOperationException
{
    /// <summary>Creates the exception for <paramref name="fault"/>.</summary>
    public KernelPanicException(FaultRecord fault)
        : base($"Kernel panic - not syncing: fatal exception in {fault.Source} on CPU {fault.Cpu} ({fault.Thread}) with panic_on_oops set: {fault.Exception.Message}", fault.Exception)
    {
        Fault = fault;
    }

    /// <summary>The fault that caused the panic.</summary>
    public FaultRecord Fault { get; }
}
