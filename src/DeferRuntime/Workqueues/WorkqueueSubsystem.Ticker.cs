using System.Diagnostics;
using DeferRuntime.Cpus;
using DeferRuntime.Platform;

namespace DeferRuntime.Workqueues;

// The wq ticker thread: what the kernel does from timers and the scheduler tick, in one thread that ticks
// every millisecond while any pool is busy and parks otherwise (until the next idle worker could retire).
//   - kthreadd: creates the first worker of a pool on its first use;
//   - wq_worker_tick(): a worker running one item for the cpu-intensive threshold (10 ms) without
//     sleeping is marked CPU_INTENSIVE, stops counting in nr_running, and its pool is kicked; one blocked
//     in the OS outside the runtime's primitives is counted out the same way (the scheduler hook's job);
//   - pool_mayday_timeout(): a pool whose manager has failed to create a worker for MAYDAY_INITIAL_TIMEOUT
//     (10 ms) sends mayday for every waiting item of a MemReclaim workqueue, then every MAYDAY_INTERVAL;
//   - idle_worker_timeout(): idle workers beyond two (too_many_workers) retire after the idle timeout;
//   - wq_watchdog_timer_fn(): a pool with waiting items that started none for the threshold is reported.
internal sealed partial class WorkqueueSubsystem
{
    /// <summary>The ticker's period: 1 ms, in Stopwatch ticks.</summary>
    private static readonly long TickTicks = Stopwatch.Frequency / 1000;

    /// <summary>Idle ticks before the ticker parks: 10 ms of hysteresis.</summary>
    private const int LingerTicks = 10;

    /// <summary>CPU time a worker may use over one tick and still read as blocked (the /proc read's own noise, wake-ups).</summary>
    private const long BlockedCpuSlackNs = 50_000;

    private readonly Parker _tickerParker = new();
    private Thread? _ticker;
    private int _tickerIdle; // A: 1 while the ticker parks with no pool busy
    private volatile bool _tickerExit;
    private long _tickerLooks;

    /// <summary>Passes the ticker has made over the pools since boot (tests wait on it instead of on time).</summary>
    public long TickerLooks => Volatile.Read(ref _tickerLooks);

    /// <summary>Starts the ticker thread (parked until a pool needs it); called once at boot.</summary>
    public void StartTicker()
    {
        _ticker = new Thread(TickerMain)
        {
            Name = "wq-ticker",
            IsBackground = true,
        };
        _ticker.UnsafeStart();
    }

    /// <summary>A pool became busy or needs a worker: make sure the ticker ticks. PERF: one read when it already does.</summary>
    public void WakeTicker()
    {
        if (Volatile.Read(ref _tickerIdle) != 0 && Interlocked.Exchange(ref _tickerIdle, 0) != 0)
        {
            _tickerParker.Unpark();
        }
    }

    /// <summary>A worker was created: the ticker keeps a view of it from the next tick.</summary>
    public void WorkerCreated() => WakeTicker();

    /// <summary>Tells the ticker to exit; shutdown joins it (<paramref name="threads"/>) with its bound.</summary>
    private void StopTicker(List<StoppingThread> threads)
    {
        _tickerExit = true;
        Interlocked.Exchange(ref _tickerIdle, 0);
        _tickerParker.Unpark();
        if (_ticker is not null)
        {
            threads.Add(new StoppingThread(_ticker, static () => null));
        }
    }

