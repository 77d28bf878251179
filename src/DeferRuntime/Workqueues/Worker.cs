using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;
using DeferRuntime.Locking;
using DeferRuntime.Platform;

namespace DeferRuntime.Workqueues;

/// <summary>
/// struct worker: one kworker thread of a pool (worker_thread()), the inline worker of a bh pool, or a
/// workqueue's rescuer. It is also its thread's <see cref="ISleepNotifier"/>: the runtime's sleeping
/// primitives call <see cref="Sleeping"/> and <see cref="Running"/> (wq_worker_sleeping/running), which is
/// how the pool learns that a running item blocked and another worker should take the next one.
/// </summary>
/// <remarks>
/// Field legend: <c>I:</c> set at creation; <c>L:</c> under the pool lock of <see cref="Pool"/>;
/// <c>W:</c> the worker's own thread (read racily by the ticker); <c>T:</c> the ticker only;
/// <c>A:</c> Interlocked/volatile. nr_running counts the workers that have no NOT_RUNNING flag and are
/// not sleeping; every change of either is made under the pool lock, so the count stays exact even
/// though the ticker, unlike the kernel's scheduler tick, runs on another thread.
/// </remarks>
internal sealed class Worker : ISleepNotifier
{
    public const int FlagDie = 1 << 1; // WORKER_DIE: exit at the next wake-up
    public const int FlagIdle = 1 << 2; // WORKER_IDLE: on the idle list
    public const int FlagPrep = 1 << 3; // WORKER_PREP: not processing (idle, managing, rescuer)
    public const int FlagCpuIntensive = 1 << 6; // WORKER_CPU_INTENSIVE: running an item that does not count
    public const int FlagUnbound = 1 << 7; // WORKER_UNBOUND: unbound pools are not concurrency managed
    // Not the kernel's: the item blocked in the OS outside the runtime's primitives (Thread.Sleep, Monitor,
    // a socket), which the kernel's scheduler hook would have seen at once (wq_worker_sleeping) and the
    // ticker sees within a few ticks. Cleared, as wq_worker_running() would, when the ticker sees it run
    // again, or when the item returns.
    public const int FlagBlockedOutside = 1 << 8;
    public const int NotRunning = FlagPrep | FlagCpuIntensive | FlagUnbound | FlagBlockedOutside; // WORKER_NOT_RUNNING

    /// <summary>CREATE_COOLDOWN: how long a manager waits after a failed worker creation (HZ, 1 s).</summary>
    private const long CreateCooldownNs = 1_000_000_000;

    [ThreadStatic]
    private static Worker? t_current;

    private readonly Parker _parker = new();
    private Thread? _thread; // I (once started)
    private int _parked; // A: 1 while parked (or about to), so wakers know a futex wake is needed
    private int _poke; // A: a wake-up that is not a kick (exit, end of cooldown)

    public Worker(WorkerPool? pool, int id, string name, bool bh, Workqueue? rescueWq = null)
    {
        Pool = pool!;
        Id = id;
        Name = name;
        IsBh = bh;
        RescueWq = rescueWq;
        Flags = FlagPrep | (pool is { IsUnbound: true } ? FlagUnbound : 0);
    }

    /// <summary>
    /// current_wq_worker(): the worker whose item the calling thread is running, or null. Null also in
    /// interrupt context on a worker's thread (in_task() is false: a timer callback or softirq run inline
    /// by local_bh_enable() in an item is not that item), except for a bh worker, whose items run there.
    /// </summary>
    public static Worker? Current
    {
        get
        {
            var worker = t_current;
            if (worker is null || worker.IsBh)
            {
                return worker;
            }
            var ctx = ThreadContext.Current;
            return ctx is not null && (ctx.PreemptCount & (Cpus.PreemptCount.HardirqMask | Cpus.PreemptCount.SoftirqOffset)) != 0 ? null : worker;
        }
    }

    /// <summary>Installs <paramref name="worker"/> as the current worker of this thread and returns the previous one (bh work runs nested in other threads).</summary>
    public static Worker? SwapCurrent(Worker? worker)
    {
        var old = t_current;
        t_current = worker;
        return old;
    }

    public WorkerPool Pool; // I for pool workers; L (of the rescued pool) for a rescuer, which moves between pools
    public int Id { get; } // I
    public string Name { get; } // I
    public bool IsBh { get; } // I
    public Workqueue? RescueWq { get; } // I: the workqueue a rescuer serves
    public Thread? Thread => _thread;

