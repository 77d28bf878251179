using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;
using DeferRuntime.Locking;
using DeferRuntime.Timers;

// Concurrency-managed workqueues (kernel/workqueue.c, Documentation/core-api/workqueue.rst).
//
// What runs where
//   A work item (WorkStruct) is queued on a workqueue, which sends it to one of the pools it is linked to
//   by a pool_workqueue (pwq). Bound workqueues have a pwq per CPU, to that CPU's normal or high-priority
//   pool, shared by every bound workqueue: queue_work() from a thread of CPU N goes to CPU N's pool (from a
//   thread of no CPU, to the CPU the placement policy picks). Unbound workqueues have one pwq, to the
//   unbound pool of their attributes (nice, CPU mask). Ordered workqueues are unbound with max_active 1.
//   Bh workqueues have per-CPU bh pools that run inside the TASKLET (HI for high priority) softirq of the
//   queueing CPU, before its tasklets, with the kernel's budget of 10 restarts or 2 ms.
//
//   Pool workers are threads: kworker/N:M (and N:MH) bound to CPU N, with its ThreadContext and pinned to
//   its core; kworker/uP:M for unbound pool P, pinned to its mask's cores. A pool's first worker is made
//   lazily by the "wq-ticker" thread, which also plays the scheduler tick (cpu-intensive detection), the
//   mayday and idle timers, and the stall watchdog; it parks when no pool is busy.
//
// Concurrency management
//   A bound pool counts its running workers (nr_running). A worker starts working only with an idle
//   worker in reserve (it creates one first if there is none); it keeps taking items while the worklist
//   is non-empty and it is the only one running. Every worker is its thread's ISleepNotifier: when its
//   item blocks in a runtime primitive the count drops, and with work waiting an idle worker is kicked.
//   An item running 10 ms without sleeping stops counting (CPU_INTENSIVE) and the pool is kicked.
//   Unbound pools are not concurrency managed: every waiting item may get a worker, up to max_active.
//   Workqueues with MemReclaim have a rescuer thread: when a pool's manager has failed to create a worker
//   for 10 ms, the ticker sends mayday (then every 100 ms) and the rescuer runs that workqueue's items.
//
// Ordering and exactness
//   Queueing sets PENDING with a CAS that also bumps the item's sequence number; a pending item is not
//   queued again. An item running on pool P for a workqueue and queued again on it goes to P, and within
//   a pool to the worker running it, so it never runs concurrently with itself on one workqueue.
//   flush_work() waits for the sequence number it read; flush_workqueue() flips the flush color and waits
//   for every older color to drain (in-flight counts per pwq and color, inactive items included), so both
//   wait for exactly what was queued before the call. Cancel steals PENDING (unlinking the item under its
//   pool's lock, or stopping its timer), or sets it itself so nobody can queue meanwhile.
//
// The queue path (allocation-free)
//   Under the pool lock, as the kernel's __queue_work(), unless a worker of a bound pool is running (or
//   was just kicked): then the item is pushed with one CAS onto the pool's incoming list, and whoever next
//   looks at the worklist under the lock (the worker when its worklist runs dry, a flush flipping colors,
//   a cancel, a drain check, the rescuer, the ticker) splices it with the same accounting, in queue order.
//   This keeps a queuer on another core off the lock line the worker takes for every item. The queuer
//   reads the "running" hint again after its push; the pool clears it, with a full barrier, before it
//   stops looking; so one of them always sees the other.
//   Completions wake flushers only when someone waits: waiters register, then run a process-wide barrier
//   (membarrier), so a completion pays one plain read and no fence.
//
// Delayed work
//   DelayedWork arms a TimerList (TIMER_SOFTIRQ) on the queueing CPU with PENDING held; the timer callback
//   queues it there (delayed_work_timer_fn). Flush and drain do not wait for armed timers, as in the kernel.
//
// Shutdown
//   Runtime.Dispose thaws frozen workqueues, then its quiescence loop waits until no pwq has anything in
//   flight, no worker runs anything and nothing else in the runtime is pending (work items may queue
//   work and tasklets, and handlers may queue work, meanwhile: all of it runs; timers due by the end of
//   the current jiffy fire and queue theirs). Then the ticker, workers and rescuers are stopped and
//   joined (bounded: an item stuck forever is left behind, not waited for). Delayed items whose timers
//   are not due are not run early: Runtime.AbandonedDelayedWorkCount counts them. Threads of no CPU
//   cannot queue once shutdown began.

namespace DeferRuntime.Workqueues;

/// <summary>
/// struct workqueue_struct: a named queue of <see cref="WorkStruct"/>s served by worker pools. Create
/// one with <see cref="Runtime.AllocWorkqueue"/> or <see cref="Runtime.AllocOrderedWorkqueue"/>, or use
/// the runtime's system workqueues; <see cref="Dispose"/> is destroy_workqueue().
/// </summary>
/// <remarks>
/// Field legend: <c>I:</c> set at creation; <c>A:</c> Interlocked/volatile; <c>F:</c> under
/// <c>_flushLock</c> (the kernel's wq-&gt;mutex for flushing); <c>M:</c> under the mayday lock.
/// </remarks>
public sealed partial class Workqueue : IDisposable
{
    /// <summary>WQ_DFL_ACTIVE: max_active when 0 is passed.</summary>
    public const int DefaultMaxActive = 1024;

    /// <summary>WQ_MAX_ACTIVE: the largest max_active.</summary>
    public const int MaxMaxActive = 2048;

