namespace DeferRuntime.Torture;

/// <summary>
/// locktorture's end-of-test statistics for one lock type: the writers' (and readers') acquisition
/// counts, exclusion violations, and what stutter, shuffle and long holds did during the run.
/// </summary>
public sealed class LockTortureResult
{
    /// <summary>torture_type: the lock type ("spin_lock", "lock_busted", ...).</summary>
    public required string LockType { get; init; }

    /// <summary>True for lock_busted, which is expected to fail.</summary>
    public bool Busted { get; init; }

    /// <summary>nwriters_stress.</summary>
    public int Writers { get; init; }

    /// <summary>nreaders_stress (0 for lock types without a read side).</summary>
    public int Readers { get; init; }

    /// <summary>How long the writers ran, in seconds.</summary>
    public double DurationSeconds { get; init; }

    /// <summary>The writers' acquisitions and violations.</summary>
    public required AcquisitionStats Writes { get; init; }

    /// <summary>The readers' acquisitions and violations, for lock types with a read side.</summary>
    public AcquisitionStats? Reads { get; init; }

    /// <summary>The guard's plain counter, incremented inside every write hold: short of Writes.Total by the increments lost to overlapping holds.</summary>
    public long GuardedCounter { get; init; }

    /// <summary>"hardirq" or "softirq" for the irq and bh variants, whose holds must also keep that context off the holder's CPU; null otherwise.</summary>
    public string? HeldContext { get; init; }

    /// <summary>Hard IRQs or softirqs that ran on a holder's CPU during its hold (must be 0).</summary>
    public long ContextViolations { get; init; }

    /// <summary>Hard IRQs or softirqs the test's device delivered to the CPUs meanwhile (how hard the check was pushed).</summary>
    public long ContextEvents { get; init; }

    /// <summary>Occasional long holds taken.</summary>
    public long LongHolds { get; init; }

    /// <summary>Stutter pauses of all load threads.</summary>
    public long Stutters { get; init; }

    /// <summary>Moves of a load thread to another CPU.</summary>
    public long Shuffles { get; init; }

    /// <summary>What the OS granted when threads were pinned after a move.</summary>
    public string Placement { get; init; } = "";

    /// <summary>Faults the runtime reported during the test (nothing is injected into lock tests: any fault fails it).</summary>
    public required FaultAccounting Faults { get; init; }

    /// <summary>Every invariant checked, with its verdict.</summary>
    public IReadOnlyList<TortureCheck> Checks { get; init; } = [];

    /// <summary>Every check held ("End of test: SUCCESS").</summary>
    public bool Passed => Checks.All(c => c.Passed);
}