    public int Flags; // L
    public bool IsSleeping; // L: blocked in a runtime primitive (worker->sleeping); unbound workers too, for the run queues
    public bool OnRunQueue; // L: counted on the run queues of the pool's cores (WorkerPool.UpdateRunnable)
    public bool Exited; // L: detached from its pool, about to end
    public WorkStruct? CurrentWork; // L, read racily by reports and flushers
    public long CurrentSeq; // L, read racily by flushers: the SEQ of the instance of CurrentWork
    public PoolWorkqueue? CurrentPwq; // L
    public WorkStruct? ScheduledHead, ScheduledTail; // L: items assigned to this worker (non-reentrancy)
    public Worker? IdleNext, IdlePrev; // L
    public long IdleSince; // L
    public long Stamp; // W: bumped at each item start and each wake from a sleep
    public long TickStamp = -1, TickSince; // T: the ticker's last view of Stamp, and the worker's CPU time (or the wall clock) then
    public int CpuClock = ThreadCpuClock.None; // I (set by the thread at start): its CPU-time clock, for the ticker
    public ThreadContext? Context; // I (set by the thread at start): read racily by the ticker (its spin-wait naps)
    public Microsoft.Win32.SafeHandles.SafeFileHandle? StatHandle; // I (opened by the thread at start, closed at its exit): its OS run state, for the ticker
    public long TickCpuNs, TickSpinNaps; // T: the worker's CPU time and spin-wait naps at the ticker's previous look
    public int BlockedLooks; // T: consecutive looks that found it blocked in the OS without using CPU
    public long BlockedSince; // T: the first of those looks

    public bool IsIdle => (Flags & FlagIdle) != 0;

    public bool IsParked => Volatile.Read(ref _parked) != 0;

    private WorkqueueSubsystem Sub => Pool.Sub;

    public void Unpark() => _parker.Unpark();

    /// <summary>Wakes the worker for a reason other than a kick (exit, shutdown); the flag outlives the wake.</summary>
    public void Poke()
    {
        Interlocked.Exchange(ref _poke, 1);
        if (IsParked)
        {
            _parker.Unpark();
        }
    }

    // ---- flags (worker_set_flags / worker_clr_flags): nr_running follows NOT_RUNNING ----

    public void SetFlags(int flags)
    {
        Pool.AssertLocked();
        bool drop = (flags & NotRunning) != 0 && (Flags & NotRunning) == 0 && !IsSleeping;
        Flags |= flags;
        if (drop)
        {
            Pool.AddRunning(-1);
        }
        if ((flags & FlagBlockedOutside) != 0)
        {
            Pool.UpdateRunnable(this);
        }
    }

    public void ClearFlags(int flags)
    {
        Pool.AssertLocked();
        int old = Flags;
        Flags &= ~flags;
        if ((flags & NotRunning) != 0 && (old & NotRunning) != 0 && (Flags & NotRunning) == 0 && !IsSleeping)
        {
            Pool.AddRunning(1);
        }
        if ((old & flags & FlagBlockedOutside) != 0)
        {
            Pool.UpdateRunnable(this);
        }
    }

    // ---- concurrency management hooks ----

    /// <summary>
    /// wq_worker_sleeping(): the item this worker runs is about to block. It stops counting as running,
    /// and if that leaves work with nobody running, an idle worker is kicked to take it.
    /// </summary>
    /// <remarks>
    /// An unbound worker is not concurrency managed (FlagUnbound never changes, so nr_running never
    /// counts it), but it too leaves its cores' run queues while it blocks.
    /// </remarks>
    public void Sleeping()
    {
        if (IsBh || RescueWq is not null)
        {
            return;
        }
        var pool = Pool;
        Worker? toWake = null;
        pool.Lock();
        if (!IsSleeping)
        {
            IsSleeping = true;
            if ((Flags & NotRunning) == 0)
            {
                pool.AddRunning(-1);
                toWake = pool.KickPool();
            }
            pool.UpdateRunnable(this);
        }
        pool.Unlock();
        WorkerPool.WakeKicked(toWake);
    }

    /// <summary>wq_worker_running(): the worker runs again and counts again.</summary>
    public void Running()
    {
        if (IsBh || RescueWq is not null)
        {
            return;
        }
        var pool = Pool;
        pool.Lock();
        if (IsSleeping)
        {
            IsSleeping = false;
            if ((Flags & NotRunning) == 0)
            {
                pool.AddRunning(1);
            }
            pool.UpdateRunnable(this);
        }
        Stamp++; // a sleep resets the cpu-intensive clock, as the kernel's current_at does
        pool.Unlock();
    }

