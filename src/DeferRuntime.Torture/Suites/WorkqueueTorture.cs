using System.Globalization;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Torture.Harness;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Torture.Suites;

/// <summary>
/// Workqueue torture: storm threads (half bound to CPUs, half of no CPU, all shuffled) queue, queue_on,
/// cancel, cancel_sync, flush_work and flush_workqueue a fixed set of work items (and queue_delayed_work,
/// mod_delayed_work, cancel_delayed_work(_sync) and flush_delayed_work delayed ones) on bound, unbound,
/// ordered, max_active-limited and BH workqueues, while the items requeue themselves, sleep (so
/// concurrency management starts more workers) and, with fault injection, throw. Checks the CMWQ
/// contract: conservation (queued = run + cancelled), no re-entrancy (an item never runs concurrently
/// with itself on its workqueue), max_active per pool_workqueue never exceeded, ordered workqueues run
/// in queueing order, and flushes wait for what was queued before them.
/// </summary>
/// <remarks>
/// <para>Each item belongs to one workqueue. Half of a workqueue's items are cancelled by the storm and
/// never flushed, the other half flushed and never cancelled: a flush check reads the item's accepted
/// count before the call and its completed count after, and a cancel of the same item by another thread
/// between the two would make that comparison meaningless.</para>
/// <para>Counters are taken around the runtime's own bookkeeping, never inside it: accepted is counted
/// after queue returns true (so it is a lower bound of what was queued before a flush), a run is counted
/// concurrent from just after it starts to just before it returns (so the count seen is at most the
/// runtime's active count): every check is sound without timing.</para>
/// <para>Ordering: queueing on the ordered workqueue and numbering the accepted instance happen under one
/// lock, as do cancelling (which drops the pending instance's number) and the function's taking of its
/// own number, so the numbers are the queueing order of the instances that run; runs must see them
/// increase. A function with no number left (a run of an instance never accepted) counts as out of order.</para>
/// </remarks>
internal sealed class WorkqueueTorture : IStormTest<WorkqueueTortureResult>
{
    private const int ItemsPerQueue = 8;
    private const int FirstDelayed = 6; // items 6 and 7 of bound and unbound workqueues are delayed_work
    private const int MaxDelay = 3;     // jiffies: short, so armed timers keep firing into the storm
    private const int Stride = 16; // ints per cache line

    private readonly TortureRun _run;
    private readonly Runtime _runtime;
    private readonly LoadControl _control;
    private readonly PlacementLog _placement;
    private readonly FaultInjector _faults;
    private readonly Queue[] _queues;
    private readonly Item[] _items;
    private readonly int _stormers;
    private readonly PerThread _operations;
    private long _requeuesInFlight; // A: functions between deciding to requeue and having queued

    [ThreadStatic]
    private static TortureRandom t_rng;

    [ThreadStatic]
    private static bool t_rngSeeded;

    private sealed class Queue
    {
        public required Workqueue Wq;
        public required string Kind;
        public required int Limit;       // max_active per pool_workqueue; 0: none (bh)
        public required bool PerCpu;     // bound: one pool_workqueue per CPU
        public required int[] Running;   // A: runs in progress per pool_workqueue (slot per CPU, or slot 0)
        public bool Ordered => Kind == "ordered";
        public readonly Lock OrderLock = new();
        public long NextTicket;          // L: OrderLock
        public long LastTicketRun;       // runs of the ordered workqueue (one at a time, unless that breaks)
        public int MaxConcurrent;        // A
        public long Reentrant;           // A
        public long MaxActiveExceeded;   // A
        public long OrderViolations;     // A
        public long Flushes;             // A
        public long FlushViolations;     // A
        public long AlreadyPending;      // A
        public long SelfRequeues;        // A
        public long ModifiedPending;     // A: mod_delayed_work() calls that re-armed a pending instance
        public Item[] Items = [];
    }

    private sealed class Item
    {
        public required WorkStruct Work;
        public required Queue Owner;
        public required bool Flushable;
        public DelayedWork? Delayed;    // I: the same object as Work, for delayed items
        public bool Modifiable;         // I: a delayed item armed with mod_delayed_work too (and then never cancelled with _sync)
        public readonly List<long> Tickets = []; // L: Owner.OrderLock; numbers of the accepted instances not yet run or cancelled, oldest first (ordered workqueue only)
        public long Accepted;   // A: queue returned true
        public long Cancelled;  // A: cancel returned true
        public long Runs;       // A: function entries
        public long Completed;  // A: function exits (after Running is cleared)
        public int Running;     // A: 1 while the function runs
    }

