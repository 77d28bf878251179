using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using DeferRuntime.Cpus;

namespace DeferRuntime.Workqueues;

/// <summary>
/// The words of a pool that queuers and workers touch on every item: the pool lock, the running count,
/// the worklist ends, the idle list head and the kicked worker. They sit together on purpose: a queuer
/// takes the lock and then writes the worklist and the kick in the same line, and the idle worker it
/// kicks polls that line, so one cache-line transfer carries the whole hand-over. 64 bytes of padding
/// on each side keep other pools' lines and this pool's cold fields off it.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 192)]
internal struct PoolHotLine
{
    /// <summary>A: the pool lock (raw_spinlock_t pool-&gt;lock): 0 free, 1 held. See <see cref="WorkerPool.Lock"/>.</summary>
    [FieldOffset(64)] public int Lock;

    /// <summary>L: workers running and counted for concurrency management (nr_running).</summary>
    [FieldOffset(68)] public int NrRunning;

    /// <summary>L: the worklist, FIFO: active items waiting for a worker.</summary>
    [FieldOffset(72)] public WorkStruct? WorkHead;

    [FieldOffset(80)] public WorkStruct? WorkTail;

    /// <summary>L (written with Interlocked): the idle worker last kicked, which polls this word before it parks.</summary>
    [FieldOffset(88)] public Worker? Kicked;

    /// <summary>L: idle list, most recently idle first (the kernel wakes the first: its cache is warm).</summary>
    [FieldOffset(96)] public Worker? IdleHead;

    [FieldOffset(104)] public Worker? IdleTail;

    /// <summary>L: idle workers (nr_idle).</summary>
    [FieldOffset(112)] public int NrIdle;

    /// <summary>L: workers of the pool, idle or busy (nr_workers).</summary>
    [FieldOffset(116)] public int NrWorkers;

    /// <summary>L: the last value written to <see cref="PoolQueueLine.Running"/> (so the lock holder never reads that line to compare).</summary>
    [FieldOffset(120)] public int RunningHint;

    /// <summary>L: a worker left a run queue of the pool's cores and emptied it; the unlock sends their idle CPUs back to polling (idle=poll).</summary>
    [FieldOffset(124)] public int RepollOnUnlock;
}

/// <summary>
/// The words queuers write when they do not take the pool lock: the incoming list (a lock-free LIFO the
/// lock holder splices onto the worklist) and the hint that a worker of the pool is running and will
/// splice it. On their own line, apart from the lock line, so that a queuer pushing while the worker
/// takes the lock for each item does not move the lock's line between cores.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 144)]
internal struct PoolQueueLine
{
    /// <summary>A: items queued without the lock, newest first (linked through <see cref="WorkStruct.Next"/>).</summary>
    [FieldOffset(64)] public WorkStruct? Incoming;

    /// <summary>A (written under the pool lock): non-zero while nr_running is; 0 means a queuer must take the lock and kick.</summary>
    [FieldOffset(72)] public int Running;
}

/// <summary>
/// struct worker_pool: a worklist served by a set of workers. Per CPU a normal and a high-priority pool
/// (shared by every bound workqueue) and a normal and a high-priority bh pool (run from the TASKLET and
/// HI softirqs); unbound pools keyed by <see cref="WorkqueueAttrs"/>.
/// </summary>
/// <remarks>
/// Field legend: <c>I:</c> set at creation; <c>L:</c> under the pool lock; <c>A:</c> Interlocked or
/// volatile; <c>T:</c> the wq ticker thread only. The lock is a test-and-set spinlock that backs off to
/// yields and naps (<see cref="Backoff"/>), never held across a work function, a thread start or a
/// wake-up that could block.
/// </remarks>
internal sealed class WorkerPool
{
    /// <summary>MAX_IDLE_WORKERS_RATIO: a quarter of the busy workers may idle beyond the two kept.</summary>
    private const int MaxIdleWorkersRatio = 4;

    internal PoolHotLine Hot;
    internal PoolQueueLine Queue;

