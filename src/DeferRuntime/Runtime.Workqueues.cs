using DeferRuntime.Workqueues;

namespace DeferRuntime;

// Workqueues: the system workqueues, alloc_workqueue() and the freezer (see Workqueues/Workqueue.cs).
public sealed partial class Runtime
{
    internal WorkqueueSubsystem Wq { get; }

    /// <summary>system_wq ("events"): bound, normal priority; for short items that do not block for long.</summary>
    public Workqueue SystemWq => Wq.SystemWq;

    /// <summary>system_highpri_wq ("events_highpri"): bound, the high-priority pools.</summary>
    public Workqueue SystemHighpriWq => Wq.SystemHighpriWq;

    /// <summary>system_long_wq ("events_long"): bound, for items that may run long.</summary>
    public Workqueue SystemLongWq => Wq.SystemLongWq;

    /// <summary>system_unbound_wq ("events_unbound"): unbound, max_active WQ_MAX_ACTIVE.</summary>
    public Workqueue SystemUnboundWq => Wq.SystemUnboundWq;

    /// <summary>system_freezable_wq ("events_freezable"): bound and freezable.</summary>
    public Workqueue SystemFreezableWq => Wq.SystemFreezableWq;

    /// <summary>system_bh_wq ("events_bh"): items run in TASKLET softirq context on the queueing CPU.</summary>
    public Workqueue SystemBhWq => Wq.SystemBhWq;

    /// <summary>system_bh_highpri_wq ("events_bh_highpri"): items run in HI softirq context on the queueing CPU.</summary>
    public Workqueue SystemBhHighpriWq => Wq.SystemBhHighpriWq;

    /// <summary>
    /// alloc_workqueue(): a workqueue named <paramref name="name"/>. <paramref name="maxActive"/> 0 is the
    /// default (1024), else 1 to 2048 per pool_workqueue; <paramref name="attrs"/> (nice, CPU mask) apply to
    /// <see cref="WorkqueueFlags.Unbound"/> ones. Bad combinations (Bh with anything but HighPri, or with a
    /// max_active) throw, naming the rule. Destroy it with <see cref="Workqueue.Destroy"/>.
    /// </summary>
    public Workqueue AllocWorkqueue(string name, WorkqueueFlags flags = WorkqueueFlags.None, int maxActive = 0, WorkqueueAttrs? attrs = null)
    {
        ThrowIfNotAccepting("alloc_workqueue()");
        return Wq.Alloc(name, flags, maxActive, attrs, ordered: false, system: false);
    }

    /// <summary>
    /// alloc_ordered_workqueue(): an unbound workqueue that runs one item at a time, in queueing order
    /// (max_active 1, one pool_workqueue). <paramref name="flags"/> may add HighPri, Freezable, MemReclaim.
    /// </summary>
    public Workqueue AllocOrderedWorkqueue(string name, WorkqueueFlags flags = WorkqueueFlags.None)
    {
        ThrowIfNotAccepting("alloc_ordered_workqueue()");
        return Wq.Alloc(name, flags | WorkqueueFlags.Unbound, 0, null, ordered: true, system: false);
    }

    /// <summary>schedule_work(): <see cref="Workqueue.Queue"/> on <see cref="SystemWq"/>.</summary>
    public bool ScheduleWork(WorkStruct work) => Wq.SystemWq.Queue(work);

    /// <summary>
    /// freeze_workqueues_begin() and the wait for freeze_workqueues_busy(): from now on new items of
    /// <see cref="WorkqueueFlags.Freezable"/> workqueues wait on their inactive lists; returns once the
    /// items that were already active have finished. May sleep.
    /// </summary>
    public void FreezeWorkqueues() => Wq.Freeze();

    /// <summary>thaw_workqueues(): frozen items start, oldest first.</summary>
    public void ThawWorkqueues() => Wq.Thaw();

    /// <summary>
    /// Delayed work items whose timer was still armed, not yet due, when <see cref="Dispose"/> stopped the
    /// CPUs: they were not run early and never will be (their timers are among <see cref="AbandonedTimerCount"/>).
    /// -1 before shutdown.
    /// </summary>
    public long AbandonedDelayedWorkCount => Wq.AbandonedDelayedWork;
}
