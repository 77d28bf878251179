namespace DeferRuntime.Torture;

/// <summary>
/// The per-CPU data torture's statistics: for each per-CPU counter, the plain increments made by every
/// context that shares it, the counter's value against the increments tallied atomically beside it (per
/// CPU, exactly), and the sections that overlapped; plus what drove the contexts (IPIs, tasklets,
/// softirqs, BH work) and the checks.
/// </summary>
public sealed class PerCpuTortureResult
{
    /// <summary>Virtual CPUs.</summary>
    public int Cpus { get; init; }

    /// <summary>Application threads bound to each CPU (rotated across the CPUs together at each shuffle).</summary>
    public int ThreadsPerCpu { get; init; }

    /// <summary>Self-requeueing work items per CPU (one on a bound workqueue, one on a bound WQ_HIGHPRI one: two kworkers of the CPU).</summary>
    public int WorkItemsPerCpu { get; init; }

    /// <summary>The rule was broken on purpose (<see cref="TortureOptions.Busted"/>): tasks also update the hard-IRQ datum under preempt_disable only, so the run must fail.</summary>
    public bool Busted { get; init; }

    /// <summary>How long the load ran, in seconds.</summary>
    public double DurationSeconds { get; init; }

    /// <summary>One entry per per-CPU counter: "task", "bh", "irq".</summary>
    public IReadOnlyList<PerCpuDatumStats> Data { get; init; } = [];

    /// <summary>smp_call_function_single_async() calls that queued an IPI (returned true).</summary>
    public long IpisSent { get; init; }

    /// <summary>Calls not made because the sender's call_single_data for that CPU was still in flight (-EBUSY avoided).</summary>
    public long IpisBusy { get; init; }

    /// <summary>IPI function runs (hard-IRQ context): must equal <see cref="IpisSent"/>.</summary>
    public long IpiRuns { get; init; }

    /// <summary>tasklet_schedule() / tasklet_hi_schedule() calls, from tasks and hard IRQs.</summary>
    public long TaskletSchedules { get; init; }

    /// <summary>Tasklet runs.</summary>
    public long TaskletRuns { get; init; }

    /// <summary>raise_softirq() / raise_softirq_irqoff() calls of the suite's BLOCK softirq.</summary>
    public long SoftirqRaises { get; init; }

    /// <summary>BLOCK softirq handler runs.</summary>
    public long SoftirqRuns { get; init; }

    /// <summary>queue_work_on() calls that queued a BH work item (WQ_BH: softirq context).</summary>
    public long BhWorkQueued { get; init; }

    /// <summary>BH work function runs.</summary>
    public long BhWorkRuns { get; init; }

    /// <summary>Runs of the self-requeueing work items (each a batch of task operations on a kworker).</summary>
    public long WorkItemRuns { get; init; }

    /// <summary>Stutter pauses of all load threads.</summary>
    public long Stutters { get; init; }

    /// <summary>Moves of a bound thread to another CPU.</summary>
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

/// <summary>
/// One per-CPU counter (DEFINE_PER_CPU(long, ...)) after the run: who shares it, its value on each CPU
/// against the increments tallied there, and how each context incremented it.
/// </summary>
public sealed class PerCpuDatumStats
{
    /// <summary>"task", "bh" or "irq".</summary>
    public required string Name { get; init; }

    /// <summary>The contexts that update it: "tasks", "tasks, softirqs", "tasks, softirqs, hard IRQs".</summary>
    public required string SharedBy { get; init; }

    /// <summary>The counter's value on each CPU, by CPU number.</summary>
    public IReadOnlyList<long> CounterPerCpu { get; init; } = [];

    /// <summary>Increments tallied atomically on each CPU, by CPU number: equal to <see cref="CounterPerCpu"/> unless an update was lost.</summary>
    public IReadOnlyList<long> TalliedPerCpu { get; init; } = [];

    /// <summary>Sections on this datum of one CPU that found another one of the same CPU inside (must be 0).</summary>
    public long Overlaps { get; init; }

    /// <summary>Increments by context and protection, summed over the CPUs.</summary>
    public IReadOnlyList<PerCpuSiteStats> Sites { get; init; } = [];

    /// <summary>The counter summed over the CPUs.</summary>
    public long Counter => CounterPerCpu.Sum();

    /// <summary>The tallied increments summed over the CPUs.</summary>
    public long Tallied => TalliedPerCpu.Sum();

    /// <summary>Tallied minus counted, summed over the CPUs: the increments lost to sections that overlapped (0 when the rules held).</summary>
    public long Lost => Tallied - Counter;
}

/// <summary>One way a datum is updated: the context and the protection it takes, and how many increments it made.</summary>
/// <param name="Context">"task", "softirq" or "hardirq".</param>
/// <param name="Protection">What the updater holds ("get_cpu_var", "spin_lock_bh", "none", ...), with the kind of updater where it matters ("tasklet", "bh work").</param>
/// <param name="Increments">Increments made this way, summed over the CPUs.</param>
public sealed record PerCpuSiteStats(string Context, string Protection, long Increments);
