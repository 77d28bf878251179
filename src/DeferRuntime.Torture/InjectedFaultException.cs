namespace DeferRuntime.Torture;

/// <summary>
/// The oops torture injects on purpose (issue 6, Faults): thrown by every Nth tasklet callback, work
/// function or softirq handler when <see cref="TortureOptions.FaultEvery"/> is set. The runtime must
/// report each one in Runtime.Faults and keep running.
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
