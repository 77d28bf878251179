namespace DeferRuntime.Interrupts;

/// <summary>A consistent snapshot of one line's descriptor: what /proc/interrupts and /proc/irq/N show, and the counts the tests check.</summary>
/// <param name="Irq">The line number.</param>
/// <param name="Trigger">Edge or level.</param>
/// <param name="Actions">Names of the action chain, in dispatch order.</param>
/// <param name="PerCpuRuns">Chain runs per CPU (the /proc/interrupts columns).</param>
/// <param name="Asserts">Assertions by the device (edges, or level activations).</param>
/// <param name="Coalesced">Assertions merged into one already latched or pending (counted, not lost).</param>
/// <param name="Replays">Extra chain runs of handle_edge_irq for edges that arrived while it ran.</param>
/// <param name="Resends">Pending edges resent when the line was enabled again (check_irq_resend).</param>
/// <param name="Unhandled">Chain runs where no handler returned IRQ_HANDLED, all time.</param>
/// <param name="SpuriousWindowUnhandled">Unhandled runs in the spurious detector's current window.</param>
/// <param name="Depth">Disable depth (0 = enabled).</param>
/// <param name="Masked">Masked at the chip.</param>
/// <param name="InProgress">A CPU is running the chain now.</param>
/// <param name="Pending">An edge is latched or pending replay.</param>
/// <param name="SpuriousDisabled">Disabled by the spurious detector.</param>
/// <param name="Affinity">CPUs the line is delivered to.</param>
/// <param name="Balanced">Spread across the affinity mask (else its first CPU).</param>
public sealed record IrqLineStats(
    int Irq, IrqTrigger Trigger, IReadOnlyList<string> Actions, IReadOnlyList<long> PerCpuRuns, long Asserts,
    long Coalesced, long Replays, long Resends, long Unhandled, int SpuriousWindowUnhandled, int Depth,
    bool Masked, bool InProgress, bool Pending, bool SpuriousDisabled, IReadOnlyList<int> Affinity, bool Balanced)
{
    /// <summary>Total chain runs over all CPUs.</summary>
    public long Runs => PerCpuRuns.Sum();
}