    private WorkqueueTorture(TortureRun run, Runtime runtime)
    {
        _run = run;
        _runtime = runtime;
        var o = run.Options;
        _control = new LoadControl(o.Stutter, o.ShuffleInterval);
        _placement = new PlacementLog(runtime.Options.Pinning);
        _faults = new FaultInjector(o.FaultEvery, runtime.Faults);
        _stormers = o.Writers ?? 2 * o.CpuCount;
        _operations = new PerThread(_stormers);
        int cpus = runtime.Cpus.Count;
        _queues =
        [
            NewQueue(runtime.AllocWorkqueue("torture_bound"), "bound", Workqueue.DefaultMaxActive, perCpu: true, cpus),
            NewQueue(runtime.AllocWorkqueue("torture_unbound", WorkqueueFlags.Unbound), "unbound", Workqueue.DefaultMaxActive, perCpu: false, cpus),
            NewQueue(runtime.AllocOrderedWorkqueue("torture_ordered"), "ordered", 1, perCpu: false, cpus),
            NewQueue(runtime.AllocWorkqueue("torture_bound_max2", WorkqueueFlags.None, 2), "bound", 2, perCpu: true, cpus),
            NewQueue(runtime.AllocWorkqueue("torture_unbound_max2", WorkqueueFlags.Unbound, 2), "unbound", 2, perCpu: false, cpus),
            NewQueue(runtime.AllocWorkqueue("torture_bh", WorkqueueFlags.Bh), "bh", 0, perCpu: true, cpus),
        ];
        var items = new List<Item>();
        foreach (var q in _queues)
        {
            var mine = new Item[ItemsPerQueue];
            for (int i = 0; i < mine.Length; i++)
            {
                Item? it = null;
                bool delayed = i >= FirstDelayed && q.Kind is "bound" or "unbound";
                var work = delayed ? new DelayedWork(_ => Function(it!), $"{q.Wq.Name}/d{i}") : new WorkStruct(_ => Function(it!), $"{q.Wq.Name}/{i}");
                // Delayed items are cancelled, never flush-checked: mod_delayed_work takes an instance
                // back and re-arms it, which makes "accepted before the flush" meaningless for them.
                // One delayed item is re-armed with mod_delayed_work and cancelled without waiting, the other
                // cancelled with cancel_delayed_work_sync and never modified: mod_delayed_work returns false
                // both when it armed an idle item and when a concurrent cancel_delayed_work_sync owns it (it
                // stays cancelled, as in current kernels, where that cancel disables the item), so with
                // both on one item "accepted" could not be counted.
                it = new Item { Work = work, Owner = q, Flushable = !delayed && i % 2 == 1, Delayed = work as DelayedWork, Modifiable = delayed && i == FirstDelayed };
                mine[i] = it;
            }
            q.Items = mine;
            items.AddRange(mine);
        }
        _items = [.. items];
    }

    private static Queue NewQueue(Workqueue wq, string kind, int limit, bool perCpu, int cpus) => new()
    {
        Wq = wq,
        Kind = kind,
        Limit = limit,
        PerCpu = perCpu,
        Running = new int[(cpus + 1) * Stride],
    };

    public static WorkqueueTortureResult Run(TortureRun run) => SuiteSupport.Run(run, static (r, runtime) => new WorkqueueTorture(r, runtime));

    public FaultInjector Faults => _faults;

    public void Dispose() => _control.Dispose();

    public TimeSpan Torture(List<string> problems)
    {
        var threads = new LoadThreads();
        for (int i = 0; i < _stormers; i++)
        {
            int tid = i;
            threads.Start($"wq_torture_storm/{tid}", () => Storm(tid));
        }
        _control.Start();
        var ran = _run.RunLoad(TortureRunner.WorkqueueTest, () => string.Create(CultureInfo.InvariantCulture,
            $"Operations: {_operations.Sum()}  Queued: {_items.Sum(i => Interlocked.Read(ref i.Accepted))}  Run: {_items.Sum(i => Interlocked.Read(ref i.Runs))}  Cancelled: {_items.Sum(i => Interlocked.Read(ref i.Cancelled))}"));
        _control.Stop();
        problems.AddRange(threads.Join(TortureRun.Ceiling));
        if (threads.AnyAlive)
        {
            return ran;
        }
        // No requeue begins after the stop once none is in flight. Armed delayed items are queued at once
        // by flush_delayed_work() (drain does not wait for timers, as in the kernel); then
        // drain_workqueue() waits for everything queued, chained requeues included.
        SuiteSupport.WaitUntil(() => Interlocked.Read(ref _requeuesInFlight) == 0);
        foreach (var it in _items.Where(i => i.Delayed is not null))
        {
            it.Delayed!.FlushDelayedWork();
        }
        foreach (var q in _queues)
        {
            q.Wq.Drain();
        }
        foreach (var q in _queues)
        {
            q.Wq.Destroy();
        }
        return ran;
    }

