namespace DeferRuntime.Torture;

/// <summary>
/// The tasklet torture's statistics: tasklet_schedule() calls from many threads and CPUs against the
/// runs they caused, which the kernel's SCHED bit coalesces (a schedule while SCHED is set adds no run),
/// and the checks of the tasklet contract.
/// </summary>
public sealed class TaskletTortureResult
{
    /// <summary>Tasklets hammered.</summary>
    public int Tasklets { get; init; }

    /// <summary>Scheduler threads (half bound to CPUs, half of no CPU).</summary>
    public int Schedulers { get; init; }

    /// <summary>How long the schedulers ran, in seconds.</summary>
    public double DurationSeconds { get; init; }

    /// <summary>tasklet_schedule() / tasklet_hi_schedule() calls that returned, from scheduler threads and from tasklets.</summary>
    public long Schedules { get; init; }

    /// <summary>Of <see cref="Schedules"/>, those made by tasklet callbacks (softirq context).</summary>
    public long ChainedSchedules { get; init; }

    /// <summary>Callback runs counted by the test.</summary>
    public long Runs { get; init; }

    /// <summary>Runs the runtime counted (Tasklet.RunCount summed): must equal <see cref="Runs"/>.</summary>
    public long RuntimeRuns { get; init; }

    /// <summary>Schedules that found SCHED set and merged with a pending run: Schedules - Runs.</summary>
    public long Coalesced { get; init; }

    /// <summary>Runs that started while the same tasklet was running (must be 0).</summary>
    public long ConcurrentRuns { get; init; }

    /// <summary>Runs that started between tasklet_disable() returning and tasklet_enable() (must be 0).</summary>
    public long RunsWhileDisabled { get; init; }

    /// <summary>Schedules after which no run of the tasklet started (must be 0).</summary>
    public long LostSchedules { get; init; }

    /// <summary>tasklet_disable() / tasklet_enable() pairs made meanwhile.</summary>
    public long Disables { get; init; }

    /// <summary>The most runs of any one tasklet.</summary>
    public long MaxRuns { get; init; }

    /// <summary>The fewest runs of any one tasklet.</summary>
    public long MinRuns { get; init; }

    /// <summary>Stutter pauses of all load threads.</summary>
    public long Stutters { get; init; }

    /// <summary>Moves of a scheduler thread to another CPU.</summary>
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
