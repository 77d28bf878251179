namespace DeferRuntime.Workqueues;

/// <summary>
/// The WQ_* flags of alloc_workqueue(), with the kernel's bit values (include/linux/workqueue.h).
/// </summary>
[Flags]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "The kernel's name (WQ_* flags of alloc_workqueue()), like IrqFlags.")]
public enum WorkqueueFlags
{
    /// <summary>No flag: a per-CPU (bound) workqueue on the normal-priority pools.</summary>
    None = 0,

    /// <summary>WQ_BH: work runs in softirq context (TASKLET, or HI with <see cref="HighPri"/>) on the queueing CPU; the successor of tasklets. Only <see cref="HighPri"/> may be combined with it, and no max_active.</summary>
    Bh = 1 << 0,

    /// <summary>WQ_UNBOUND: served by unbound pools (workers <c>kworker/uP:M</c>) keyed by attributes, not concurrency managed.</summary>
    Unbound = 1 << 1,

    /// <summary>WQ_FREEZABLE: new work waits on the inactive list while the workqueues are frozen (<see cref="Runtime.FreezeWorkqueues"/>).</summary>
    Freezable = 1 << 2,

    /// <summary>WQ_MEM_RECLAIM: a rescuer thread guarantees forward progress when the pool cannot create a worker in time.</summary>
    MemReclaim = 1 << 3,

    /// <summary>WQ_HIGHPRI: the high-priority pools (workers <c>kworker/N:MH</c>, nice -20 when the OS allows).</summary>
    HighPri = 1 << 4,

    /// <summary>WQ_CPU_INTENSIVE: items do not count against concurrency management while they run (meaningless for unbound workqueues, as in the kernel).</summary>
    CpuIntensive = 1 << 5,
}

/// <summary>work_busy(): what a work item is doing right now (a racy snapshot, for diagnostics).</summary>
[Flags]
public enum WorkBusy
{
    /// <summary>Neither queued nor running.</summary>
    None = 0,

    /// <summary>WORK_BUSY_PENDING: queued (or its delayed timer armed), not yet started.</summary>
    Pending = 1 << 0,

    /// <summary>WORK_BUSY_RUNNING: its function is executing on a worker.</summary>
    Running = 1 << 1,
}