    private readonly List<Worker> _workers = []; // L: every attached worker (not the rescuer)
    private readonly List<bool> _ids = []; // L: worker ids in use (the kernel's worker_ida)

    public WorkerPool(WorkqueueSubsystem sub, int id, VirtualCpu? cpu, bool highPri, bool bh, WorkqueueAttrs? attrs, VirtualCpu contextCpu, int[] cores)
    {
        Sub = sub;
        Id = id;
        Cpu = cpu;
        HighPri = highPri;
        IsBh = bh;
        Attrs = attrs;
        ContextCpu = contextCpu;
        Cores = cores;
        Nice = attrs?.Nice ?? (highPri ? WorkqueueAttrs.HighPriNice : 0);
        NamePrefix = cpu is not null ? $"kworker/{cpu.Id}:" : $"kworker/u{id}:";
        RunQueues = bh ? [] : cores.Select(sub.Runtime.RunQueueOfCore).ToArray();
        if (bh)
        {
            // The bh pool's only "worker" runs inline in softirq context: the kernel's per-CPU bh worker.
            BhWorker = new Worker(this, 0, $"{(highPri ? "bh-highpri" : "bh")}/{cpu!.Id}", bh: true);
        }
    }

    public WorkqueueSubsystem Sub { get; } // I
    public int Id { get; } // I
    public VirtualCpu? Cpu { get; } // I: the CPU of a bound or bh pool, null for unbound
    public bool HighPri { get; } // I
    public bool IsBh { get; } // I
    public WorkqueueAttrs? Attrs { get; } // I: unbound pools
    public VirtualCpu ContextCpu { get; } // I: whose ThreadContext workers get (unbound: the mask's first CPU)
    public int[] Cores { get; } // I: the OS cores workers are pinned to
    public CoreRunQueue[] RunQueues { get; } // I: the run queues of those cores (none for a bh pool: its work runs in softirq context)
    public int Nice { get; } // I
    public string NamePrefix { get; } // I
    public Worker? BhWorker { get; } // I: bh pools

    public bool IsUnbound => Cpu is null;

    /// <summary>
    /// Queuers may use the incoming list: bound pools, where a running worker is counted and so will come
    /// back for it. Unbound pools count nobody (every item may need a kick) and bh pools are kicked by a
    /// softirq raise, so both always take the lock.
    /// </summary>
    public bool AcceptsIncoming => Cpu is not null && !IsBh;

    public bool ManagerActive; // L: POOL_MANAGER_ACTIVE
    public long ManagerSince; // L: when the manager began trying to create a worker (mayday clock)
    public bool CreationRequested; // L: the ticker is asked to create a worker (the pool has none)
    public long CreationRequestedSince; // L: when (the mayday clock of a pool whose first worker does not come)
    public long Started; // L: items started (progress for the watchdog)
    public long Completions; // L: items finished, for shutdown's quiescence check
    public long BlockedOutside; // L: workers the ticker counted out for blocking outside the runtime's primitives
    public long RetiredCpuNs; // A: CPU time of workers that have exited (VirtualCpu.GetCpuTime)
    public readonly List<Worker> Rescuers = new(1); // L: rescuers attached to this pool right now (one per MemReclaim workqueue at most)

    public long LastMayday; // T
    public long WatchdogStarted; // T: Started when last seen to move
    public long WatchdogSince; // T: when that was
    public bool WatchdogArmed; // T: items were waiting at the previous tick too

    // ---- the lock ----

    /// <summary>Takes the pool lock. PERF: one CAS uncontended; contended, spins, yields, then naps so a preempted holder on the same core runs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock()
    {
        if (Interlocked.CompareExchange(ref Hot.Lock, 1, 0) != 0)
        {
            LockSlow();
        }
    }