    private void Storm(int tid)
    {
        var rng = new TortureRandom(_run.Seed, 4000 + tid);
        using var place = new CpuPlacer(_runtime, _control, _placement, bind: tid % 2 == 0, firstCpu: tid / 2);
        int cpus = _runtime.Cpus.Count;
        long operations = 0;
        try
        {
            do
            {
                place.MaybeShuffle(ref rng);
                var q = _queues[rng.Next(_queues.Length)];
                var it = q.Items[rng.Next(q.Items.Length)];
                // The mix: mostly queueing (the pressure), cancels of cancellable items, some flushes
                // (each may wait for a sleeping item, so few of them or they would pace the storm).
                int r = rng.Next(100);
                if (r < 10 && !q.Ordered)
                {
                    QueueAny(it, rng.Next(cpus), ref rng); // queue_work_on(); for unbound workqueues a hint
                }
                else if (r is >= 10 and < 30 && !it.Flushable)
                {
                    CancelItem(it, sync: r < 15);
                }
                else if (r is >= 30 and < 36 && it.Flushable)
                {
                    FlushWorkChecked(it);
                }
                else if (r is >= 30 and < 33 && it.Delayed is { } dw)
                {
                    dw.FlushDelayedWork(); // cuts the delay short; not checked (see the constructor)
                }
                else if (r == 36)
                {
                    FlushWorkqueueChecked(q);
                }
                else
                {
                    QueueAny(it, -1, ref rng);
                }
                operations++;
                if ((operations & 63) == 0)
                {
                    Volatile.Write(ref _operations[tid], operations);
                }
                _control.StutterWait();
            }
            while (!_control.StopRequested);
        }
        finally
        {
            Volatile.Write(ref _operations[tid], operations);
        }
    }

    /// <summary>A plain item through <see cref="QueueItem"/>; a delayed one armed with queue_delayed_work(_on) or mod_delayed_work(_on).</summary>
    private static void QueueAny(Item it, int cpu, ref TortureRandom rng)
    {
        if (it.Delayed is { } dw)
        {
            QueueDelayedItem(it, dw, cpu, rng.Next(MaxDelay + 1), modify: it.Modifiable && rng.OneIn(2));
        }
        else
        {
            QueueItem(it, cpu);
        }
    }

    /// <summary>
    /// queue_delayed_work(_on) or mod_delayed_work(_on), counted. mod_delayed_work returning true took a
    /// pending instance back and re-armed it: one instance before, one after, nothing new accepted;
    /// returning false it armed an idle item: a new instance.
    /// </summary>
    private static bool QueueDelayedItem(Item it, DelayedWork dw, int cpu, int delay, bool modify)
    {
        var q = it.Owner;
        if (modify)
        {
            bool wasPending = cpu < 0 ? q.Wq.ModDelayed(dw, delay) : q.Wq.ModDelayedOn(cpu, dw, delay);
            Interlocked.Increment(ref wasPending ? ref q.ModifiedPending : ref it.Accepted);
            return true;
        }
        bool accepted = cpu < 0 ? q.Wq.QueueDelayed(dw, delay) : q.Wq.QueueDelayedOn(cpu, dw, delay);
        Interlocked.Increment(ref accepted ? ref it.Accepted : ref q.AlreadyPending);
        return accepted;
    }

    /// <summary>queue_work() / queue_work_on(), counted; on the ordered workqueue, numbered in queueing order.</summary>
    private static bool QueueItem(Item it, int cpu)
    {
        var q = it.Owner;
        if (q.Ordered)
        {
            lock (q.OrderLock)
            {
                if (!q.Wq.Queue(it.Work))
                {
                    Interlocked.Increment(ref q.AlreadyPending);
                    return false;
                }
                it.Tickets.Add(++q.NextTicket);
                Interlocked.Increment(ref it.Accepted);
                return true;
            }
        }
        bool accepted = cpu < 0 ? q.Wq.Queue(it.Work) : q.Wq.QueueOn(cpu, it.Work);
        Interlocked.Increment(ref accepted ? ref it.Accepted : ref q.AlreadyPending);
        return accepted;
    }