    private void TickerMain()
    {
        var options = Runtime.Options;
        long intensive = Ticks(options.WorkqueueCpuIntensiveThreshold);
        long maydayInitial = Stopwatch.Frequency / 100; // MAYDAY_INITIAL_TIMEOUT: HZ / 100
        long maydayInterval = Stopwatch.Frequency / 10; // MAYDAY_INTERVAL: HZ / 10
        long idleTimeout = Ticks(options.WorkqueueIdleTimeout);
        long watchdog = Ticks(options.WorkqueueWatchdogThreshold);
        bool detectBlocked = options.WorkqueueDetectBlockedOutside;
        var dying = new List<Worker>();
        var reports = new List<(int Cpu, string Message)>();
        var suspects = new List<RunStateLook>();
        int idleTicks = 0;
        // The ticker belongs to no CPU: let it run on any core the runtime uses, at the lowest priority
        // the policy allows, so its wake-ups do not preempt a worker on the worker's own core.
        if (options.Pinning)
        {
            _ = ThreadPlacement.PinCurrentThreadToCores(Runtime.Cpus.Select(c => c.Core).Distinct().ToArray());
        }
        if (options.Priorities != PriorityPolicy.None)
        {
            _ = ThreadPlacement.SetNice(19);
        }

        while (!_tickerExit && !Runtime.IsPanicked)
        {
            long now = Stopwatch.GetTimestamp();
            bool busy = false;
            long nextCull = long.MaxValue;
            foreach (var pool in Pools)
            {
                busy |= TickPool(pool, now, intensive, detectBlocked, maydayInitial, maydayInterval, watchdog, reports, suspects);
                long wait = pool.IsBh ? 0 : pool.CullIdle(now, idleTimeout, dying);
                if (wait > 0)
                {
                    nextCull = Math.Min(nextCull, wait);
                }
            }
            foreach (var worker in dying)
            {
                worker.Poke(); // it sees WORKER_DIE, detaches and exits
            }
            dying.Clear();
            Volatile.Write(ref _tickerLooks, _tickerLooks + 1);
            foreach (var (cpu, message) in reports)
            {
                Runtime.ReportWarning(cpu, "workqueue watchdog", message, Diagnostics.FaultKind.WorkqueueStall);
            }
            reports.Clear();

            // Keep ticking a little after the last busy tick (LingerTicks): bursts of work then wake
            // the ticker once, not once per burst.
            if (busy || ++idleTicks < LingerTicks)
            {
                if (busy)
                {
                    idleTicks = 0;
                }
                _tickerParker.Park(TicksToNs(TickTicks));
                continue;
            }
            idleTicks = 0;
            // Announce the idle park, then look again under the pool locks: a worker leaving idle writes
            // its pool under the lock and then reads _tickerIdle, so one of us sees the other.
            Interlocked.Exchange(ref _tickerIdle, 1);
            if (AnyPoolBusy())
            {
                Interlocked.Exchange(ref _tickerIdle, 0);
                continue;
            }
            _tickerParker.Park(nextCull == long.MaxValue ? -1 : TicksToNs(nextCull));
            Interlocked.Exchange(ref _tickerIdle, 0);
        }
    }