    /// <summary>
    /// Contended: the holder is either running on the other core, and lets go within a few hundred
    /// nanoseconds (no section of the pool lock does more than list and counter updates), or it was
    /// preempted, possibly by this very spinner on its own core. So: one pause per look for about 40 µs
    /// (<see cref="Backoff"/>'s doubling spins would overshoot a 100 ns release by up to 20 µs), then
    /// yields, then real naps so a lower-priority holder on this core gets to run (DESIGN §5).
    /// </summary>
    /// <summary>
    /// Takes the pool lock unless it is still held at the Stopwatch timestamp <paramref name="until"/>:
    /// for shutdown's report, which must not wait forever for a thread it left behind.
    /// </summary>
    public bool TryLockUntil(long until)
    {
        while (Interlocked.CompareExchange(ref Hot.Lock, 1, 0) != 0)
        {
            if (Stopwatch.GetTimestamp() >= until)
            {
                return false;
            }
            Thread.Yield();
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void LockSlow()
    {
        const int SpinLooks = 1024; // ~40 µs of pauses on the development VM
        const int YieldLooks = SpinLooks + 64;
        for (int i = 0; ; i++)
        {
            if (Volatile.Read(ref Hot.Lock) == 0 && Interlocked.CompareExchange(ref Hot.Lock, 1, 0) == 0)
            {
                return;
            }
            if (i < SpinLooks)
            {
                Thread.SpinWait(1);
            }
            else if (i < YieldLooks)
            {
                Thread.Yield();
            }
            else
            {
                ThreadContext.NapInSpinWait();
            }
        }
    }

    /// <summary>Releases the pool lock (a release store).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock()
    {
        AssertLocked();
        if (Hot.RepollOnUnlock != 0)
        {
            UnlockAndRepoll();
            return;
        }
        Volatile.Write(ref Hot.Lock, 0);
    }

    /// <summary>
    /// Releases the lock, then sends the parked idle CPUs of the pool's cores back to polling (see
    /// <see cref="UpdateRunnable"/>): after the release, so that cpu/N, which preempts us on our core when
    /// woken, never finds the lock held by the worker it preempted.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void UnlockAndRepoll()
    {
        Hot.RepollOnUnlock = 0;
        Volatile.Write(ref Hot.Lock, 0);
        foreach (var queue in RunQueues)
        {
            queue.RepollIdle();
        }
    }

    [Conditional("DEBUG")]
    public void AssertLocked() => Debug.Assert(Volatile.Read(ref Hot.Lock) != 0, "the pool lock must be held");

    // ---- the kernel's predicates, all under the lock ----

    /// <summary>
    /// Changes nr_running and keeps the queuers' hint in step. When it drops to 0 the hint is cleared and
    /// followed by a full barrier: a queuer pushes (full barrier) and then reads the hint, the pool clears
    /// the hint and then (the caller, under the lock) looks at the incoming list, so either the queuer sees
    /// 0 and kicks, or the pool sees the item.
    /// </summary>
    public void AddRunning(int delta)
    {
        AssertLocked();
        Hot.NrRunning += delta;
        SetRunningHint(Hot.NrRunning != 0 ? 1 : 0);
    }

    private void SetRunningHint(int running)
    {
        if (running != Hot.RunningHint)
        {
            Hot.RunningHint = running;
            Volatile.Write(ref Queue.Running, running);
            if (running == 0)
            {
                Interlocked.MemoryBarrier();
            }
        }
    }

    /// <summary>
    /// Before a worker idles or exits: if nobody runs, the hint a kick may have left set is cleared (full
    /// barrier), and true is returned if queuers pushed meanwhile, so the caller goes back to work (or
    /// kicks someone) instead of stranding them. Under the lock.
    /// </summary>
    public bool WorkArrivedBeforeIdle()
    {
        AssertLocked();
        if (Hot.NrRunning != 0)
        {
            return false; // a running worker will look at the incoming list
        }
        SetRunningHint(0);
        return Volatile.Read(ref Queue.Incoming) is not null;
    }

    /// <summary>
    /// Moves what queuers pushed without the lock onto the worklist (or inactive lists), oldest first,
    /// with the accounting __queue_work() does under the lock: flush color, in-flight count, max_active.
    /// Everything that looks at the worklist under the lock calls this first. PERF: one read when empty.
    /// </summary>
    public void SpliceIncoming()
    {
        AssertLocked();
        if (Volatile.Read(ref Queue.Incoming) is null)
        {
            return;
        }
        var lifo = Interlocked.Exchange(ref Queue.Incoming, null);
        WorkStruct? fifo = null;
        while (lifo is not null)
        {
            var next = lifo.Next;
            lifo.Next = fifo;
            fifo = lifo;
            lifo = next;
        }
        while (fifo is not null)
        {
            var next = fifo.Next;
            fifo.ListKind = WorkListKind.None;
            fifo.Pwq!.Insert(fifo);
            fifo = next;
        }
    }

    /// <summary>Pushes an item queued without the lock (the caller set its pwq and QueuedPool). Full barrier.</summary>
    public void PushIncoming(WorkStruct work)
    {
        var head = Volatile.Read(ref Queue.Incoming);
        while (true)
        {
            work.Next = head;
            var seen = Interlocked.CompareExchange(ref Queue.Incoming, work, head);
            if (ReferenceEquals(seen, head))
            {
                return;
            }
            head = seen;
        }
    }

    /// <summary>need_more_worker(): work is waiting and nobody counted is running.</summary>
    public bool NeedMoreWorker => Hot.WorkHead is not null && Hot.NrRunning == 0;

    /// <summary>may_start_working(): an idle worker is in reserve (so a blocking item can be covered).</summary>
    public bool MayStartWorking => Hot.NrIdle > 0;

    /// <summary>
    /// keep_working(): work is waiting (on the worklist, or pushed to be spliced) and at most one worker
    /// (this one) is running. PERF: the incoming list is read only once the worklist is empty.
    /// </summary>
    public bool KeepWorking => (Hot.WorkHead is not null || Volatile.Read(ref Queue.Incoming) is not null) && Hot.NrRunning <= 1;

    /// <summary>need_to_create_worker(): more workers needed and none idle.</summary>
    public bool NeedToCreateWorker => NeedMoreWorker && !MayStartWorking;

    /// <summary>too_many_workers(): more than two idle, and the idle beyond two exceed a quarter of the busy.</summary>
    public bool TooManyWorkers
    {
        get
        {
            int idle = Hot.NrIdle + (ManagerActive ? 1 : 0);
            int busy = Hot.NrWorkers - idle;
            return idle > 2 && (idle - 2) * MaxIdleWorkersRatio >= busy;
        }
    }

    /// <summary>
    /// kick_pool(): if work needs a worker, names the first idle one (written into the hot line, which it
    /// polls) and returns it for <see cref="WakeKicked"/> after the lock is dropped. A pool with no worker
    /// at all (first use) asks the ticker to create one. Bh pools are kicked by raising their softirq.
    /// </summary>
    public Worker? KickPool()
    {
        AssertLocked();
        // PERF: someone counted is running, so nobody is needed (need_more_worker is false whatever the
        // worklist holds): return before looking at the queuers' line, which this runs for every item.
        if (Hot.NrRunning != 0 || IsBh)
        {
            return null;
        }
        SpliceIncoming();
        if (!NeedMoreWorker)
        {
            return null;
        }
        var idle = Hot.IdleHead;
        if (idle is null)
        {
            if (Hot.NrWorkers == 0 && !CreationRequested)
            {
                // Lazy start: the first worker of a pool is created by the ticker (kthreadd's role), not
                // by whoever queued (maybe a hard-IRQ handler).
                CreationRequested = true;
                CreationRequestedSince = Stopwatch.GetTimestamp();
                Sub.WakeTicker();
            }
            return null;
        }
        // PERF: Interlocked so the full barrier orders this store before the caller's read of the
        // worker's parked flag (the worker writes parked, then re-reads Kicked).
        var previous = Interlocked.Exchange(ref Hot.Kicked, idle);
        if (!ReferenceEquals(previous, idle))
        {
            SetKicked(previous, idle);
        }
        // A worker is on its way and will look at the incoming list: queuers behind this one may push
        // without the lock (a burst then contends with nobody). The worker clears it if it idles with
        // nobody running (WorkArrivedBeforeIdle).
        if (AcceptsIncoming)
        {
            SetRunningHint(1);
        }
        return idle;
    }

    /// <summary>
    /// The wake-up half of kick_pool(), after the pool lock is released: a futex wake only if the worker
    /// parked; then the ticker, which a busy pool needs (cpu-intensive detection, mayday, watchdog).
    /// The kicker wakes the ticker, not the kicked worker: that keeps a possible futex call off the path
    /// from the kick to the item's start. It is enough: a kick means work on the worklist, which the
    /// ticker's last look before parking sees, or the kicker sees the ticker parked.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WakeKicked(Worker? worker)
    {
        if (worker is not null)
        {
            if (worker.IsParked)
            {
                worker.Unpark();
            }
            worker.Pool.Sub.WakeTicker();
        }
    }

    /// <summary>
    /// find_worker_executing_work(): the worker of this pool running <paramref name="work"/> now (the
    /// kernel's busy_hash lookup; here a look at each worker's current item, done only while the item is
    /// running somewhere, which its running count says). Under the lock.
    /// </summary>
    public Worker? FindWorkerExecuting(WorkStruct work)
    {
        AssertLocked();
        if (!work.IsRunning)
        {
            return null;
        }
        // PERF: the tracked instance's worker first, the common case.
        if (Volatile.Read(ref work.CurrentWorker) is { } current && ReferenceEquals(current.Pool, this) && ReferenceEquals(current.CurrentWork, work))
        {
            return current;
        }
        if (BhWorker is { } bh)
        {
            return ReferenceEquals(bh.CurrentWork, work) ? bh : null;
        }
        foreach (var worker in _workers)
        {
            if (ReferenceEquals(worker.CurrentWork, work))
            {
                return worker;
            }
        }
        foreach (var rescuer in Rescuers)
        {
            if (ReferenceEquals(rescuer.CurrentWork, work))
            {
                return rescuer;
            }
        }
        return null;
    }

    /// <summary>
    /// assign_work()'s collision half: if another worker of this pool is running <paramref name="work"/>
    /// (a re-queue of a running item), the unlinked item goes to that worker's scheduled list, so it
    /// never runs concurrently with itself. Returns false if <paramref name="self"/> may run it. Under the lock.
    /// </summary>
    public bool HandToExecutingWorker(WorkStruct work, Worker self)
    {
        var collision = FindWorkerExecuting(work);
        if (collision is null || ReferenceEquals(collision, self))
        {
            return false;
        }
        Append(work, ref collision.ScheduledHead, ref collision.ScheduledTail);
        work.ListKind = WorkListKind.Scheduled;
        work.ScheduledOn = collision;
        work.QueuedPool = this;
        return true;
    }

    // ---- the worklist ----

    /// <summary>Appends an active item to the worklist (insert_work).</summary>
    public void LinkWorklist(WorkStruct work)
    {
        AssertLocked();
        Append(work, ref Hot.WorkHead, ref Hot.WorkTail);
        work.ListKind = WorkListKind.Worklist;
        if (!ReferenceEquals(work.QueuedPool, this))
        {
            work.QueuedPool = this; // PERF: a spliced item already names this pool: no write barrier
        }
    }

    /// <summary>Unlinks a linked item from whichever list holds it (worklist, its pwq's inactive list, a worker's scheduled list).</summary>
    public void Unlink(WorkStruct work)
    {
        AssertLocked();
        Debug.Assert(ReferenceEquals(work.QueuedPool, this), "unlinking an item linked on another pool");
        switch (work.ListKind)
        {
            case WorkListKind.Worklist:
                Unlink(work, ref Hot.WorkHead, ref Hot.WorkTail);
                break;
            case WorkListKind.Inactive:
                Unlink(work, ref work.Pwq!.InactiveHead, ref work.Pwq.InactiveTail);
                break;
            case WorkListKind.Scheduled:
                Unlink(work, ref work.ScheduledOn!.ScheduledHead, ref work.ScheduledOn.ScheduledTail);
                work.ScheduledOn = null;
                break;
            default:
                Debug.Fail("unlinking an item on no list");
                break;
        }
        work.ListKind = WorkListKind.None;
        work.QueuedPool = null;
    }

    internal static void Unlink(WorkStruct work, ref WorkStruct? head, ref WorkStruct? tail)
    {
        // PERF: the head, the worker's case for every item: the stores of null need no GC write barrier.
        if (work.Prev is null && work.Next is { } second)
        {
            head = second;
            second.Prev = null;
            work.Next = null;
            return;
        }
        if (work.Prev is null)
        {
            head = work.Next;
        }
        else
        {
            work.Prev.Next = work.Next;
        }
        if (work.Next is null)
        {
            tail = work.Prev;
        }
        else
        {
            work.Next.Prev = work.Prev;
        }
        work.Next = work.Prev = null;
    }

    internal static void Append(WorkStruct work, ref WorkStruct? head, ref WorkStruct? tail)
    {
        work.Next = null;
        work.Prev = tail;
        if (tail is null)
        {
            head = work;
        }
        else
        {
            tail.Next = work;
        }
        tail = work;
    }

    /// <summary>
    /// The steal half of try_to_grab_pending(): if <paramref name="work"/> is still linked here, unlink
    /// it and account it as skipped (its flush color and max_active slot released). False if a worker
    /// took it first (or it moved): the caller retries.
    /// </summary>
    public bool TryStealQueued(WorkStruct work, long onlySeq = -1)
    {
        Worker? toWake;
        Lock();
        SpliceIncoming();
        // Not linked here, or its queuer has set QueuedPool but not pushed it yet: the caller retries.
        // With onlySeq, only that instance: a queuer taking back its own push must not take a later
        // instance that someone else queued after its own one ran.
        if (!ReferenceEquals(work.QueuedPool, this) || work.ListKind == WorkListKind.Incoming || (onlySeq >= 0 && work.Seq != onlySeq))
        {
            Unlock();
            return false;
        }
        bool active = work.ListKind != WorkListKind.Inactive;
        Unlink(work);
        var pwq = work.Pwq!;
        pwq.DecInFlight(work.Color, active);
        Volatile.Write(ref work.SkippedSeq, work.Seq);
        toWake = KickPool(); // an inactive item may have been activated in its place
        bool raise = IsBh && NeedMoreWorker;
        Unlock();
        WakeKicked(toWake);
        if (raise)
        {
            WorkqueueSubsystem.RaiseBh(this);
        }
        Sub.NotifyWaiters();
        return true;
    }

    // ---- idle list ----

    /// <summary>worker_enter_idle(): at the head (most recently idle first).</summary>
    public void EnterIdle(Worker worker)
    {
        AssertLocked();
        Debug.Assert(!worker.IsIdle, "worker already idle");
        worker.Flags |= Worker.FlagIdle;
        worker.IdleSince = Stopwatch.GetTimestamp();
        worker.IdlePrev = null;
        worker.IdleNext = Hot.IdleHead;
        if (Hot.IdleHead is null)
        {
            Hot.IdleTail = worker;
        }
        else
        {
            Hot.IdleHead.IdlePrev = worker;
        }
        Hot.IdleHead = worker;
        Hot.NrIdle++;
        UpdateRunnable(worker);
    }

    /// <summary>worker_leave_idle().</summary>
    public void LeaveIdle(Worker worker)
    {
        AssertLocked();
        if (!worker.IsIdle)
        {
            return;
        }
        worker.Flags &= ~Worker.FlagIdle;
        if (worker.IdlePrev is null)
        {
            Hot.IdleHead = worker.IdleNext;
        }
        else
        {
            worker.IdlePrev.IdleNext = worker.IdleNext;
        }
        if (worker.IdleNext is null)
        {
            Hot.IdleTail = worker.IdlePrev;
        }
        else
        {
            worker.IdleNext.IdlePrev = worker.IdlePrev;
        }
        worker.IdleNext = worker.IdlePrev = null;
        Hot.NrIdle--;
        if (ReferenceEquals(Hot.Kicked, worker))
        {
            Hot.Kicked = null;
        }
        UpdateRunnable(worker);
    }

    // ---- the run queues of the pool's cores (what idle polls on those cores give way to) ----

    /// <summary>
    /// After a kick named <paramref name="kicked"/> in place of <paramref name="previous"/>: the kicked
    /// worker is runnable from now (the waker's wake_up_process()), before it runs; a previous one that
    /// is still idle was not woken after all (it goes back to sleep on seeing the kick is not its own).
    /// </summary>
    private void SetKicked(Worker? previous, Worker kicked)
    {
        if (previous is not null && !ReferenceEquals(previous, kicked))
        {
            UpdateRunnable(previous);
        }
        UpdateRunnable(kicked);
    }

    /// <summary>
    /// Puts <paramref name="worker"/> on its cores' run queues, or takes it off, to match its state: a
    /// worker is runnable from the kick that names it (or its creation) until it idles or exits, except
    /// while it blocks (in a runtime primitive, or outside the runtime as the ticker saw it). Called under
    /// the lock after each of those changes; a queue is touched only when the answer changes. Rescuers
    /// are left out (<see cref="CoreRunQueue"/>). PERF: an unbound pool updates one queue per core of its
    /// mask, at a worker's wake-up and idling, not per item.
    /// </summary>
    public void UpdateRunnable(Worker worker)
    {
        AssertLocked();
        bool runnable = !worker.Exited &&
            (!worker.IsIdle || ReferenceEquals(Hot.Kicked, worker)) &&
            !worker.IsSleeping &&
            (worker.Flags & Worker.FlagBlockedOutside) == 0;
        if (runnable == worker.OnRunQueue || worker.RescueWq is not null)
        {
            return;
        }
        worker.OnRunQueue = runnable;
        foreach (var queue in RunQueues)
        {
            if (runnable)
            {
                queue.Enqueue();
            }
            else if (queue.DequeueDeferred())
            {
                Hot.RepollOnUnlock = 1; // kicked by Unlock, not under the lock
            }
        }
    }

    /// <summary>A task is runnable on one of the pool's cores: an idle worker's poll gives way to it.</summary>
    public bool RunnableOnMyCores()
    {
        foreach (var queue in RunQueues)
        {
            if (queue.HasRunnable)
            {
                return true;
            }
        }
        return false;
    }

    // ---- workers ----

    /// <summary>A copy of the attached workers, for shutdown's report, which may read the pool without its lock.</summary>
    public Worker[] WorkersUnchecked
    {
        get
        {
            try
            {
                return _workers.ToArray();
            }
            catch (ArgumentException)
            {
                return []; // caught mid-update by a thread left behind: its items are still on the lists read apart
            }
        }
    }

    /// <summary>The attached workers, for iteration under the lock (no copy).</summary>
    public List<Worker> WorkersLocked
    {
        get
        {
            AssertLocked();
            return _workers;
        }
    }

    /// <summary>Workers attached now (a copy, for the ticker, shutdown and reports).</summary>
    public Worker[] SnapshotWorkers()
    {
        Lock();
        var copy = _workers.ToArray();
        Unlock();
        return copy;
    }

    /// <summary>
    /// create_worker(): a new worker, attached and idle, its thread started. False when creation is held
    /// back (the test hook that stands in for the kernel's failing kthread_create) or shutdown began.
    /// Called without the pool lock.
    /// </summary>
    public bool CreateWorker()
    {
        if (Sub.HoldWorkerCreation || Sub.IsStopping)
        {
            return false;
        }
        Lock();
        int id = _ids.IndexOf(false);
        if (id < 0)
        {
            id = _ids.Count;
            _ids.Add(true);
        }
        else
        {
            _ids[id] = true;
        }
        var worker = new Worker(this, id, $"{NamePrefix}{id}{(HighPri && !IsUnbound ? "H" : "")}", bh: false);
        _workers.Add(worker);
        Hot.NrWorkers++;
        CreationRequested = false;
        EnterIdle(worker);
        // A fresh worker starts as if kicked: it looks for work at once (the kernel wakes it).
        SetKicked(Interlocked.Exchange(ref Hot.Kicked, worker), worker);
        Unlock();
        worker.Start();
        Sub.WorkerCreated();
        return true;
    }

    /// <summary>Detaches an exiting worker (worker_detach_from_pool) and frees its id. Under the lock.</summary>
    public void Detach(Worker worker)
    {
        AssertLocked();
        _workers.Remove(worker);
        _ids[worker.Id] = false;
        worker.Exited = true;
        UpdateRunnable(worker);
    }

    /// <summary>
    /// idle_cull_fn(): while there are too many idle workers, the one idle longest goes if it has been idle
    /// for <paramref name="timeoutTicks"/>. Returns how long until the next one could go (0: none idle in excess).
    /// </summary>
    public long CullIdle(long now, long timeoutTicks, List<Worker> dying)
    {
        Lock();
        long next = 0;
        while (TooManyWorkers && Hot.IdleTail is { } oldest)
        {
            long expires = oldest.IdleSince + timeoutTicks;
            if (now < expires)
            {
                next = expires - now;
                break;
            }
            LeaveIdle(oldest);
            Hot.NrWorkers--;
            oldest.Flags |= Worker.FlagDie;
            dying.Add(oldest);
        }
        Unlock();
        return next;
    }

    /// <summary>Marks every worker to exit (shutdown) and returns them to wake and join.</summary>
    public Worker[] KillAll()
    {
        Lock();
        var all = _workers.ToArray();
        foreach (var worker in all)
        {
            LeaveIdle(worker);
            worker.Flags |= Worker.FlagDie;
        }
        Unlock();
        return all;
    }

    /// <summary>Nothing queued or running here: shutdown's quiescence check. Under the lock.</summary>
    public bool IsQuiescentLocked()
    {
        SpliceIncoming();
        if (Hot.WorkHead is not null || Rescuers.Count != 0)
        {
            return false;
        }
        foreach (var worker in _workers)
        {
            if (worker.CurrentWork is not null || worker.ScheduledHead is not null)
            {
                return false;
            }
        }
        return BhWorker is not { CurrentWork: not null };
    }

    /// <summary>(workers, idle) now, for tests and reports.</summary>
    public (int Workers, int Idle) Counts
    {
        get
        {
            Lock();
            var counts = (Hot.NrWorkers, Hot.NrIdle);
            Unlock();
            return counts;
        }
    }

    public string Describe()
    {
        string cpus = Cpu is not null ? Cpu.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) : Attrs!.DescribeCpus(Sub.Runtime.Cpus.Count);
        return $"pool {Id} (cpus={cpus}{(IsBh ? " bh" : "")} nice={Nice})";
    }

    /// <summary>In-flight and pending item names, for the stall watchdog. Under the lock.</summary>
    public string DescribeWorkLocked(int max)
    {
        var sb = new StringBuilder();
        sb.Append("in-flight: ");
        int n = 0;
        IEnumerable<Worker> busy = BhWorker is not null ? [BhWorker] : _workers;
        if (Rescuers.Count != 0)
        {
            busy = busy.Concat(Rescuers);
        }
        foreach (var worker in busy)
        {
            if (worker.CurrentWork is { } w)
            {
                sb.Append(n++ == 0 ? "" : ", ").Append(worker.Name).Append(" '").Append(w.Name).Append('\'');
            }
        }
        if (n == 0)
        {
            sb.Append("none");
        }
        sb.Append("; pending: ");
        n = 0;
        for (var w = Hot.WorkHead; w is not null && n < max; w = w.Next)
        {
            sb.Append(n++ == 0 ? "'" : ", '").Append(w.Name).Append('\'');
        }
        if (n == 0)
        {
            sb.Append("none");
        }
        else if (n == max && Hot.WorkTail is not null)
        {
            sb.Append(", ...");
        }
        return sb.ToString();
    }
}