    private readonly WorkqueueSubsystem _sub; // I
    private readonly Runtime _runtime; // I
    private readonly bool _unbound; // I: one pwq, whatever the CPU
    private readonly bool _system; // I: a system workqueue, not destroyable
    private int _drainers; // A: drain_workqueue() calls in progress (__WQ_DRAINING while non-zero)
    private int _destroyed; // A: 1 once destroy_workqueue() has drained it
    private int _destroying; // A: 1 once destroy_workqueue() was called

    private readonly Lock _flushLock = new();
    private long _workColorSeq; // F: the color new work gets, as an ever-growing number (color = seq mod 16)
    private long _flushedSeq; // F, read lock-free: every color below this has drained

    internal PoolWorkqueue? MaydayHead, MaydayTail; // M: pwqs that asked this workqueue's rescuer for help

    internal Workqueue(WorkqueueSubsystem sub, string name, WorkqueueFlags flags, int maxActive, bool ordered, bool system, WorkqueueAttrs? attrs, bool frozen)
    {
        _sub = sub;
        _runtime = sub.Runtime;
        Name = name;
        Flags = flags;
        MaxActive = maxActive;
        IsOrdered = ordered;
        _system = system;
        _unbound = (flags & WorkqueueFlags.Unbound) != 0;
        bool highPri = (flags & WorkqueueFlags.HighPri) != 0;
        bool freezable = frozen && (flags & WorkqueueFlags.Freezable) != 0;
        if (_unbound)
        {
            var pool = sub.GetUnboundPool(attrs ?? new WorkqueueAttrs(highPri ? WorkqueueAttrs.HighPriNice : 0));
            Pwqs = [new PoolWorkqueue(this, pool, maxActive, 0, freezable)];
        }
        else
        {
            bool bh = (flags & WorkqueueFlags.Bh) != 0;
            Pwqs = new PoolWorkqueue[_runtime.Cpus.Count];
            for (int cpu = 0; cpu < Pwqs.Length; cpu++)
            {
                Pwqs[cpu] = new PoolWorkqueue(this, sub.CpuPool(cpu, highPri, bh), maxActive, 0, freezable);
            }
        }
        if ((flags & WorkqueueFlags.MemReclaim) != 0)
        {
            Rescuer = new Rescuer(this);
        }
    }

    /// <summary>The runtime whose pools serve this workqueue.</summary>
    public Runtime Runtime => _runtime;

    /// <summary>The name given to alloc_workqueue() (also the rescuer thread's name).</summary>
    public string Name { get; }

    /// <summary>The WQ_* flags.</summary>
    public WorkqueueFlags Flags { get; }

    /// <summary>max_active per pool_workqueue (per CPU for bound workqueues); 1 for ordered ones.</summary>
    public int MaxActive { get; internal set; }

    /// <summary>alloc_ordered_workqueue(): one item at a time, in queueing order.</summary>
    public bool IsOrdered { get; }

    /// <summary>True once destroy_workqueue() has finished draining it.</summary>
    public bool IsDestroyed => Volatile.Read(ref _destroyed) != 0;

    internal PoolWorkqueue[] Pwqs { get; } // I: per CPU (bound, bh) or one (unbound)

    internal Rescuer? Rescuer { get; } // I: MemReclaim only

    private TaskScheduler? _taskScheduler; // A: made on first use

    /// <summary>
    /// A <see cref="System.Threading.Tasks.TaskScheduler"/> that runs tasks as work items of this workqueue
    /// (DESIGN §5: async code reaches a workqueue through it). Each task allocates its own item; the
    /// allocation-free API is <see cref="Queue"/> with pre-allocated <see cref="WorkStruct"/>s.
    /// </summary>
    public TaskScheduler TaskScheduler
    {
        get
        {
            if (IsBh)
            {
                throw new InvalidOperationException($"Workqueue.TaskScheduler on bh workqueue '{Name}': tasks may block and await, softirq context may not.");
            }
            return Volatile.Read(ref _taskScheduler) ?? Interlocked.CompareExchange(ref _taskScheduler, new WorkqueueTaskScheduler(this), null) ?? _taskScheduler!;
        }
    }

    internal bool IsCpuIntensive => (Flags & WorkqueueFlags.CpuIntensive) != 0 && !_unbound;

    internal bool IsFreezable => (Flags & WorkqueueFlags.Freezable) != 0;

    internal bool IsBh => (Flags & WorkqueueFlags.Bh) != 0;

    // ---- queueing ----

    /// <summary>
    /// queue_work(): queues <paramref name="work"/> on the calling thread's CPU (bound workqueues; from a
    /// thread of no CPU, on the CPU the placement policy picks). Returns false, doing nothing, if it was
    /// already pending. Callable from any context, hard IRQ included; allocation-free.
    /// </summary>
    public bool Queue(WorkStruct work) => QueueCommon(-1, work, "queue_work()");

