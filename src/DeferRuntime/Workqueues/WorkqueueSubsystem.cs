using System.Diagnostics;
using System.Globalization;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Platform;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Workqueues;

/// <summary>
/// The runtime's workqueue state (the kernel's file-scope globals of kernel/workqueue.c): the per-CPU and
/// unbound pools, the workqueue list, the system workqueues, the flushers' wait queue, the freeze state,
/// the bh softirq hook and the wq ticker thread. One per <see cref="Runtime"/>.
/// </summary>
/// <remarks>
/// Field legend: <c>I:</c> set at creation; <c>L:</c> under <c>_lock</c> (the kernel's wq_pool_mutex);
/// <c>A:</c> Interlocked/volatile. Lock order: <c>_lock</c>, then a workqueue's flush lock, then a pool
/// lock, then <see cref="MaydayLock"/>.
/// </remarks>
internal sealed partial class WorkqueueSubsystem
{
    /// <summary>BH_WORKER_RESTARTS: items a bh pool runs per softirq invocation before re-raising.</summary>
    private const int BhWorkerRestarts = 10;

    /// <summary>Pools per CPU: normal, high priority, bh, bh high priority.</summary>
    private const int PoolsPerCpu = 4;

    private readonly Lock _lock = new();
    private readonly WorkerPool[] _cpuPools; // I: CPU N's pools at N * PoolsPerCpu + kind
    private readonly Dictionary<string, WorkerPool> _unboundPools = new(StringComparer.Ordinal); // L
    private readonly List<Workqueue> _workqueues = []; // L
    private WorkerPool[] _allPools; // L (written), read lock-free by the ticker and shutdown
    private readonly WaitQueue _waiters = new(); // flushers, cancelers, freezers
    private int _waiting; // A: threads in WaitFor: completions wake _waiters only when non-zero
    private bool _frozen; // L
    private int _stopping; // A: shutdown stops the workers (no more creation)
    private int _stopped; // A: workers stopped; queueing is refused
    private long _armedDelayed; // A: delayed items whose timer is armed
    private long _abandonedAtStop; // A: delayed items whose timer fired once Stop had begun (refused, never run)
    private long _abandonedDelayed = -1; // written once at shutdown
    private readonly long _bhBudgetTicks = Stopwatch.Frequency * 2 / 1000; // BH_WORKER_JIFFIES: 2 ms

    public WorkqueueSubsystem(Runtime runtime)
    {
        Runtime = runtime;
        var options = runtime.Options;
        WorkerPollTicks = options.IdlePolicy == IdlePolicy.Halt ? 0 : Ticks(options.WorkerPollWindow);
        int cpus = runtime.Cpus.Count;
        _cpuPools = new WorkerPool[cpus * PoolsPerCpu];
        for (int cpu = 0; cpu < cpus; cpu++)
        {
            var vcpu = runtime.Cpus[cpu];
            int[] core = [vcpu.Core];
            for (int kind = 0; kind < PoolsPerCpu; kind++)
            {
                _cpuPools[(cpu * PoolsPerCpu) + kind] = new WorkerPool(this, (cpu * PoolsPerCpu) + kind, vcpu, highPri: (kind & 1) != 0, bh: kind >= 2, attrs: null, vcpu, core);
            }
        }
        _allPools = _cpuPools.ToArray();

        SystemWq = Alloc("events", WorkqueueFlags.None, 0, null, ordered: false, system: true);
        SystemHighpriWq = Alloc("events_highpri", WorkqueueFlags.HighPri, 0, null, ordered: false, system: true);
        SystemLongWq = Alloc("events_long", WorkqueueFlags.None, 0, null, ordered: false, system: true);
        SystemUnboundWq = Alloc("events_unbound", WorkqueueFlags.Unbound, Workqueue.MaxMaxActive, null, ordered: false, system: true);
        SystemFreezableWq = Alloc("events_freezable", WorkqueueFlags.Freezable, 0, null, ordered: false, system: true);
        SystemBhWq = Alloc("events_bh", WorkqueueFlags.Bh, 0, null, ordered: false, system: true);
        SystemBhHighpriWq = Alloc("events_bh_highpri", WorkqueueFlags.Bh | WorkqueueFlags.HighPri, 0, null, ordered: false, system: true);
    }

