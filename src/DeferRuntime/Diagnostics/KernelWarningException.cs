namespace DeferRuntime.Diagnostics;

/// <summary>
/// A WARN(): the runtime noticed a misuse or a misbehaving device and carried on (an unbalanced
/// enable_irq(), a line disabled as spurious, IRQ_WAKE_THREAD without a thread). Recorded in
/// <see cref="FaultLog"/> like an oops, but never a reason to panic, even with PanicOnOops.
/// </summary>
public sealed class KernelWarningException : Exception
{
    /// <summary>A warning with its message.</summary>
    public KernelWarningException(string message)
        : base(message)
    {
    }

    /// <summary>A warning without a message.</summary>
    public KernelWarningException()
    {
    }

    /// <summary>A warning wrapping what caused it.</summary>
    public KernelWarningException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