    /// <summary>queue_work_on(): as <see cref="Queue"/>, on CPU <paramref name="cpu"/>'s pool (a hint for unbound workqueues, as in the kernel).</summary>
    public bool QueueOn(int cpu, WorkStruct work)
    {
        _sub.CheckCpu(cpu, "queue_work_on()");
        return QueueCommon(cpu, work, "queue_work_on()");
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool QueueCommon(int cpu, WorkStruct work, string caller)
    {
        ArgumentNullException.ThrowIfNull(work);
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, _runtime))
        {
            _runtime.ThrowIfStoppedForTask(ctx, caller);
            if (!work.TrySetPendingForQueue())
            {
                return false;
            }
            QueueOwned(cpu < 0 ? ctx.Cpu : _runtime.Cpus[cpu], work, caller, fromTimer: false);
            return true;
        }
        return QueueForeign(cpu, work, caller);
    }

    /// <summary>From a thread of no CPU: rundown-protected against shutdown, like every foreign request.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool QueueForeign(int cpu, WorkStruct work, string caller)
    {
        var target = cpu < 0 ? _runtime.EnterForeign(caller) : _runtime.EnterForeignOnCpu(cpu, caller);
        try
        {
            if (!work.TrySetPendingForQueue())
            {
                return false;
            }
            QueueOwned(target, work, caller, fromTimer: false);
            return true;
        }
        finally
        {
            target.ExitForeign();
        }
    }

    /// <summary>
    /// __queue_work(): the caller owns PENDING. Picks the pwq (the pool the item runs on if it runs now
    /// for this workqueue, for non-reentrancy), then under that pool's lock checks that the workqueue
    /// accepts work, tags the flush color and links the item, and kicks the pool.
    /// </summary>
    internal void QueueOwned(VirtualCpu cpu, WorkStruct work, string caller, bool fromTimer)
    {
        System.Diagnostics.Debug.Assert((Volatile.Read(ref work.State) & WorkStruct.TimerHeld) == 0, "linking an instance still marked as its timer's: a flush_work() would not wait for it");
        if (!ReferenceEquals(work.Owner, _sub))
        {
            Volatile.Write(ref work.Owner, _sub);
        }
        // PERF: the workqueue_queue_work tracepoint and the queue-latency stamp: a load and a predictable
        // branch each while nobody listens.
        if (DeferRuntimeEventSource.WorkqueueOn || _runtime.WorkLatencyOn)
        {
            NoteQueue(cpu, work);
        }
        var pwq = _unbound ? Pwqs[0] : Pwqs[cpu.Id];
        var pool = pwq.Pool;
        // PERF: a worker marks the item running (CurrentWorker or the untracked list) before it clears
        // PENDING, and we set PENDING after that, so no mark here means no instance runs now, and none can
        // start while we hold PENDING. If one runs, only a run for this workqueue decides where this
        // instance goes (a run for another workqueue may be anywhere and is no reason to move).
        var runningPool = work.IsRunning ? work.PoolRunningFor(this) : null;
        bool runningElsewhere = runningPool is not null && !ReferenceEquals(runningPool, pool);
        if (!runningElsewhere && pool.AcceptsIncoming && Volatile.Read(ref pool.Queue.Running) != 0 && (Volatile.Read(ref _drainers) | Volatile.Read(ref _destroying)) == 0)
        {
            QueueIncoming(cpu, pwq, work, caller, fromTimer);
            return;
        }
        if (runningElsewhere && runningPool is { } last)
        {
            last.Lock();
            if (last.FindWorkerExecuting(work) is { CurrentPwq: { } runningPwq } && ReferenceEquals(runningPwq.Wq, this))
            {
                pwq = runningPwq;
                pool = last;
            }
            else
            {
                last.Unlock();
                pool.Lock();
            }
        }
        else
        {
            pool.Lock();
        }

        // Checked under the pool lock: a drain flips the flush color under every pool lock after it
        // sets __WQ_DRAINING, so an item linked before that is counted, and one linked after it is seen here.
        if (((Volatile.Read(ref _drainers) | Volatile.Read(ref _destroyed)) != 0 && !MayQueueWhileDraining()) || _sub.IsStopping)
        {
            pool.Unlock();
            Refuse(cpu, work, caller, fromTimer);
            return;
        }
        pool.SpliceIncoming(); // items pushed without the lock were queued first: keep FIFO
        bool active = pwq.Insert(work);
        Worker? toWake = null;
        bool raise = false;
        if (active)
        {
            toWake = pool.KickPool();
            raise = pool.IsBh && pool.NeedMoreWorker;
        }
        pool.Unlock();
        WorkerPool.WakeKicked(toWake);
        if (raise)
        {
            WorkqueueSubsystem.RaiseBh(pool);
        }
    }

    /// <summary>
    /// trace_workqueue_queue_work(), and the stamp the worker turns into a queue-to-start latency sample.
    /// The caller owns PENDING, so nobody else writes the stamp until the worker has read it.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void NoteQueue(VirtualCpu cpu, WorkStruct work)
    {
        if (DeferRuntimeEventSource.WorkqueueOn)
        {
            DeferRuntimeEventSource.Log.workqueue_queue_work(RuntimeHelpers.GetHashCode(work), work.Name, Name, CpuContext.CurrentCpuId, _unbound ? -1 : cpu.Id);
        }
        work.QueuedAt = _runtime.WorkLatencyOn ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
    }

    /// <summary>
    /// The lock-free half of __queue_work(), taken when a worker of the pool is running (and so will come
    /// back to the worklist): push onto the pool's incoming list, which the lock holder splices with the
    /// usual accounting. PERF: the queuer touches the item and the pool's queue line, never the lock line
    /// the worker takes for every item, so a stream of queues from another core does not move it.
    /// </summary>
    /// <remarks>
    /// After the push (a full barrier) two things are read again. The running hint: if the pool's
    /// workers stopped running meanwhile, take the lock and kick (the pool clears the hint, barrier, then
    /// looks at the list). The drain/destroy state: a drain or destroy that began meanwhile refuses the
    /// item, as under the lock, by stealing it back; if a worker already took it, it was accepted (and
    /// the drain waits for it). Destroy re-checks for items after it sets its flag, so none is stranded.
    /// </remarks>
    private void QueueIncoming(VirtualCpu cpu, PoolWorkqueue pwq, WorkStruct work, string caller, bool fromTimer)
    {
        var pool = pwq.Pool;
        long seq = work.Seq; // ours: we hold PENDING, so nobody else can change it before our instance starts
        if (!ReferenceEquals(work.Pwq, pwq))
        {
            work.Pwq = pwq; // PERF: skip the GC write barrier when an item goes where it went last time
        }
        work.ListKind = WorkListKind.Incoming;
        Volatile.Write(ref work.QueuedPool, pool);
        pool.PushIncoming(work);
        // Taking back only our own instance: if it already ran (accepted) and the item was queued again
        // meanwhile (chained work during a drain), that later instance is someone else's.
        if ((((Volatile.Read(ref _drainers) | Volatile.Read(ref _destroying)) != 0 && !MayQueueWhileDraining()) || _sub.IsStopping) &&
            pool.TryStealQueued(work, seq))
        {
            Refuse(cpu, work, caller, fromTimer);
            return;
        }
        if (Volatile.Read(ref pool.Queue.Running) == 0)
        {
            pool.Lock();
            var toWake = pool.KickPool();
            pool.Unlock();
            WorkerPool.WakeKicked(toWake);
        }
    }

    /// <summary>
    /// __queue_work() for a caller that already owns PENDING and may be any thread (flush_delayed_work):
    /// a thread of no CPU goes through the rundown protection like any foreign request.
    /// </summary>
    internal void QueueOwnedFromAnyThread(int cpu, WorkStruct work, string caller)
    {
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, _runtime))
        {
            QueueOwned(cpu < 0 ? ctx.Cpu : _runtime.Cpus[cpu], work, caller, fromTimer: false);
            return;
        }
        VirtualCpu target;
        try
        {
            target = cpu < 0 ? _runtime.EnterForeign(caller) : _runtime.EnterForeignOnCpu(cpu, caller);
        }
        catch
        {
            work.ReleaseAsSkipped();
            throw;
        }
        try
        {
            QueueOwned(target, work, caller, fromTimer: false);
        }
        finally
        {
            target.ExitForeign();
        }
    }

    // ---- delayed work ----

    /// <summary>
    /// queue_delayed_work(): queues <paramref name="work"/> after <paramref name="delay"/> jiffies (0: at
    /// once), on the CPU whose timer fires. Returns false, doing nothing, if it was already pending (armed
    /// or queued). Callable from any context; allocation-free after the item's first delayed queue.
    /// </summary>
    public bool QueueDelayed(DelayedWork work, long delay) => QueueDelayedCommon(-1, work, delay, "queue_delayed_work()");

    /// <summary>queue_delayed_work() with the delay as a <see cref="TimeSpan"/>, rounded up to whole jiffies.</summary>
    public bool QueueDelayed(DelayedWork work, TimeSpan delay) => QueueDelayedCommon(-1, work, ToJiffies(delay), "queue_delayed_work()");

    /// <summary>queue_delayed_work_on(): as <see cref="QueueDelayed(DelayedWork, long)"/>, with the timer and the item on CPU <paramref name="cpu"/>.</summary>
    public bool QueueDelayedOn(int cpu, DelayedWork work, long delay)
    {
        _sub.CheckCpu(cpu, "queue_delayed_work_on()");
        return QueueDelayedCommon(cpu, work, delay, "queue_delayed_work_on()");
    }

    /// <summary>
    /// mod_delayed_work(): arms (or re-arms) <paramref name="work"/> to run after <paramref name="delay"/>
    /// jiffies whether or not it was pending: a pending instance is taken back first (its timer stopped or
    /// its queue entry removed). Returns true if it was pending. Callable from any context.
    /// </summary>
    /// <remarks>
    /// While a cancel_work_sync() or cancel_delayed_work_sync() of the item is in progress, it does
    /// nothing and returns false, as the kernel's mod_delayed_work_on() does since Linux 6.10: that cancel
    /// disables the item for the length of its wait (here as there: __cancel_work_sync() with
    /// WORK_CANCEL_DISABLE), so the grab finds it idle, clear_pending_if_disabled() drops the request, and
    /// the 0 from the grab is returned; the cancel's promise (neither pending nor running on return) holds. (Before
    /// 6.10 try_to_grab_pending() returned -ENOENT there, which mod_delayed_work_on() returned as true,
    /// also without queueing.)
    /// </remarks>
    public bool ModDelayed(DelayedWork work, long delay) => ModDelayedCommon(-1, work, delay, "mod_delayed_work()");

    /// <summary>mod_delayed_work() with the delay as a <see cref="TimeSpan"/>, rounded up to whole jiffies.</summary>
    public bool ModDelayed(DelayedWork work, TimeSpan delay) => ModDelayedCommon(-1, work, ToJiffies(delay), "mod_delayed_work()");

    /// <summary>mod_delayed_work_on(): as <see cref="ModDelayed(DelayedWork, long)"/>, on CPU <paramref name="cpu"/>.</summary>
    public bool ModDelayedOn(int cpu, DelayedWork work, long delay)
    {
        _sub.CheckCpu(cpu, "mod_delayed_work_on()");
        return ModDelayedCommon(cpu, work, delay, "mod_delayed_work_on()");
    }

    private long ToJiffies(TimeSpan delay)
    {
        if (delay < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(delay), delay, "a delay is zero or positive.");
        }
        return _runtime.UsecsToJiffies((long)Math.Ceiling(delay.TotalMicroseconds));
    }

    private bool QueueDelayedCommon(int cpu, DelayedWork work, long delay, string caller)
    {
        ArgumentNullException.ThrowIfNull(work);
        ArgumentOutOfRangeException.ThrowIfNegative(delay);
        return WithRundown(cpu, caller, (Wq: this, Work: work, Delay: delay, Cpu: cpu, Caller: caller), static (target, s) =>
        {
            // With a delay, TIMER is set by the same CAS as PENDING: see QueueDelayedOwned.
            if (!s.Work.TrySetPendingForQueue(timerHeld: s.Delay > 0))
            {
                return false;
            }
            s.Wq.QueueDelayedOwned(target, s.Cpu, s.Work, s.Delay, s.Caller);
            return true;
        });
    }

    private bool ModDelayedCommon(int cpu, DelayedWork work, long delay, string caller)
    {
        ArgumentNullException.ThrowIfNull(work);
        ArgumentOutOfRangeException.ThrowIfNegative(delay);
        return WithRundown(cpu, caller, (Wq: this, Work: work, Delay: delay, Cpu: cpu, Caller: caller), static (target, s) =>
        {
            int grabbed = s.Work.GrabPendingWaiting();
            if (grabbed == 0 && Volatile.Read(ref s.Work.DisableCount) != 0)
            {
                // clear_pending_if_disabled(): a disabled item is not queued; it was idle, so false, as the
                // kernel's. No SEQ was taken, so only PENDING goes.
                s.Work.ReleasePending();
                return false;
            }
            // A pending instance taken back from an item disabled now: a disable_work() has bumped the count
            // and not grabbed yet (one that grabbed took back every instance, and none is made after a
            // bump), so it will take back what is queued here. Queue it, as the kernel's order has it (it
            // grabs before it bumps): this call first, returning true, then that disable, also true.
            // Dropping it here instead left the disable finding the item idle: an instance taken back with
            // no replacement, reported by no disable.
            // A new instance: a flush_work() of the stolen one must not wait for it. With a delay it is the
            // timer's from this very add (TIMER), as for queue_delayed_work().
            s.Work.BumpSeqOwned(timerHeld: s.Delay > 0);
            s.Wq.QueueDelayedOwned(target, s.Cpu, s.Work, s.Delay, s.Caller);
            return grabbed == 1;
        });
    }

    /// <summary>Runs <paramref name="body"/> with the CPU a request goes to; from a thread of no CPU inside its rundown protection.</summary>
    private bool WithRundown<T>(int cpu, string caller, T state, Func<VirtualCpu, T, bool> body)
    {
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, _runtime))
        {
            _runtime.ThrowIfStoppedForTask(ctx, caller);
            return body(cpu < 0 ? ctx.Cpu : _runtime.Cpus[cpu], state);
        }
        var target = cpu < 0 ? _runtime.EnterForeign(caller) : _runtime.EnterForeignOnCpu(cpu, caller);
        try
        {
            return body(target, state);
        }
        finally
        {
            target.ExitForeign();
        }
    }

    /// <summary>
    /// __queue_delayed_work(): the caller owns PENDING. No delay: queue now. Otherwise record where to
    /// queue and arm the timer, on <paramref name="cpu"/> if given (add_timer_on), else on the calling
    /// thread's CPU (or the one <paramref name="target"/> names for a thread of no CPU).
    /// </summary>
    /// <remarks>
    /// With a delay the caller's CAS set TIMER along with PENDING, so from that instant a flush_work()
    /// treats the instance as the timer's (returns at once unless an older one runs), as the kernel's does
    /// for an item that is on no pwq, however long this arming takes. A refusal clears TIMER with PENDING.
    /// </remarks>
    private void QueueDelayedOwned(VirtualCpu target, int cpu, DelayedWork work, long delay, string caller)
    {
        if (delay == 0)
        {
            QueueOwned(target, work, caller, fromTimer: false);
            return;
        }
        // A drain does not refuse the arming, only a queue: the kernel's __queue_delayed_work() arms the
        // timer whatever the workqueue's state, and a timer that fires while the drain still runs is
        // refused then (reported, as the kernel's WARN). A workqueue being destroyed (its drain can end
        // only in the destroyed state, which refuses every queue, chained or not) or a stopped runtime
        // would never take the item, so that is refused now, where the caller can see it.
        if ((Volatile.Read(ref _destroying) | Volatile.Read(ref _destroyed)) != 0 || _sub.IsStopping)
        {
            Refuse(target, work, caller, fromTimer: false, arming: true);
            return;
        }
        TimerList timer;
        try
        {
            timer = work.TimerFor(_runtime);
        }
        catch
        {
            work.ReleaseAsSkipped();
            throw;
        }
        if (!ReferenceEquals(work.Owner, _sub))
        {
            Volatile.Write(ref work.Owner, _sub);
        }
        work.TargetWq = this;
        work.TargetCpu = cpu;
        _sub.ArmingWindowHook?.Invoke(work);
        _sub.DelayedArmed();
        try
        {
            timer.Expires = _runtime.Jiffies + delay;
            // From a thread of no CPU, add_timer_on() enters the rundown protection again, which a
            // shutdown begun since ours was entered refuses: the timer is then not armed, so the timer
            // cannot hold the instance; let go of it as any refused arming does.
            timer.AddTimerOn(cpu >= 0 ? cpu : target.Id);
        }
        catch when (!timer.TimerPending)
        {
            _sub.DelayedDisarmed();
            work.ReleaseAsSkipped();
            throw;
        }
    }

    /// <summary>is_chained_work(): while draining, only items of this workqueue may queue on it.</summary>
    private bool MayQueueWhileDraining() =>
        Volatile.Read(ref _destroyed) == 0 && Worker.Current is { CurrentPwq: { } running } && ReferenceEquals(running.Wq, this);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Refuse(VirtualCpu cpu, WorkStruct work, string caller, bool fromTimer, bool arming = false)
    {
        // The instance that was about to be queued counts as skipped, so a flush_work() waiting for it returns.
        work.ReleaseAsSkipped();
        string message;
        Exception error;
        if (_sub.IsStopping)
        {
            message = $"{caller}: the runtime has been shut down and its workers are stopping; work item '{work.Name}' on workqueue '{Name}' would never run.";
            if (fromTimer)
            {
                _sub.DelayedAbandonedAtStop(); // counted with the timers shutdown leaves armed
            }
            error = new ObjectDisposedException(nameof(Runtime), message);
        }
        else if (IsDestroyed || arming)
        {
            message = IsDestroyed
                ? $"{caller}: workqueue '{Name}' has been destroyed (destroy_workqueue()); work item '{work.Name}' cannot be queued on it."
                : $"{caller}: workqueue '{Name}' is being destroyed (destroy_workqueue()); the timer of work item '{work.Name}' would fire after it, into a workqueue that takes nothing.";
            error = new ObjectDisposedException(nameof(Workqueue), message);
        }
        else
        {
            string from = Worker.Current is { CurrentWork: { } w } ? $"work item '{w.Name}' of workqueue '{Worker.Current.CurrentPwq?.Wq.Name}'" : $"thread '{Thread.CurrentThread.Name}'";
            message = $"{caller}: workqueue '{Name}' is being drained (drain_workqueue() or destroy_workqueue()): only its own work items may queue on it meanwhile; work item '{work.Name}' was queued from {from}.";
            error = new InvalidOperationException(message);
        }
        if (fromTimer)
        {
            // A delayed item's timer fired into a draining or destroyed workqueue: the kernel WARNs, and a
            // timer callback must not throw, so report it and drop the item.
            _runtime.ReportWarning(cpu.Id, $"workqueue '{Name}'", message);
            return;
        }
        throw error;
    }

    // ---- flush, drain, destroy ----

    /// <summary>
    /// flush_workqueue(): waits until every item queued on this workqueue before the call has finished
    /// (items queued meanwhile, re-queues included, are not waited for). Concurrent flushes each get
    /// their own flush color. May sleep: refused in atomic context and from this workqueue's own items.
    /// </summary>
    public void Flush()
    {
        MightSleep.Check("flush_workqueue()");
        ThrowIfOwnItem("flush_workqueue()");
        ThrowIfDestroyed("flush_workqueue()");
        FlushCore();
    }

    private void FlushCore()
    {
        long mine;
        while (!TryTakeFlushColor(out mine))
        {
            _sub.WaitFor("flush_workqueue()", this, static wq => wq.ColorRingMayHaveRoom());
        }
        _sub.WaitFor("flush_workqueue()", (Wq: this, Mine: mine), static s => s.Wq.ColorsDrained(s.Mine));
        RetireDrainedColors();
    }

    /// <summary>
    /// flush_workqueue()'s color flip: the current color becomes the caller's to wait for (items queued
    /// before the flip, those pushed without the lock included, have it) and new items get the next one.
    /// False if the ring is full (WORK_NR_COLORS - 1 colors waiting to drain besides the current one);
    /// drained colors are retired first, since a flush whose wait was cancelled leaves its color behind.
    /// </summary>
    private bool TryTakeFlushColor(out long mine)
    {
        lock (_flushLock)
        {
            if (_workColorSeq - _flushedSeq >= PoolWorkqueue.WorkColors - 1)
            {
                RetireDrainedColorsLocked();
            }
            if (_workColorSeq - _flushedSeq < PoolWorkqueue.WorkColors - 1)
            {
                mine = _workColorSeq++;
                int next = (int)(_workColorSeq % PoolWorkqueue.WorkColors);
                foreach (var pwq in Pwqs)
                {
                    pwq.Pool.Lock();
                    pwq.Pool.SpliceIncoming(); // queued before the flip: the old color
                    pwq.WorkColor = next;
                    pwq.Pool.Unlock();
                }
                return true;
            }
        }
        mine = 0;
        return false;
    }

    /// <summary>After a flush's wait (done or given up): retires the oldest colors that have drained, and wakes waiters for the ring.</summary>
    private void RetireDrainedColors()
    {
        lock (_flushLock)
        {
            RetireDrainedColorsLocked();
        }
        _sub.NotifyWaiters();
    }

    private void RetireDrainedColorsLocked()
    {
        // Whoever sees the oldest colors drained retires them, so a slow flusher cannot hold up the ring.
        while (_flushedSeq < _workColorSeq && ColorDrained(_flushedSeq))
        {
            Volatile.Write(ref _flushedSeq, _flushedSeq + 1);
        }
    }

    /// <summary>The ring has room, or its oldest color has drained (a retire makes room). Lock-free: a wake-up hint, re-checked under the lock.</summary>
    private bool ColorRingMayHaveRoom()
    {
        long flushed = Volatile.Read(ref _flushedSeq);
        return Volatile.Read(ref _workColorSeq) - flushed < PoolWorkqueue.WorkColors - 1 || ColorDrained(flushed);
    }

    /// <summary>
    /// flush_workqueue(), awaited: completes once every item queued on this workqueue before the call
    /// has finished, exactly as <see cref="Flush"/> waits (the call takes its flush color at once, so
    /// items queued after it returns the task are not waited for), but holds no thread meanwhile: the
    /// task is completed from the runtime's completion path. The context rules are <see cref="Flush"/>'s
    /// and are checked at the call, which throws: refused in atomic context (the kernel's might_sleep())
    /// and from this workqueue's own items (the flush would wait for the item that calls it), and
    /// <see cref="ObjectDisposedException"/> once destroyed.
    /// </summary>
    /// <remarks>
    /// <para><paramref name="cancellationToken"/> cancels the wait only: the task becomes Canceled and
    /// the waiter is gone; the items are not touched, and the flush color taken at the call simply
    /// drains (a later flush retires it). With nothing queued before the call the task is already
    /// complete, whatever the token. If the runtime shuts down meanwhile, the task completes when the
    /// shutdown's drain has run the items, or faults with <see cref="ObjectDisposedException"/> if
    /// shutdown stopped the workers with an item still unfinished.</para>
    /// </remarks>
    public Task FlushAsync(CancellationToken cancellationToken = default)
    {
        MightSleep.Check("flush_workqueue()");
        ThrowIfOwnItem("flush_workqueue()");
        ThrowIfDestroyed("flush_workqueue()");
        return FlushCoreAsync("flush_workqueue()", cancellationToken);
    }

    private Task FlushCoreAsync(string caller, CancellationToken cancellation)
    {
        // The flip on the caller's thread, so "queued before the call" means before the call returned.
        if (!TryTakeFlushColor(out long mine))
        {
            return FlushWhenRingHasRoomAsync(caller, cancellation);
        }
        var wait = _sub.WaitForAsync(caller, (Wq: this, Mine: mine), static s => s.Wq.ColorsDrained(s.Mine), cancellation);
        if (wait.IsCompletedSuccessfully)
        {
            RetireDrainedColors();
            return wait;
        }
        return RetireAfterAsync(wait);
    }

    /// <summary>A full color ring (15 flushes outstanding): the rare case, where the wait for room comes first.</summary>
    private async Task FlushWhenRingHasRoomAsync(string caller, CancellationToken cancellation)
    {
        long mine;
        while (!TryTakeFlushColor(out mine))
        {
            await _sub.WaitForAsync(caller, this, static wq => wq.ColorRingMayHaveRoom(), cancellation).ConfigureAwait(false);
        }
        await RetireAfterAsync(_sub.WaitForAsync(caller, (Wq: this, Mine: mine), static s => s.Wq.ColorsDrained(s.Mine), cancellation)).ConfigureAwait(false);
    }

    private async Task RetireAfterAsync(Task wait)
    {
        try
        {
            await wait.ConfigureAwait(false);
        }
        finally
        {
            // Cancelled or faulted too: what has drained is retired, as a finished flush would.
            RetireDrainedColors();
        }
    }

    /// <summary>Every color from the oldest undrained one up to <paramref name="mine"/> has no item in flight on any pwq. Lock-free.</summary>
    private bool ColorsDrained(long mine)
    {
        for (long c = Volatile.Read(ref _flushedSeq); c <= mine; c++)
        {
            if (!ColorDrained(c))
            {
                return false;
            }
        }
        return true;
    }

    private bool ColorDrained(long colorSeq)
    {
        int color = (int)(colorSeq % PoolWorkqueue.WorkColors);
        foreach (var pwq in Pwqs)
        {
            if (Volatile.Read(ref pwq.InFlight[color]) != 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// drain_workqueue(): flushes until nothing is in flight. Meanwhile only this workqueue's own items
    /// may queue on it (chained work); anything else is refused with an exception. May sleep.
    /// </summary>
    public void Drain()
    {
        MightSleep.Check("drain_workqueue()");
        ThrowIfOwnItem("drain_workqueue()");
        ThrowIfDestroyed("drain_workqueue()");
        DrainCore(destroy: false);
    }

    /// <summary>
    /// drain_workqueue(), awaited: flushes (as <see cref="FlushAsync"/>) until nothing is in flight, as
    /// <see cref="Drain"/> does, holding no thread meanwhile. From the call until the task completes only
    /// this workqueue's own items may queue on it (chained work); queueing from anywhere else is refused
    /// with an exception, as during <see cref="Drain"/>. The context rules are <see cref="Drain"/>'s,
    /// checked at the call, which throws.
    /// </summary>
    /// <remarks>
    /// <paramref name="cancellationToken"/> cancels the wait: the task becomes Canceled and the drain
    /// ends there (queueing from outside is accepted again); what was queued keeps running. Shutdown
    /// meanwhile: as <see cref="FlushAsync"/>.
    /// </remarks>
    public Task DrainAsync(CancellationToken cancellationToken = default)
    {
        MightSleep.Check("drain_workqueue()");
        ThrowIfOwnItem("drain_workqueue()");
        ThrowIfDestroyed("drain_workqueue()");
        return DrainCoreAsync(cancellationToken);
    }

    private async Task DrainCoreAsync(CancellationToken cancellation)
    {
        // Before the first await, so on the caller's thread: draining from the call on, as Drain().
        Interlocked.Increment(ref _drainers);
        try
        {
            for (int flushes = 1; ; flushes++)
            {
                await FlushCoreAsync("drain_workqueue()", cancellation).ConfigureAwait(false);
                if (IsEmpty())
                {
                    break;
                }
                if (flushes == 10 || flushes % 100 == 0)
                {
                    _runtime.ReportWarning(-1, $"workqueue '{Name}'", $"drain_workqueue(): workqueue '{Name}' isn't complete after {flushes} tries (its items keep queueing more)");
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _drainers);
        }
    }

    private void DrainCore(bool destroy)
    {
        Interlocked.Increment(ref _drainers);
        try
        {
            for (int flushes = 1; ; flushes++)
            {
                FlushCore();
                if (IsEmpty())
                {
                    if (!destroy || IsDestroyed)
                    {
                        break;
                    }
                    // Destroyed from here on; then look once more: a queuer that pushed without the lock
                    // before it could see the flag pushed before this look (both sides have full barriers).
                    Interlocked.Exchange(ref _destroyed, 1);
                    if (IsEmpty())
                    {
                        break;
                    }
                }
                // The kernel's "workqueue %s: drain_workqueue() isn't complete after %u tries".
                if (flushes == 10 || flushes % 100 == 0)
                {
                    _runtime.ReportWarning(-1, $"workqueue '{Name}'", $"drain_workqueue(): workqueue '{Name}' isn't complete after {flushes} tries (its items keep queueing more)");
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _drainers);
        }
    }

    /// <summary>pwq_is_empty() for every pwq: nothing in flight, inactive included.</summary>
    internal bool IsEmpty()
    {
        foreach (var pwq in Pwqs)
        {
            pwq.Pool.Lock();
            pwq.Pool.SpliceIncoming();
            bool empty = pwq.InFlightTotal == 0;
            pwq.Pool.Unlock();
            if (!empty)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// destroy_workqueue(): drains it (everything queued runs; meanwhile only its own items may queue on
    /// it), stops its rescuer, and refuses all later queueing with <see cref="ObjectDisposedException"/>.
    /// Destroying twice is harmless, and so is destroying after the runtime has shut down (nothing is
    /// drained then: shutdown already ran or reported everything). System workqueues cannot be destroyed.
    /// May sleep.
    /// </summary>
    public void Destroy()
    {
        if (_system)
        {
            throw new InvalidOperationException($"destroy_workqueue() on system workqueue '{Name}': system workqueues live as long as the runtime.");
        }
        MightSleep.Check("destroy_workqueue()");
        ThrowIfOwnItem("destroy_workqueue()");
        if (_runtime.IsStopped)
        {
            // After shutdown nothing runs any more: what was accepted ran, or shutdown reported it
            // abandoned. Destroying is then only the refusal of later queueing, and must not wait for an
            // item stuck in a worker that shutdown left behind (a DI container disposes its workqueues
            // after the host has stopped the runtime).
            Interlocked.Exchange(ref _destroying, 1);
            Interlocked.Exchange(ref _destroyed, 1);
            _sub.Unregister(this);
            return;
        }
        if (Interlocked.Exchange(ref _destroying, 1) != 0)
        {
            _sub.WaitFor("destroy_workqueue()", this, static wq => wq.IsDestroyed);
            return;
        }
        DrainCore(destroy: true);
        Rescuer?.Stop();
        _sub.Unregister(this);
    }

    /// <summary>destroy_workqueue(): see <see cref="Destroy"/>.</summary>
    public void Dispose() => Destroy();

    /// <summary>
    /// workqueue_set_max_active(): changes max_active (1 to <see cref="MaxMaxActive"/>); items waiting on
    /// inactive lists start if the new limit lets them. Not for ordered workqueues.
    /// </summary>
    public void SetMaxActive(int maxActive)
    {
        if (IsOrdered)
        {
            throw new InvalidOperationException($"workqueue_set_max_active() on ordered workqueue '{Name}': its max_active is 1 by definition.");
        }
        if (IsBh)
        {
            throw new InvalidOperationException($"workqueue_set_max_active() on bh workqueue '{Name}': bh workqueues have no max_active.");
        }
        WorkqueueSubsystem.CheckMaxActive(maxActive, allowDefault: false, "workqueue_set_max_active()");
        _sub.ApplyMaxActive(this, maxActive);
    }

    // ---- introspection (tests, reports) ----

    /// <summary>A drain_workqueue() (or destroy) is in progress.</summary>
    internal bool IsDraining => Volatile.Read(ref _drainers) != 0;

    /// <summary>Flush colors handed out so far (each flush_workqueue() takes one).</summary>
    internal long FlushesStarted
    {
        get
        {
            lock (_flushLock)
            {
                return _workColorSeq;
            }
        }
    }

    // ---- rescuer ----

    /// <summary>Takes the oldest pwq that sent mayday, or null.</summary>
    internal PoolWorkqueue? TakeMayday()
    {
        lock (_sub.MaydayLock)
        {
            var pwq = MaydayHead;
            if (pwq is not null)
            {
                MaydayHead = pwq.MaydayNext;
                if (MaydayHead is null)
                {
                    MaydayTail = null;
                }
                pwq.MaydayNext = null;
                pwq.OnMayday = false;
            }
            return pwq;
        }
    }

    // ---- misuse ----

    private void ThrowIfDestroyed(string caller)
    {
        if (IsDestroyed)
        {
            throw new ObjectDisposedException(nameof(Workqueue), $"{caller}: workqueue '{Name}' has been destroyed (destroy_workqueue()).");
        }
    }

    /// <summary>Flushing, draining or destroying a workqueue from one of its own items waits for that very item: a deadlock.</summary>
    private void ThrowIfOwnItem(string caller)
    {
        if (Worker.Current is { CurrentPwq: { } running, CurrentWork: { } work } && ReferenceEquals(running.Wq, this))
        {
            throw new InvalidOperationException(
                $"{caller} on workqueue '{Name}' from its own work item '{work.Name}': it would wait for the item that is waiting, a deadlock.");
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"workqueue '{Name}' ({Flags}{(IsOrdered ? ", ordered" : "")}, max_active {MaxActive})";
}