    public Runtime Runtime { get; } // I

    public long WorkerPollTicks { get; } // I: how long an idle worker polls before it parks (RuntimeOptions.WorkerPollWindow; 0 under IdlePolicy.Halt)

    public Workqueue SystemWq { get; }
    public Workqueue SystemHighpriWq { get; }
    public Workqueue SystemLongWq { get; }
    public Workqueue SystemUnboundWq { get; }
    public Workqueue SystemFreezableWq { get; }
    public Workqueue SystemBhWq { get; }
    public Workqueue SystemBhHighpriWq { get; }

    /// <summary>Test hook: makes create_worker() fail, as a kthread_create() under memory pressure would (rescuer tests).</summary>
    public volatile bool HoldWorkerCreation;

    /// <summary>
    /// Test hook: runs in queue_delayed_work() and mod_delayed_work() between the CAS that takes PENDING
    /// and the arming of the timer, so a test can hold that window open (null, one field read, otherwise).
    /// </summary>
    public volatile Action<DelayedWork>? ArmingWindowHook;

    /// <summary>
    /// Test hook: runs in disable_work() and its variants between the bump of the disable count and the
    /// grab of PENDING (for an item last queued on this runtime), so a test can hold that window open.
    /// </summary>
    public volatile Action<WorkStruct>? DisableWindowHook;

    /// <summary>Serializes mayday lists (wq_mayday_lock); taken inside pool locks.</summary>
    public Lock MaydayLock { get; } = new();

    public bool IsStopping => Volatile.Read(ref _stopping) != 0;

    /// <summary>Threads sleeping in <see cref="WaitFor"/> right now (flushers, cancelers, freezers).</summary>
    public int WaiterCount => Volatile.Read(ref _waiting);

    public bool IsStopped => Volatile.Read(ref _stopped) != 0;

    /// <summary>The pools, for the ticker and reports.</summary>
    public WorkerPool[] Pools => Volatile.Read(ref _allPools);

    public WorkerPool CpuPool(int cpu, bool highPri, bool bh) => _cpuPools[(cpu * PoolsPerCpu) + (bh ? 2 : 0) + (highPri ? 1 : 0)];

    /// <summary>CPU time of the kworkers of CPU <paramref name="cpu"/>'s normal and high-priority pools, in ns; -1 without per-thread clocks.</summary>
    public long BoundWorkerCpuNs(int cpu) => WorkerCpuNs([CpuPool(cpu, false, false), CpuPool(cpu, true, false)]);

    /// <summary>CPU time of every unbound pool's kworkers, in ns; -1 without per-thread clocks.</summary>
    public long UnboundWorkerCpuNs() => WorkerCpuNs(Pools.Where(p => p.IsUnbound));

    private static long WorkerCpuNs(IEnumerable<WorkerPool> pools)
    {
        if (ThreadCpuClock.Create() == ThreadCpuClock.None)
        {
            return -1;
        }
        long sum = 0;
        foreach (var pool in pools)
        {
            sum += Interlocked.Read(ref pool.RetiredCpuNs);
            foreach (var worker in pool.SnapshotWorkers())
            {
                // A worker between its start and its clock, or one exiting now, reads -1: left out.
                sum += Math.Max(0, ThreadCpuClock.ReadNs(Volatile.Read(ref worker.CpuClock)));
            }
        }
        return sum;
    }

    // ---- allocation ----

