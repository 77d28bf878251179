namespace DeferRuntime.Torture;

/// <summary>
/// An oops injected on purpose, as the kernel's fault injection (lib/fault-inject.c) makes calls fail:
/// thrown by every Nth tasklet callback, work function or softirq handler when
/// <see cref="TortureOptions.FaultEvery"/> is set. The runtime must report each one in Runtime.Faults
/// and keep running.
/// </summary>
public sealed class InjectedFaultException : Exception
{
    /// <summary>An injected fault with its message.</summary>
    public InjectedFaultException(string message)
        : base(message)
    {
    }

    /// <summary>An injected fault without a message.</summary>
    public InjectedFaultException()
    {
    }

    /// <summary>An injected fault wrapping another exception.</summary>
    public InjectedFaultException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
