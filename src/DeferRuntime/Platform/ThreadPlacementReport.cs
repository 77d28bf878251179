namespace DeferRuntime.Platform;

/// <summary>What the OS granted one runtime thread at boot: pinning and priority, and why not if refused.</summary>
/// <param name="Thread">The thread's name (cpu/0, ksoftirqd/1, ...).</param>
/// <param name="Cpu">The virtual CPU it is bound to.</param>
/// <param name="Core">The OS core it was to be pinned to, or null when pinning is off.</param>
/// <param name="Pinned">True when sched_setaffinity (or the platform's call) succeeded.</param>
/// <param name="PinError">Why pinning failed, or null.</param>
/// <param name="Priority">The priority asked for ("nice -10", "SCHED_FIFO 10", "unchanged").</param>
/// <param name="PriorityGranted">True when the OS granted it.</param>
/// <param name="PriorityError">Why the priority was refused, or null.</param>
public sealed record ThreadPlacementReport(
    string Thread, int Cpu, int? Core, bool Pinned, string? PinError, string Priority, bool PriorityGranted, string? PriorityError)
{
    /// <inheritdoc />
    public override string ToString() =>
        $"{Thread,-14} core {(Core?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"),-3} " +
        $"pinned: {(Core is null ? "off" : Pinned ? "yes" : "NO (" + PinError + ")")}; " +
        $"{Priority}: {(PriorityGranted ? "granted" : "REFUSED (" + PriorityError + ")")}";
}