    /// <summary>alloc_workqueue() with the kernel's validation, as exceptions.</summary>
    public Workqueue Alloc(string name, WorkqueueFlags flags, int maxActive, WorkqueueAttrs? attrs, bool ordered, bool system)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        string caller = ordered ? "alloc_ordered_workqueue()" : "alloc_workqueue()";
        const WorkqueueFlags known = WorkqueueFlags.Bh | WorkqueueFlags.Unbound | WorkqueueFlags.Freezable | WorkqueueFlags.MemReclaim | WorkqueueFlags.HighPri | WorkqueueFlags.CpuIntensive;
        if ((flags & ~known) != 0)
        {
            throw new ArgumentException($"{caller}: unknown flags 0x{(int)(flags & ~known):x} for workqueue '{name}'.", nameof(flags));
        }
        if ((flags & WorkqueueFlags.Bh) != 0)
        {
            // __WQ_BH_ALLOWS: bh workqueues run in softirq context, so nothing about threads applies.
            var bad = flags & ~(WorkqueueFlags.Bh | WorkqueueFlags.HighPri);
            if (bad != 0)
            {
                throw new ArgumentException($"{caller}: WQ_BH cannot be combined with {bad} (workqueue '{name}'): bh work runs in softirq context on the queueing CPU, with no worker threads, rescuer or freezing.", nameof(flags));
            }
            if (maxActive != 0)
            {
                throw new ArgumentException($"{caller}: WQ_BH takes no max_active (workqueue '{name}' asked for {maxActive}): a bh pool runs its items one after another in softirq context.", nameof(maxActive));
            }
            if (ordered)
            {
                throw new ArgumentException($"{caller}: ordered bh workqueues are not supported (workqueue '{name}').", nameof(flags));
            }
        }
        if (attrs is not null && (flags & WorkqueueFlags.Unbound) == 0)
        {
            throw new ArgumentException($"{caller}: attributes (nice, CPU mask) apply to unbound workqueues only; pass WorkqueueFlags.Unbound for '{name}'.", nameof(attrs));
        }
        attrs?.Resolve(Runtime.Cpus.Count);
        CheckMaxActive(maxActive, allowDefault: true, caller);
        if (maxActive == 0)
        {
            maxActive = Workqueue.DefaultMaxActive;
        }

