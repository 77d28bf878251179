namespace DeferRuntime.Torture;

/// <summary>The CMWQ (kernel/workqueue.c) torture's statistics: one entry per workqueue stormed, and the checks.</summary>
public sealed class WorkqueueTortureResult
{
    /// <summary>Storm threads (half bound to CPUs, half of no CPU).</summary>
    public int Stormers { get; init; }

    /// <summary>How long the storm ran, in seconds.</summary>
    public double DurationSeconds { get; init; }

    /// <summary>Per workqueue.</summary>
    public IReadOnlyList<WorkqueueStats> Workqueues { get; init; } = [];

    /// <summary>Stutter pauses of all load threads.</summary>
    public long Stutters { get; init; }

    /// <summary>Moves of a storm thread to another CPU.</summary>
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
/// One workqueue_struct's books after a queue/cancel/flush/requeue storm: what was accepted, run and
/// cancelled (conservation: queued = run + cancelled), and what the concurrency checks saw.
/// </summary>
public sealed class WorkqueueStats
{
    /// <summary>The workqueue's name.</summary>
    public required string Name { get; init; }

    /// <summary>"bound", "unbound", "ordered" or "bh".</summary>
    public required string Kind { get; init; }

    /// <summary>max_active per pool_workqueue (per CPU for bound workqueues); 0 where it does not apply (bh).</summary>
    public int MaxActive { get; init; }

    /// <summary>Work items stormed on it.</summary>
    public int Items { get; init; }

    /// <summary>Of <see cref="Items"/>, delayed_work items (queued through their timer).</summary>
    public int DelayedItems { get; init; }

    /// <summary>queue_work() / queue_work_on() (and queue_delayed_work(), or mod_delayed_work() of an idle item) calls that queued an instance.</summary>
    public long Queued { get; init; }

    /// <summary>Queue calls that returned false because the item was already pending.</summary>
    public long AlreadyPending { get; init; }

    /// <summary>mod_delayed_work() calls that took a pending instance back and re-armed it (no new instance).</summary>
    public long ModifiedPending { get; init; }

    /// <summary>Of <see cref="Queued"/>, requeues made by the item's own function.</summary>
    public long SelfRequeues { get; init; }

    /// <summary>Function runs.</summary>
    public long Run { get; init; }

    /// <summary>cancel_work(_sync) / cancel_delayed_work(_sync) calls that returned true (a pending instance taken back).</summary>
    public long Cancelled { get; init; }

    /// <summary>Runs that started while the same item was running on this workqueue (must be 0).</summary>
    public long Reentrant { get; init; }

    /// <summary>The most runs seen at once per pool_workqueue.</summary>
    public int MaxConcurrent { get; init; }

    /// <summary>Runs that started with max_active already running on their pool_workqueue (must be 0).</summary>
    public long MaxActiveExceeded { get; init; }

    /// <summary>Runs of an ordered workqueue that started out of queueing order (must be 0).</summary>
    public long OrderViolations { get; init; }

    /// <summary>flush_work() and flush_workqueue() calls checked.</summary>
    public long Flushes { get; init; }

    /// <summary>Flushes that returned before an instance queued before them had finished (must be 0).</summary>
    public long FlushViolations { get; init; }
}
