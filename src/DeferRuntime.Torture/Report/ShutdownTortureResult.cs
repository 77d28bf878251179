namespace DeferRuntime.Torture;

/// <summary>
/// Shutdown under load, torture_cleanup() at module unload while the torture kthreads still run:
/// Runtime.Dispose() while threads keep queueing work, scheduling tasklets and raising a softirq. Everything accepted must have run; everything else must have been refused with
/// the documented ObjectDisposedException.
/// </summary>
public sealed class ShutdownTortureResult
{
    /// <summary>Load threads (half bound to CPUs, half of no CPU).</summary>
    public int LoadThreads { get; init; }

    /// <summary>How long the load ran before Dispose() began, in seconds.</summary>
    public double LoadSeconds { get; init; }

    /// <summary>How long Dispose() took, in seconds.</summary>
    public double DisposeSeconds { get; init; }

    /// <summary>queue_work() calls that returned true (from load threads, and chained from work items and tasklets).</summary>
    public long WorkAccepted { get; init; }

    /// <summary>Work functions run.</summary>
    public long WorkRun { get; init; }

    /// <summary>Work accepted after Dispose() began (load kept coming while it ran).</summary>
    public long WorkAcceptedDuringShutdown { get; init; }

    /// <summary>tasklet_schedule() calls that returned.</summary>
    public long TaskletSchedules { get; init; }

    /// <summary>Tasklet runs.</summary>
    public long TaskletRuns { get; init; }

    /// <summary>Tasklet schedules after which no run started (must be 0).</summary>
    public long TaskletSchedulesLost { get; init; }

    /// <summary>raise_softirq() calls that returned (from threads bound to a CPU).</summary>
    public long SoftirqRaises { get; init; }

    /// <summary>Softirq handler runs.</summary>
    public long SoftirqRuns { get; init; }

    /// <summary>Raises after which the handler never ran on that CPU (must be 0).</summary>
    public long SoftirqRaisesLost { get; init; }

    /// <summary>Requests refused with ObjectDisposedException once shutdown began (the documented refusal).</summary>
    public long Refused { get; init; }

    /// <summary>Requests that failed any other way (must be none).</summary>
    public IReadOnlyList<string> UnexpectedErrors { get; init; } = [];

    /// <summary>What Dispose() threw, if anything (must be null).</summary>
    public string? DisposeError { get; init; }

    /// <summary>Moves of a load thread to another CPU.</summary>
    public long Shuffles { get; init; }

    /// <summary>What the OS granted when threads were pinned after a move.</summary>
    public string Placement { get; init; } = "";

    /// <summary>Fault injection's books.</summary>
    public required FaultAccounting Faults { get; init; }

    /// <summary>Every invariant checked, with its verdict.</summary>
    public IReadOnlyList<TortureCheck> Checks { get; init; } = [];

    /// <summary>Every check held.</summary>
    public bool Passed => Checks.All(c => c.Passed);
}