        Workqueue wq;
        lock (_lock)
        {
            if (IsStopping)
            {
                throw new ObjectDisposedException(nameof(Runtime), $"{caller}: the runtime has been shut down.");
            }
            wq = new Workqueue(this, name, flags, ordered ? 1 : maxActive, ordered, system, attrs, _frozen);
            _workqueues.Add(wq);
        }
        wq.Rescuer?.Start();
        return wq;
    }

    /// <summary>wq_clamp_max_active(), strict: 1 to WQ_MAX_ACTIVE (0 for the default where allowed).</summary>
    public static void CheckMaxActive(int maxActive, bool allowDefault, string caller)
    {
        if (maxActive > Workqueue.MaxMaxActive || maxActive < (allowDefault ? 0 : 1))
        {
            throw new ArgumentOutOfRangeException(nameof(maxActive), maxActive,
                $"{caller}: max_active must be {(allowDefault ? "0 (the default, 1024) or " : "")}1 to {Workqueue.MaxMaxActive} (WQ_MAX_ACTIVE).");
        }
    }

    public void CheckCpu(int cpu, string caller)
    {
        if ((uint)cpu >= (uint)Runtime.Cpus.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(cpu), cpu, $"{caller}: CPU {cpu} does not exist; this runtime has CPUs 0 to {Runtime.Cpus.Count - 1}.");
        }
    }

    /// <summary>get_unbound_pool(): the pool for these attributes, created on first use.</summary>
    public WorkerPool GetUnboundPool(WorkqueueAttrs attrs)
    {
        int[] cpus = attrs.Resolve(Runtime.Cpus.Count);
        string key = $"{attrs.Nice}:{string.Join(",", cpus.Select(c => c.ToString(CultureInfo.InvariantCulture)))}";
        lock (_lock)
        {
            if (!_unboundPools.TryGetValue(key, out var pool))
            {
                int[] cores = cpus.Select(c => Runtime.Cpus[c].Core).Distinct().Order().ToArray();
                pool = new WorkerPool(this, _allPools.Length, cpu: null, highPri: attrs.Nice < 0, bh: false, attrs, Runtime.Cpus[cpus[0]], cores);
                _unboundPools.Add(key, pool);
                Volatile.Write(ref _allPools, [.. _allPools, pool]);
            }
            return pool;
        }
    }

    public void Unregister(Workqueue wq)
    {
        lock (_lock)
        {
            _workqueues.Remove(wq);
        }
    }

    public Workqueue[] SnapshotWorkqueues()
    {
        lock (_lock)
        {
            return _workqueues.ToArray();
        }
    }

    // ---- waiting for work to finish ----

    /// <summary>
    /// Sleeps until <paramref name="condition"/> holds; woken by every completion, steal and flush-color
    /// retirement while someone waits. Sleeps in the runtime's wait queue, so a worker that waits here is
    /// not counted running (concurrency management). Gives up with an exception if the runtime dies.
    /// </summary>
    public void WaitFor<T>(string caller, T state, Func<T, bool> condition)
    {
        if (condition(state))
        {
            return;
        }
        Interlocked.Increment(ref _waiting);
        // The waiters' half of an asymmetric Dekker (see NotifyWaiters): after this barrier every other
        // thread's earlier writes are visible here, and every later read of _waiting elsewhere sees us.
        Interlocked.MemoryBarrierProcessWide();
        try
        {
            Func<bool> check = () => condition(state);
            while (!check())
            {
                _waiters.WaitEventTimeout(check, TimeSpan.FromMilliseconds(100));
                Runtime.ThrowIfDead(caller);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    /// <summary>
    /// After a change a waiter may be waiting for (a completion, a steal, a color retired): wake the
    /// waiters if there are any. PERF: one plain read, no fence, on every completion. It is an asymmetric
    /// Dekker: a completer writes its change, then reads _waiting; a waiter increments _waiting, then runs
    /// a process-wide barrier (membarrier(2): every thread passes a full barrier), then evaluates its
    /// condition. A completer whose read missed the increment had its write drained by that barrier, so
    /// the waiter sees it; one that reads after the barrier sees the increment and wakes the waiter. The
    /// rare side (waiters) pays microseconds so that the hot side (completions) pays nothing.
    /// </summary>
    public void NotifyWaiters()
    {
        if (Volatile.Read(ref _waiting) != 0)
        {
            _waiters.WakeUpAll();
            // Async waiters (WorkqueueSubsystem.Async.cs) are counted in _waiting too: only then is this read.
            if (Volatile.Read(ref _asyncWaiting) != 0)
            {
                ScheduleAsyncScan();
            }
        }
    }

    // ---- delayed work ----

    /// <summary>A delayed item's timer was armed.</summary>
    public void DelayedArmed() => Interlocked.Increment(ref _armedDelayed);

    /// <summary>A delayed item's timer fired or was stopped.</summary>
    public void DelayedDisarmed() => Interlocked.Decrement(ref _armedDelayed);

    /// <summary>Delayed items whose timer shutdown left armed (not due yet): never run early. -1 before shutdown.</summary>
    public long AbandonedDelayedWork => Volatile.Read(ref _abandonedDelayed);

    /// <summary>A delayed item's timer fired after shutdown stopped accepting work: it never runs, and is counted with the abandoned.</summary>
    public void DelayedAbandonedAtStop() => Interlocked.Increment(ref _abandonedAtStop);

    /// <summary>Called once the CPUs have stopped: what is still armed now will never fire; what fired during the stop was refused.</summary>
    public void CountAbandonedDelayedWork() => Volatile.Write(ref _abandonedDelayed, Volatile.Read(ref _armedDelayed) + Volatile.Read(ref _abandonedAtStop));

    // ---- rescuers ----

    /// <summary>send_mayday(): asks <paramref name="pwq"/>'s workqueue's rescuer to run its items on the pool.</summary>
    public void SendMayday(PoolWorkqueue pwq)
    {
        var wq = pwq.Wq;
        if (wq.Rescuer is not { } rescuer)
        {
            return;
        }
        lock (MaydayLock)
        {
            if (!pwq.OnMayday)
            {
                pwq.OnMayday = true;
                pwq.MaydayNext = null;
                if (wq.MaydayTail is null)
                {
                    wq.MaydayHead = pwq;
                }
                else
                {
                    wq.MaydayTail.MaydayNext = pwq;
                }
                wq.MaydayTail = pwq;
            }
        }
        rescuer.Wake();
    }

    // ---- bh workqueues ----

    /// <summary>kick_bh_pool(): raises the pool's softirq on its CPU so a bh "worker" runs its items.</summary>
    public static void RaiseBh(WorkerPool pool)
    {
        var cpu = pool.Cpu!;
        int nr = pool.HighPri ? (int)SoftirqVector.Hi : (int)SoftirqVector.Tasklet;
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu, cpu))
        {
            if (ctx.InSoftirqOrBhDisabled)
            {
                // This thread holds the CPU's bh gate: its own pending word, no atomics; the softirq
                // restart or its local_bh_enable() runs it.
                cpu.RaiseHolderLocal(nr);
                return;
            }
            if (ctx.InHardirq)
            {
                cpu.OrSoftirqPending(nr); // irq exit runs it
                return;
            }
        }
        cpu.RaiseAndKick(nr);
    }

    /// <summary>
    /// workqueue_softirq_action() / bh_worker(): runs CPU <paramref name="cpu"/>'s bh pool from the TASKLET
    /// (or HI) softirq, before its tasklets, at most BH_WORKER_RESTARTS items or 2 ms; what is left
    /// re-raises the softirq (so the softirq budget and ksoftirqd take over under a flood).
    /// </summary>
    public void RunBh(VirtualCpu cpu, ThreadContext ctx, bool hi)
    {
        var pool = _cpuPools[(cpu.Id * PoolsPerCpu) + (hi ? 3 : 2)];
        // PERF: a racy peek: a queuer links the item, then raises the softirq.
        if (Volatile.Read(ref pool.Hot.WorkHead) is null)
        {
            return;
        }
        var worker = pool.BhWorker!;
        var saved = Worker.SwapCurrent(worker);
        bool more;
        try
        {
            pool.Lock();
            more = false;
            if (pool.NeedMoreWorker)
            {
                worker.ClearFlags(Worker.FlagPrep);
                int restarts = BhWorkerRestarts;
                long start = Stopwatch.GetTimestamp();
                do
                {
                    var work = pool.Hot.WorkHead;
                    if (work is null)
                    {
                        break;
                    }
                    worker.AssignAndRun(work, ctx);
                }
                while (pool.KeepWorking && --restarts > 0 && Stopwatch.GetTimestamp() - start < _bhBudgetTicks && !Runtime.IsPanicked);
                worker.SetFlags(Worker.FlagPrep);
                more = pool.NeedMoreWorker;
            }
            pool.Unlock();
        }
        finally
        {
            Worker.SwapCurrent(saved);
        }
        if (more)
        {
            cpu.RaiseHolderLocal(hi ? (int)SoftirqVector.Hi : (int)SoftirqVector.Tasklet);
        }
    }

    // ---- freezing ----

    /// <summary>freeze_workqueues_begin() + waiting for freeze_workqueues_busy() to turn false.</summary>
    public void Freeze()
    {
        MightSleep.Check("freeze_workqueues_begin()");
        if (Worker.Current is { CurrentPwq.Wq: { IsFreezable: true } own, CurrentWork: { } work })
        {
            throw new InvalidOperationException(
                $"freeze_workqueues_begin() from work item '{work.Name}' of freezable workqueue '{own.Name}': freezing waits for that very item to finish, a deadlock.");
        }
        Workqueue[] wqs;
        lock (_lock)
        {
            _frozen = true;
            wqs = _workqueues.Where(w => w.IsFreezable).ToArray();
            foreach (var wq in wqs)
            {
                foreach (var pwq in wq.Pwqs)
                {
                    pwq.ApplyLimits(pwq.MaxActive, frozen: true); // what was queued before stays active
                }
            }
        }
        WaitFor("freeze_workqueues_begin()", wqs, static all => all.All(wq => wq.Pwqs.All(p => Volatile.Read(ref p.NrActive) == 0)));
    }

    /// <summary>
    /// workqueue_set_max_active()'s update, under the lock freeze and thaw hold (the kernel's wq-&gt;mutex
    /// and the freezing state read under it): neither can overwrite the other's half of a pwq's limits.
    /// </summary>
    internal void ApplyMaxActive(Workqueue wq, int maxActive)
    {
        lock (_lock)
        {
            wq.MaxActive = maxActive;
            bool frozen = _frozen && wq.IsFreezable;
            foreach (var pwq in wq.Pwqs)
            {
                pwq.ApplyLimits(maxActive, frozen);
            }
        }
    }

    /// <summary>thaw_workqueues(): frozen items become active again, oldest first.</summary>
    public void Thaw()
    {
        lock (_lock)
        {
            if (!_frozen)
            {
                return;
            }
            _frozen = false;
            foreach (var wq in _workqueues.Where(w => w.IsFreezable))
            {
                foreach (var pwq in wq.Pwqs)
                {
                    pwq.ApplyLimits(pwq.MaxActive, frozen: false);
                }
            }
        }
    }

    public bool IsFrozen
    {
        get
        {
            lock (_lock)
            {
                return _frozen;
            }
        }
    }

    // ---- shutdown ----

    /// <summary>Nothing in flight on any workqueue (inactive and running items included). Takes pool locks.</summary>
    public bool IsQuiescent
    {
        get
        {
            foreach (var wq in SnapshotWorkqueues())
            {
                if (!wq.IsEmpty())
                {
                    return false;
                }
            }
            return true;
        }
    }

    /// <summary>Items finished on every pool: shutdown compares sums to prove nothing ran during its check.</summary>
    public long CompletionSum
    {
        get
        {
            long sum = 0;
            foreach (var pool in Pools)
            {
                sum += Volatile.Read(ref pool.Completions);
            }
            return sum;
        }
    }

    /// <summary>What is still in flight, for shutdown's timeout report.</summary>
    public string DescribeInFlight()
    {
        var parts = new List<string>();
        foreach (var wq in SnapshotWorkqueues())
        {
            int n = wq.Pwqs.Sum(p => p.InFlightTotal);
            if (n != 0)
            {
                parts.Add($"workqueue '{wq.Name}': {n} item(s) in flight{(wq.Pwqs.Any(p => p.Frozen) ? " (frozen)" : "")}");
            }
        }
        return string.Join("; ", parts);
    }

    /// <summary>
    /// The first step of stopping the workqueues after the runtime's drain (shutdown runs the three steps,
    /// then joins the threads with its bound, so an item stuck forever cannot hang it): nothing is linked
    /// from here on (queueing checks the flag under the pool lock, or after its lock-free push). False if
    /// another stop began first.
    /// </summary>
    public bool BeginStop() => Interlocked.Exchange(ref _stopping, 1) == 0;

    /// <summary>
    /// The second, polled by the caller: what was linked between the runtime's drain and the flag (a delayed
    /// item whose timer fired just then) still runs, on workers still alive, until <paramref name="workUntil"/>,
    /// so nothing accepted is dropped.
    /// </summary>
    public bool StillWorking(long workUntil) => !IsQuiescent && Stopwatch.GetTimestamp() < workUntil && !Runtime.IsPanicked;

    /// <summary>The last: tells the ticker, every worker and every rescuer to exit, adding their threads to <paramref name="threads"/>.</summary>
    public void FinishStop(List<StoppingThread> threads)
    {
        StopTicker(threads);
        var workers = new List<Worker>();
        foreach (var pool in Pools)
        {
            workers.AddRange(pool.KillAll());
        }
        foreach (var worker in workers)
        {
            worker.Poke();
            if (worker.Thread is { } thread)
            {
                threads.Add(new StoppingThread(thread, () => Volatile.Read(ref worker.Context)));
            }
        }
        foreach (var wq in SnapshotWorkqueues())
        {
            if (wq.Rescuer is { } rescuer)
            {
                rescuer.BeginStop();
                if (rescuer.Thread is { } thread)
                {
                    threads.Add(new StoppingThread(thread, () => rescuer.Context));
                }
            }
        }
        Volatile.Write(ref _stopped, 1);
        // Awaited flushes and cancels: what holds now completes them; the rest never will.
        CloseAsyncWaiters();
    }

    /// <summary>Threads of this subsystem the calling thread might be (Dispose from one of them is refused).</summary>
    public bool IsOwnThread(Thread thread) => ReferenceEquals(thread, _ticker);
}