    // ---- the thread ----

    public void Start()
    {
        _thread = new Thread(ThreadMain)
        {
            Name = Name,
            IsBackground = true,
        };
        _thread.UnsafeStart();
    }

    private void ThreadMain()
    {
        var pool = Pool;
        // Bound workers belong to their CPU; unbound ones get the context of their mask's first CPU (an
        // approximation: the kernel's unbound kworker belongs to whichever CPU it is scheduled on, and
        // a thread's context here is fixed). Either way they are pinned to the pool's cores.
        var ctx = new ThreadContext(pool.ContextCpu, ThreadRole.Worker) { SleepNotifier = this };
        ThreadContext.Attach(ctx);
        t_current = this;
        Volatile.Write(ref CpuClock, ThreadCpuClock.Create());
        Volatile.Write(ref Context, ctx);
        Volatile.Write(ref StatHandle, ThreadRunState.OpenForCurrentThread());
        try
        {
            Place(pool);
            Loop(ctx);
        }
        finally
        {
            // Its CPU time outlives it in the pool's total (its clock dies with the thread).
            long cpuNs = ThreadCpuClock.ReadNs(CpuClock);
            if (cpuNs > 0)
            {
                Interlocked.Add(ref pool.RetiredCpuNs, cpuNs);
            }
            // A ticker reading it right now keeps it alive (SafeHandle's count) and then reads "not blocked".
            StatHandle?.Dispose();
            ctx.SleepNotifier = null;
            t_current = null;
            ThreadContext.Detach();
        }
    }

    /// <summary>Pins to the pool's cores and applies its nice (HIGHPRI_NICE_LEVEL for high-priority pools), recording what the OS granted.</summary>
    private void Place(WorkerPool pool)
    {
        var options = Sub.Runtime.Options;
        string? pinError = options.Pinning ? ThreadPlacement.PinCurrentThreadToCores(pool.Cores) : null;
        string priority = "unchanged";
        string? priorityError = null;
        if (options.Priorities != PriorityPolicy.None)
        {
            priority = $"nice {pool.Nice}";
            priorityError = ThreadPlacement.SetNice(pool.Nice); // also nice 0: see SetNice on inheritance
        }
        // An unbound worker allowed on several cores has no single core to report: it is recorded only
        // if the OS refused its mask or its priority.
        if (pool.Cores.Length == 1 || pinError is not null || priorityError is not null)
        {
            Sub.Runtime.RecordPlacement(new ThreadPlacementReport(
                Name, pool.ContextCpu.Id, options.Pinning ? pool.Cores[0] : null,
                options.Pinning && pinError is null, pinError, priority, priorityError is null, priorityError));
        }
    }

    /// <summary>worker_thread(): wake, take work while the pool needs this worker, idle, repeat.</summary>
    private void Loop(ThreadContext ctx)
    {
        var pool = Pool;
        pool.Lock();
        while (true)
        {
            Volatile.Write(ref _poke, 0);
            if ((Flags & FlagDie) != 0 || Sub.Runtime.IsPanicked)
            {
                if ((Flags & FlagDie) == 0)
                {
                    pool.LeaveIdle(this);
                    pool.Hot.NrWorkers--;
                }
                pool.Detach(this);
                // A culled worker may have been the one kicked: hand what queuers pushed to another.
                var other = pool.WorkArrivedBeforeIdle() ? pool.KickPool() : null;
                pool.Unlock();
                WorkerPool.WakeKicked(other);
                return;
            }
            pool.LeaveIdle(this);

            while (true)
            {
                pool.SpliceIncoming();
                if (!pool.NeedMoreWorker)
                {
                    break;
                }
                // Keep an idle worker in reserve before working, so that if this one blocks, someone can
                // take over at once: a worker that finds none becomes the manager and creates one.
                if (!pool.MayStartWorking && ManageWorkers())
                {
                    continue;
                }
                ClearFlags(FlagPrep);
                do
                {
                    var work = pool.Hot.WorkHead;
                    if (work is null)
                    {
                        pool.SpliceIncoming();
                        work = pool.Hot.WorkHead;
                        if (work is null)
                        {
                            break;
                        }
                    }
                    AssignAndRun(work, ctx);
                }
                while (pool.KeepWorking);
                // nr_running may drop to 0 here (with a full barrier): the loop looks at the incoming
                // list once more before idling, so a queuer that saw it still running is not stranded.
                SetFlags(FlagPrep);
            }
            if (pool.WorkArrivedBeforeIdle())
            {
                continue; // back through the wake-up path: splice and work
            }

            pool.EnterIdle(this);
            pool.Unlock();
            IdleWait(pool);
            pool.Lock();
        }
    }