    /// <summary>cancel_work() / cancel_work_sync(), counted; on the ordered workqueue, the cancelled instance's number is dropped.</summary>
    private static void CancelItem(Item it, bool sync)
    {
        var q = it.Owner;
        if (q.Ordered)
        {
            // Under the numbering lock, so the instance taken back is the newest numbered one (the pending
            // instance; an older one may have started without having read its number yet). Not the sync
            // form: it would wait for a running function, which takes this lock to read its number.
            lock (q.OrderLock)
            {
                if (it.Work.CancelWork())
                {
                    it.Tickets.RemoveAt(it.Tickets.Count - 1);
                    Interlocked.Increment(ref it.Cancelled);
                }
            }
            return;
        }
        bool cancelled = it.Delayed is { } dw
            ? (sync && !it.Modifiable ? dw.CancelDelayedWorkSync() : dw.CancelDelayedWork())
            : (sync ? it.Work.CancelWorkSync() : it.Work.CancelWork());
        if (cancelled)
        {
            Interlocked.Increment(ref it.Cancelled);
        }
    }

    /// <summary>flush_work(): the instance accepted before the call has completed when it returns.</summary>
    private static void FlushWorkChecked(Item it)
    {
        long accepted = Interlocked.Read(ref it.Accepted);
        it.Work.FlushWork();
        Interlocked.Increment(ref it.Owner.Flushes);
        if (Interlocked.Read(ref it.Completed) < accepted)
        {
            Interlocked.Increment(ref it.Owner.FlushViolations);
        }
    }

    /// <summary>flush_workqueue(): every flushable item's instances accepted before the call have completed when it returns.</summary>
    private static void FlushWorkqueueChecked(Queue q)
    {
        Span<long> accepted = stackalloc long[q.Items.Length];
        for (int i = 0; i < q.Items.Length; i++)
        {
            accepted[i] = Interlocked.Read(ref q.Items[i].Accepted);
        }
        q.Wq.Flush();
        Interlocked.Increment(ref q.Flushes);
        for (int i = 0; i < q.Items.Length; i++)
        {
            if (q.Items[i].Flushable && Interlocked.Read(ref q.Items[i].Completed) < accepted[i])
            {
                Interlocked.Increment(ref q.FlushViolations);
            }
        }
    }

    private void Function(Item it)
    {
        var q = it.Owner;
        if (Interlocked.Exchange(ref it.Running, 1) != 0)
        {
            Interlocked.Increment(ref q.Reentrant);
        }
        Interlocked.Increment(ref it.Runs);
        int slot = (q.PerCpu ? CpuContext.CurrentCpuId + 1 : 0) * Stride;
        int running = Interlocked.Increment(ref q.Running[slot]);
        try
        {
            if (q.Limit > 0 && running > q.Limit)
            {
                Interlocked.Increment(ref q.MaxActiveExceeded);
            }
            SuiteSupport.AtomicMax(ref q.MaxConcurrent, running);
            if (q.Ordered)
            {
                // This instance's number is the oldest the item has outstanding: PENDING is cleared just
                // before the function starts, so a newer instance may already be queued (and numbered).
                long ticket = -1;
                lock (q.OrderLock)
                {
                    if (it.Tickets.Count > 0)
                    {
                        ticket = it.Tickets[0];
                        it.Tickets.RemoveAt(0);
                    }
                }
                if (ticket <= Volatile.Read(ref q.LastTicketRun))
                {
                    Interlocked.Increment(ref q.OrderViolations);
                }
                Volatile.Write(ref q.LastTicketRun, ticket);
            }
            ref var rng = ref Rng();
            if (q.Kind != "bh" && rng.OneIn(16))
            {
                Delay.Msleep(1); // sleeps in a runtime primitive: the pool sees it and lets another worker run
            }
            else if (rng.OneIn(4))
            {
                Delay.Udelay(1 + rng.Next(20));
            }
            if (rng.OneIn(8))
            {
                // In flight before looking at the stop flag, as the tasklets' chains (see Torture).
                Interlocked.Increment(ref _requeuesInFlight);
                bool requeued = !_control.StopRequested &&
                    (it.Delayed is { } dw ? QueueDelayedItem(it, dw, -1, delay: 1, modify: false) : QueueItem(it, -1));
                if (requeued)
                {
                    Interlocked.Increment(ref q.SelfRequeues); // queued while running: runs again after this instance
                }
                Interlocked.Decrement(ref _requeuesInFlight);
            }
            _faults.MaybeThrow($"work item '{it.Work.Name}'");
        }
        finally
        {
            Interlocked.Decrement(ref q.Running[slot]);
            Volatile.Write(ref it.Running, 0);
            Interlocked.Increment(ref it.Completed);
        }
    }

