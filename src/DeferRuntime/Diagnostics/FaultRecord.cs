namespace DeferRuntime.Diagnostics;

/// <summary>An oops (a handler, tasklet or call that threw, or broke its context) or a kernel warning, and where; <see cref="Kind"/> says which.</summary>
/// <param name="Timestamp">When it was reported.</param>
/// <param name="Cpu">The virtual CPU it ran on.</param>
/// <param name="Thread">The thread that ran it (cpu/0, ksoftirqd/1, ...).</param>
/// <param name="Source">What ran: "softirq NET_RX", "tasklet 'rx'", "IPI call function", ...</param>
/// <param name="Exception">What it threw.</param>
public sealed record FaultRecord(DateTimeOffset Timestamp, int Cpu, string Thread, string Source, Exception Exception)
{
    /// <summary>Oops, warning, spurious-line disable or workqueue stall.</summary>
    public FaultKind Kind { get; init; } = FaultKind.Oops;

    /// <inheritdoc />
    public override string ToString() => $"[{Timestamp:O}] CPU {Cpu} {Thread}: {Source}: {Exception.GetType().Name}: {Exception.Message}";
}