    /// <summary>
    /// Idles until kicked or poked: polls the pool's hot line for the poll window (the runtime's idle
    /// policy: a kick then costs one cache-line transfer, not a futex wake), then parks.
    /// </summary>
    private void IdleWait(WorkerPool pool)
    {
        long pollTicks = Sub.WorkerPollTicks;
        if (pollTicks > 0)
        {
            long deadline = Stopwatch.GetTimestamp() + pollTicks;
            for (int i = 1; ; i++)
            {
                if (Woken(pool))
                {
                    return;
                }
                // Another task of one of this pool's cores is runnable (a kworker with work, ksoftirqd, an
                // irq thread): an idle poll would take the core from it (same nice or better, so the OS
                // shares it), which under a storm is a time slice per event. Park instead. PERF: a load
                // per core of the pool (one for a bound pool), at every look.
                if (pool.RunnableOnMyCores())
                {
                    break;
                }
                // PERF: one pause per look, as cpu/N's poll loop (a pause is ~40 ns here).
                Thread.SpinWait(1);
                if ((i & 63) == 0 && Stopwatch.GetTimestamp() >= deadline)
                {
                    break;
                }
            }
        }
        while (true)
        {
            // Announce the park, then re-check: a kicker writes Kicked (or the poke) and then reads
            // _parked, both with full barriers, so one of us sees the other.
            Interlocked.Exchange(ref _parked, 1);
            if (Woken(pool))
            {
                Volatile.Write(ref _parked, 0);
                return;
            }
            _parker.Park(-1);
            Volatile.Write(ref _parked, 0);
            if (Woken(pool))
            {
                return;
            }
        }
    }

    private bool Woken(WorkerPool pool) =>
        ReferenceEquals(Volatile.Read(ref pool.Hot.Kicked), this) || Volatile.Read(ref _poke) != 0;

    /// <summary>
    /// manage_workers() / maybe_create_worker(): this worker found no idle worker in reserve; it creates
    /// one (one at a time, the pool lock dropped meanwhile), waiting CREATE_COOLDOWN after a failure.
    /// While it fails for 10 ms the ticker sends mayday to the rescuers. False if another worker manages.
    /// </summary>
    private bool ManageWorkers()
    {
        var pool = Pool;
        if (pool.ManagerActive)
        {
            return false;
        }
        pool.ManagerActive = true;
        pool.ManagerSince = Stopwatch.GetTimestamp();
        bool managed = false;
        while (pool.NeedToCreateWorker && !Sub.IsStopping && (Flags & FlagDie) == 0 && !Sub.Runtime.IsPanicked)
        {
            managed = true;
            pool.Unlock();
            if (!pool.CreateWorker())
            {
                // A poke (shutdown) ends the cooldown early: it unparks only a worker that says it parked.
                Interlocked.Exchange(ref _parked, 1);
                if (Volatile.Read(ref _poke) == 0)
                {
                    _parker.Park(CreateCooldownNs);
                }
                Volatile.Write(ref _parked, 0);
            }
            pool.Lock();
        }
        pool.ManagerActive = false;
        // True only if the lock was dropped (the kernel's manage_workers() contract): the caller then
        // re-checks everything. Nothing to do (shutting down, dying, or a worker already in reserve)
        // must not send it round again with the lock held, which would spin for ever.
        return managed;
    }

    /// <summary>
    /// assign_work() then process: takes <paramref name="work"/> off the worklist; if another worker of this
    /// pool is running it (a re-queue of a running item), it goes to that worker's scheduled list instead,
    /// so the item never runs concurrently with itself. Lock held on entry and exit.
    /// </summary>
    public void AssignAndRun(WorkStruct work, ThreadContext ctx)
    {
        var pool = Pool;
        pool.Unlink(work);
        if (pool.HandToExecutingWorker(work, this))
        {
            return;
        }
        ProcessOne(work, ctx);
        ProcessScheduled(ctx);
    }

    /// <summary>process_scheduled_works(): items other workers handed to this one, in order. Lock held.</summary>
    public void ProcessScheduled(ThreadContext ctx)
    {
        while (ScheduledHead is { } work)
        {
            Pool.Unlink(work);
            ProcessOne(work, ctx);
        }
    }