    private bool AnyPoolBusy()
    {
        foreach (var pool in Pools)
        {
            pool.Lock();
            bool busy = IsBusy(pool);
            pool.Unlock();
            if (busy)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Waiting items, a worker out of the idle list, a creation request or a rescuer at work. Under the lock.</summary>
    private static bool IsBusy(WorkerPool pool) =>
        pool.Hot.WorkHead is not null || Volatile.Read(ref pool.Queue.Incoming) is not null || pool.Hot.NrWorkers > pool.Hot.NrIdle || pool.CreationRequested || pool.Rescuers.Count != 0;

    /// <summary>One tick of one pool; returns whether it is busy.</summary>
    private bool TickPool(WorkerPool pool, long now, long intensive, bool detectBlocked, long maydayInitial, long maydayInterval, long watchdog, List<(int, string)> reports, List<RunStateLook> suspects)
    {
        Worker? toWake = null;
        bool create = false;
        pool.Lock();
        pool.SpliceIncoming();
        bool busy = IsBusy(pool);
        if (busy)
        {
            create = pool.CreationRequested && pool.Hot.NrWorkers == 0;
            if (!pool.IsUnbound && !pool.IsBh)
            {
                toWake = TickWorkers(pool, now, intensive, detectBlocked, suspects);
            }
            // It spliced what queuers pushed: if nobody counted runs, make sure someone comes for it
            // (a kicked worker on its way is simply kicked again). Defense in depth: the push path's own
            // re-check already guarantees a kick or a running worker.
            toWake ??= pool.KickPool();
            // Mayday when a manager has failed to create a worker for a while, or when the pool's first
            // worker (created by this ticker, the kernel creating it with the pool) has not come: either
            // way work waits with nobody to run it, which is what rescuers are for.
            bool creationStalled = (pool.ManagerActive && now - pool.ManagerSince >= maydayInitial) ||
                (pool.CreationRequested && pool.Hot.NrWorkers == 0 && now - pool.CreationRequestedSince >= maydayInitial);
            if (creationStalled && pool.NeedToCreateWorker && now - pool.LastMayday >= maydayInterval)
            {
                pool.LastMayday = now;
                for (var work = pool.Hot.WorkHead; work is not null; work = work.Next)
                {
                    SendMayday(work.Pwq!);
                }
            }
        }
        // The stall clock starts at the first tick that sees items waiting (the kernel touches
        // watchdog_ts when the worklist becomes non-empty; this keeps the clock off the queue path) and
        // restarts whenever an item starts.
        if (pool.Hot.WorkHead is null || pool.Started != pool.WatchdogStarted || !pool.WatchdogArmed)
        {
            pool.WatchdogStarted = pool.Started;
            pool.WatchdogSince = now;
            pool.WatchdogArmed = pool.Hot.WorkHead is not null;
        }
        else if (watchdog > 0 && now - pool.WatchdogSince >= watchdog)
        {
            double seconds = (now - pool.WatchdogSince) / (double)Stopwatch.Frequency;
            reports.Add((pool.ContextCpu.Id, $"BUG: workqueue lockup - {pool.Describe()} stuck for {seconds:0}s! {pool.DescribeWorkLocked(8)}"));
            pool.WatchdogSince = now; // report again after another threshold, as the kernel's touch does
        }
        pool.Unlock();
        WorkerPool.WakeKicked(toWake);
        if (suspects.Count > 0)
        {
            ApplyRunStates(pool, suspects);
        }
        if (create)
        {
            pool.CreateWorker(); // held back (test hook): the request stays and is retried next tick
        }
        return busy;
    }

    /// <summary>
    /// wq_worker_tick(): a counted worker whose stamp (bumped at each item start and wake-up) has not
    /// moved while it consumed the threshold of CPU time has been running one item without sleeping: mark
    /// it CPU_INTENSIVE, so it stops counting, and kick the pool. CPU time as the kernel's
    /// sum_exec_runtime (a worker that is merely preempted is not cpu-intensive); wall time where the
    /// platform has no per-thread CPU clock.
    /// <para>
    /// Also the first half of what the kernel's scheduler hooks see and a user-space pool cannot: an item
    /// blocked in the OS outside the runtime's primitives (Thread.Sleep, Monitor.Wait, blocking I/O). A
    /// counted worker that used no CPU since the previous look (and took no nap inside a runtime spin-wait,
    /// which is a spin in kernel terms) goes to <paramref name="suspects"/>, as does a counted-out one that
    /// used none either; <see cref="ApplyRunStates"/> reads their OS state with the lock dropped. A
    /// counted-out worker that used CPU runs again: counted again at once (wq_worker_running()).
    /// </para>
    /// </summary>
    private static Worker? TickWorkers(WorkerPool pool, long now, long thresholdTicks, bool detectBlocked, List<RunStateLook> suspects)
    {
        Worker? toWake = null;
        foreach (var worker in pool.WorkersLocked)
        {
            int notRunning = worker.Flags & Worker.NotRunning;
            bool countedOut = notRunning == Worker.FlagBlockedOutside;
            if (worker.CurrentWork is null || worker.IsSleeping || (notRunning != 0 && !countedOut))
            {
                worker.TickStamp = -1;
                worker.BlockedLooks = 0;
                continue;
            }
            long cpuNs = ThreadCpuClock.ReadNs(Volatile.Read(ref worker.CpuClock));
            long stamp = Volatile.Read(ref worker.Stamp);
            if (countedOut)
            {
                if (cpuNs - worker.TickCpuNs >= BlockedCpuSlackNs)
                {
                    Recount(worker);
                }
                else
                {
                    suspects.Add(new RunStateLook(worker, stamp, Recount: true));
                }
                worker.TickCpuNs = cpuNs;
                continue;
            }
            long clock = cpuNs >= 0 ? cpuNs : now;
            long threshold = cpuNs >= 0 ? (long)(thresholdTicks * (1_000_000_000.0 / Stopwatch.Frequency)) : thresholdTicks;
            long naps = worker.Context is { } ctx ? Volatile.Read(ref ctx.SpinWaitNaps) : 0;
            if (stamp != worker.TickStamp)
            {
                worker.TickStamp = stamp;
                worker.TickSince = clock;
                worker.TickCpuNs = cpuNs;
                worker.TickSpinNaps = naps;
                worker.BlockedLooks = 0;
                continue;
            }
            if (detectBlocked && cpuNs >= 0)
            {
                bool idleCpu = cpuNs - worker.TickCpuNs < BlockedCpuSlackNs && naps == worker.TickSpinNaps;
                worker.TickCpuNs = cpuNs;
                worker.TickSpinNaps = naps;
                if (idleCpu)
                {
                    suspects.Add(new RunStateLook(worker, stamp, Recount: false));
                    continue; // it used no CPU: not cpu-intensive either
                }
                worker.BlockedLooks = 0;
            }
            if (clock - worker.TickSince >= threshold)
            {
                worker.SetFlags(Worker.FlagCpuIntensive);
                toWake = pool.KickPool() ?? toWake;
            }
        }
        return toWake;
    }

    /// <summary>
    /// The second half: reads each suspect's OS run state with the pool lock dropped (a pread(2) is far
    /// more than the list and counter updates the pool lock is held for), then, under the lock again and
    /// only if the worker is still on the same item and not sleeping in a runtime primitive: a counted
    /// worker found blocked at two looks at least a tick apart is counted out (wq_worker_sleeping()) and
    /// the pool kicked; a counted-out worker found running or runnable is counted again.
    /// </summary>
    private static void ApplyRunStates(WorkerPool pool, List<RunStateLook> suspects)
    {
        for (int i = 0; i < suspects.Count; i++)
        {
            var look = suspects[i];
            suspects[i] = look with { Blocked = ThreadRunState.IsBlocked(Volatile.Read(ref look.Worker.StatHandle)) };
        }
        long now = Stopwatch.GetTimestamp();
        Worker? toWake = null;
        pool.Lock();
        foreach (var look in suspects)
        {
            var worker = look.Worker;
            if (worker.CurrentWork is null || worker.IsSleeping || Volatile.Read(ref worker.Stamp) != look.Stamp)
            {
                continue; // it moved on meanwhile: the next look starts afresh
            }
            int notRunning = worker.Flags & Worker.NotRunning;
            if (look.Recount)
            {
                if (notRunning == Worker.FlagBlockedOutside && !look.Blocked)
                {
                    Recount(worker);
                }
                continue;
            }
            if (notRunning != 0)
            {
                continue;
            }
            if (!look.Blocked)
            {
                worker.BlockedLooks = 0;
                continue;
            }
            if (worker.BlockedLooks++ == 0)
            {
                worker.BlockedSince = now;
            }
            else if (now - worker.BlockedSince >= TickTicks)
            {
                worker.SetFlags(Worker.FlagBlockedOutside);
                worker.BlockedLooks = 0;
                pool.BlockedOutside++;
                toWake = pool.KickPool() ?? toWake;
            }
        }
        pool.Unlock();
        WorkerPool.WakeKicked(toWake);
        suspects.Clear();
    }

    /// <summary>wq_worker_running() for a worker counted out by the ticker: it counts again, and its cpu-intensive clock restarts.</summary>
    private static void Recount(Worker worker)
    {
        worker.ClearFlags(Worker.FlagBlockedOutside);
        worker.TickStamp = -1;
        worker.BlockedLooks = 0;
    }

    /// <summary>A worker whose OS run state the ticker reads with the pool lock dropped.</summary>
    private readonly record struct RunStateLook(Worker Worker, long Stamp, bool Recount, bool Blocked = false);

    private static long Ticks(TimeSpan span) => span <= TimeSpan.Zero ? 0 : (long)(span.TotalSeconds * Stopwatch.Frequency);

    private static long TicksToNs(long ticks) => (long)(ticks * (1_000_000_000.0 / Stopwatch.Frequency));
}
