using DeferRuntime.Cpus;
using DeferRuntime.Platform;

namespace DeferRuntime.Workqueues;

/// <summary>
/// rescuer_thread(): the thread a MemReclaim workqueue keeps so that its items make progress when a pool
/// cannot create workers (the kernel's case: creating a kthread needs memory, and reclaim may wait for
/// these very items). When a pool's manager has failed for MAYDAY_INITIAL_TIMEOUT (10 ms) the ticker
/// sends mayday for each of this workqueue's items waiting there; the rescuer attaches to that pool,
/// runs those items, and detaches. It never counts for concurrency management (WORKER_PREP stays set).
/// </summary>
/// <remarks>
/// The thread is named after the workqueue, as the kernel names it. While it serves a pool it carries the
/// ThreadContext of that pool's CPU (one per CPU, made on first visit) and is pinned to its cores.
/// </remarks>
internal sealed class Rescuer
{
    private readonly Workqueue _wq;
    private readonly Worker _worker;
    private readonly Parker _parker = new();
    private readonly ThreadContext?[] _contexts;
    private Thread? _thread;
    private int _poked; // A
    private volatile bool _stop;
    private ThreadContext? _current; // written by the thread around each rescue, read by shutdown's report

    public Rescuer(Workqueue wq)
    {
        _wq = wq;
        _worker = new Worker(null, 0, wq.Name, bh: false, rescueWq: wq);
        _contexts = new ThreadContext?[wq.Runtime.Cpus.Count];
    }

    private int _nice = int.MinValue; // the rescuer thread only: the nice it last set (MinValue: none yet, or refused)

    public Thread? Thread => _thread;

    public void Start()
    {
        _thread = new Thread(Main)
        {
            Name = _wq.Name,
            IsBackground = true,
        };
        _thread.UnsafeStart();
    }

    /// <summary>wake_up_process(rescuer): there is a mayday to serve (or it should stop).</summary>
    public void Wake()
    {
        if (Interlocked.Exchange(ref _poked, 1) == 0)
        {
            _parker.Unpark();
        }
    }

    /// <summary>The context the thread carries now (that of the pool it rescues), or null between rescues.</summary>
    public ThreadContext? Context => Volatile.Read(ref _current);

    /// <summary>kthread_stop(): serves what is left, then exits; joined with a bound (a stuck item cannot hang destroy_workqueue()).</summary>
    public void Stop()
    {
        BeginStop();
        if (_thread is not null && !ReferenceEquals(_thread, Thread.CurrentThread))
        {
            _thread.Join(TimeSpan.FromSeconds(5));
        }
    }

    /// <summary>kthread_stop() without the join: runtime shutdown joins the thread with its own bound.</summary>
    public void BeginStop()
    {
        _stop = true;
        Wake();
    }

    private void Main()
    {
        Worker.SwapCurrent(_worker);
        try
        {
            while (true)
            {
                bool stop = _stop; // read first: maydays sent before the stop are still served
                while (_wq.TakeMayday() is { } pwq)
                {
                    Rescue(pwq);
                }
                if (stop || _wq.Runtime.IsPanicked)
                {
                    return;
                }
                if (Interlocked.Exchange(ref _poked, 0) == 0)
                {
                    _parker.Park(-1);
                }
            }
        }
        finally
        {
            Worker.SwapCurrent(null);
        }
    }

    private void Rescue(PoolWorkqueue pwq)
    {
        var pool = pwq.Pool;
        var ctx = _contexts[pool.ContextCpu.Id] ??= new ThreadContext(pool.ContextCpu, ThreadRole.Worker);
        ThreadContext.Attach(ctx);
        Volatile.Write(ref _current, ctx);
        if (_wq.Runtime.Options.Pinning)
        {
            _ = ThreadPlacement.PinCurrentThreadToCores(pool.Cores);
        }
        // The pool's nice, set rather than inherited from whoever allocated the workqueue (ThreadPlacement.SetNice).
        if (_wq.Runtime.Options.Priorities != PriorityPolicy.None && _nice != pool.Nice)
        {
            _nice = ThreadPlacement.SetNice(pool.Nice) is null ? pool.Nice : int.MinValue;
        }
        try
        {
            pool.Lock();
            _worker.Pool = pool;
            pool.Rescuers.Add(_worker); // several MemReclaim workqueues may rescue one pool at once, as in the kernel
            pool.SpliceIncoming();
            // Take this workqueue's items off the worklist (assign_work: one that another worker of the pool
            // is running goes to that worker instead), then run them.
            var work = pool.Hot.WorkHead;
            while (work is not null)
            {
                var next = work.Next;
                if (ReferenceEquals(work.Pwq, pwq))
                {
                    pool.Unlink(work);
                    WorkerPool.Append(work, ref _worker.ScheduledHead, ref _worker.ScheduledTail);
                    work.ListKind = WorkListKind.Scheduled;
                    work.ScheduledOn = _worker;
                    work.QueuedPool = pool;
                }
                work = next;
            }
            ProcessAssigned(pool, ctx);

            // Still stuck with more of ours waiting: stay on the mayday list (the kernel re-queues the pwq).
            if (pool.NeedToCreateWorker && HasItemsOf(pool, pwq))
            {
                _wq.Runtime.Wq.SendMayday(pwq);
            }
            var toWake = pool.KickPool();
            pool.Rescuers.Remove(_worker);
            pool.Unlock();
            WorkerPool.WakeKicked(toWake);
        }
        finally
        {
            Volatile.Write(ref _current, null);
            ThreadContext.Detach();
        }
    }

    /// <summary>process_scheduled_works() with collisions resolved as assign_work() does. Lock held.</summary>
    private void ProcessAssigned(WorkerPool pool, ThreadContext ctx)
    {
        while (_worker.ScheduledHead is { } work)
        {
            pool.Unlink(work);
            if (!pool.HandToExecutingWorker(work, _worker))
            {
                _worker.ProcessOne(work, ctx);
            }
        }
    }

    private static bool HasItemsOf(WorkerPool pool, PoolWorkqueue pwq)
    {
        for (var w = pool.Hot.WorkHead; w is not null; w = w.Next)
        {
            if (ReferenceEquals(w.Pwq, pwq))
            {
                return true;
            }
        }
        return false;
    }
}