    /// <summary>
    /// process_one_work(): runs one unlinked item with the pool lock dropped, then accounts its end (flush
    /// color, max_active slot, completion) and wakes flushers if any wait. Lock held on entry and exit.
    /// </summary>
    public void ProcessOne(WorkStruct work, ThreadContext ctx)
    {
        var pool = Pool;
        pool.AssertLocked();
        var pwq = work.Pwq!;
        int color = work.Color;
        CurrentWork = work;
        CurrentPwq = pwq;
        // Every start is recorded, as the kernel's busy_hash: a queuer that finds the item running for
        // its workqueue elsewhere looks for that run's pool (find_worker_executing_work), and a flusher
        // for runs at or below its SEQ. Written before PENDING is cleared below, so a queuer that then
        // sets PENDING sees them, and so does the next start (which can only follow that queue). The
        // SEQ is ours to read while PENDING still holds off the next queuer. Tracked: no instance runs,
        // so this one is CurrentWorker, with plain stores (one workqueue's instances never overlap, and
        // tracked ones follow each other in SEQ order). Untracked: an instance for another workqueue runs
        // (which the kernel allows); listed with its SEQ and counted atomically, a rare path.
        long seq = Volatile.Read(ref work.State) >> WorkStruct.SeqShift;
        CurrentSeq = seq;
        bool tracked = work.CurrentWorker is null;
        if (tracked)
        {
            Volatile.Write(ref work.CurrentWorker, this);
        }
        else
        {
            work.AddUntrackedRun(this, seq);
            Interlocked.Increment(ref work.Untracked);
        }
        Stamp++;
        pool.Started++;
        if (pwq.Wq.IsCpuIntensive)
        {
            SetFlags(FlagCpuIntensive);
        }
        // Unbound and cpu-intensive work does not count: kick another worker for what waits behind it.
        var toWake = pool.KickPool();
        // RunningSeq before PENDING clears: until then nobody can queue (and so start) a later instance,
        // so starts write it in SEQ order and a plain store is enough. Completions have no such order.
        if (seq > work.RunningSeq)
        {
            Volatile.Write(ref work.RunningSeq, seq);
        }
        // The queue stamp is read while PENDING still holds off the next queuer, who writes it.
        long queuedAt = work.QueuedAt;
        if (queuedAt != 0)
        {
            work.QueuedAt = 0; // a later queue made while nobody listens must not reuse it
        }
        // Clear PENDING with a full barrier before the function runs: a queuer that finds PENDING still
        // set relies on this run seeing what it wrote (set_work_pool_and_clear_pending()).
        Interlocked.And(ref work.State, ~WorkStruct.Pending);
        pool.Unlock();
        WorkerPool.WakeKicked(toWake);

        // PERF: the tracepoints and the latency sample cost a load and a predictable branch each while
        // nobody listens (queuedAt is 0 unless a queue-latency histogram listened at queue time).
        if (queuedAt != 0)
        {
            Sub.Runtime.Metrics?.RecordWorkLatency(pwq.Wq, System.Diagnostics.Stopwatch.GetTimestamp() - queuedAt);
        }
        if (DeferRuntimeEventSource.WorkqueueOn)
        {
            DeferRuntimeEventSource.Log.workqueue_execute_start(RuntimeHelpers.GetHashCode(work), work.Name);
        }
        ctx.Cpu.RunCallback(ctx, work, static w => w.Invoke(), static w => $"work item '{w.Name}'");
        if (DeferRuntimeEventSource.WorkqueueOn)
        {
            DeferRuntimeEventSource.Log.workqueue_execute_end(RuntimeHelpers.GetHashCode(work), work.Name);
        }

        pool.Lock();
        ClearFlags(FlagCpuIntensive | FlagBlockedOutside);
        CurrentWork = null;
        CurrentPwq = null;
        // Completed before the running marks drop: once they do, a new instance may start and its own
        // completion must be the one that stays. Tracked instances are the only writers of CompletedSeq
        // and follow each other in SEQ order, so a plain store; an untracked one may finish before or
        // after a tracked one with a lower SEQ, so it keeps its own maximum, which readers combine.
        if (tracked)
        {
            Volatile.Write(ref work.CompletedSeq, seq);
            Volatile.Write(ref work.CurrentWorker, null);
        }
        else
        {
            WorkStruct.RaiseTo(ref work.UntrackedCompletedSeq, seq);
            work.RemoveUntrackedRun(this);
            Interlocked.Decrement(ref work.Untracked);
        }
        pool.Completions++;
        pwq.Executed++;
        pwq.DecInFlight(color, active: true);
        pool.Sub.NotifyWaiters();
    }

    public override string ToString() => Name;
}