    private ref TortureRandom Rng()
    {
        if (!t_rngSeeded)
        {
            t_rng = new TortureRandom(_run.Seed, 5000 + Environment.CurrentManagedThreadId);
            t_rngSeeded = true;
        }
        return ref t_rng;
    }

    public WorkqueueTortureResult Result(TimeSpan ran, List<string> problems)
    {
        var stats = _queues.Select(q => new WorkqueueStats
        {
            Name = q.Wq.Name,
            Kind = q.Kind,
            MaxActive = q.Limit,
            Items = q.Items.Length,
            Queued = q.Items.Sum(i => Interlocked.Read(ref i.Accepted)),
            AlreadyPending = Interlocked.Read(ref q.AlreadyPending),
            SelfRequeues = Interlocked.Read(ref q.SelfRequeues),
            DelayedItems = q.Items.Count(i => i.Delayed is not null),
            ModifiedPending = Interlocked.Read(ref q.ModifiedPending),
            Run = q.Items.Sum(i => Interlocked.Read(ref i.Runs)),
            Cancelled = q.Items.Sum(i => Interlocked.Read(ref i.Cancelled)),
            Reentrant = Interlocked.Read(ref q.Reentrant),
            MaxConcurrent = Volatile.Read(ref q.MaxConcurrent),
            MaxActiveExceeded = Interlocked.Read(ref q.MaxActiveExceeded),
            OrderViolations = Interlocked.Read(ref q.OrderViolations),
            Flushes = Interlocked.Read(ref q.Flushes),
            FlushViolations = Interlocked.Read(ref q.FlushViolations),
        }).ToArray();
        // Per item, not only per workqueue: a run lost on one item must not hide behind a spare elsewhere.
        var unbalanced = _items.Where(i => i.Accepted != i.Runs + i.Cancelled || i.Runs != i.Completed).ToArray();
        var faults = _faults.Account();
        var checks = new List<TortureCheck>
        {
            new("conservation", unbalanced.Length == 0, unbalanced.Length == 0
                ? string.Join(", ", stats.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Name}: queued {s.Queued} = run {s.Run} + cancelled {s.Cancelled}")))
                : string.Join(", ", unbalanced.Take(5).Select(i => string.Create(CultureInfo.InvariantCulture,
                    $"'{i.Work.Name}': queued {i.Accepted} != run {i.Runs} + cancelled {i.Cancelled} (completed {i.Completed})")))),
            new("no re-entrancy", stats.Sum(s => s.Reentrant) == 0, string.Create(CultureInfo.InvariantCulture,
                $"{stats.Sum(s => s.Reentrant)} runs started while the same item was running, in {stats.Sum(s => s.Run)} runs")),
            new("max_active", stats.Sum(s => s.MaxActiveExceeded) == 0, string.Join(", ", stats.Where(s => s.MaxActive > 0).Select(s => string.Create(CultureInfo.InvariantCulture,
                $"{s.Name}: at most {s.MaxConcurrent} of {s.MaxActive}{(s.MaxActiveExceeded > 0 ? $" (exceeded {s.MaxActiveExceeded} times)" : "")}")))),
            new("ordering", stats.Sum(s => s.OrderViolations) == 0, string.Create(CultureInfo.InvariantCulture,
                $"{stats.Sum(s => s.OrderViolations)} runs of the ordered workqueue out of queueing order, in {stats.Where(s => s.Kind == "ordered").Sum(s => s.Run)} runs")),
            new("flush", stats.Sum(s => s.FlushViolations) == 0, string.Create(CultureInfo.InvariantCulture,
                $"{stats.Sum(s => s.FlushViolations)} flushes returned before work queued ahead of them finished, in {stats.Sum(s => s.Flushes)} flushes")),
            new("threads", problems.Count == 0, problems.Count == 0
                ? string.Create(CultureInfo.InvariantCulture, $"{_stormers} storm threads started and stopped cleanly")
                : string.Join("; ", problems)),
            faults.Check(),
        };
        return new WorkqueueTortureResult
        {
            Stormers = _stormers,
            DurationSeconds = ran.TotalSeconds,
            Workqueues = stats,
            Stutters = _control.Stutters,
            Shuffles = _placement.Moves,
            Placement = _placement.Describe(),
            Faults = faults,
            Checks = checks,
        };
    }
}
