using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Platform;

namespace DeferRuntime.Interrupts;

/// <summary>
/// irq_thread(): the <c>irq/L-name</c> thread of one threaded action. It sleeps until the primary
/// handler returns <see cref="IrqReturn.WakeThread"/>, runs the thread function in task context
/// (it may sleep: mutexes, completions), then finalizes a OneShot line and drops the line's
/// threads_active count that synchronize_irq() waits for.
/// </summary>
/// <remarks>
/// <para>It is bound to the first CPU of the line's affinity and pinned to that CPU's core; an affinity change
/// sets a flag that the thread acts on before its next run (the kernel's IRQTF_AFFINITY), re-binding
/// itself, because only the thread itself may change its own context.</para>
/// <para>From its wake-up until it finds no run pending it is on its core's run queue (so cpu/N's idle
/// gives way to it), except while its thread function blocks in a runtime primitive: it is its own
/// context's <see cref="ISleepNotifier"/>.</para>
/// </remarks>
internal sealed class IrqThread : ISleepNotifier
{
    private readonly IrqAction _action;
    private readonly Parker _parker = new();
    private readonly Thread _thread;
    private int _runThread; // A: IRQTF_RUNTHREAD
    private int _affinityChanged; // A: IRQTF_AFFINITY
    private volatile bool _stop;
    private long _runs; // T: this thread
    private ThreadContext? _ctx; // T to write (at each bind), shutdown's report reads
    private int _cpuClock = ThreadCpuClock.None; // T to write (at start), others read
    private int _boundCpu = -1; // T to write (at each bind), others read
    private CoreRunQueue? _queuedOn; // A: the run queue it is counted on, null while it is not runnable (set by whoever makes it runnable, cleared by the thread)

    public IrqThread(IrqAction action)
    {
        _action = action;
        string name = $"irq/{action.Irq}-{action.Name}";
        _thread = new Thread(Main) { Name = name, IsBackground = true };
    }

    public long Runs => Volatile.Read(ref _runs);

    /// <summary>The CPU the thread is bound to now (-1 before it started).</summary>
    public int BoundCpu => Volatile.Read(ref _boundCpu);

    /// <summary>CPU time the thread has consumed, in ns; -1 if unknown (not started, exited, or no per-thread clock).</summary>
    public long CpuNs => ThreadCpuClock.ReadNs(Volatile.Read(ref _cpuClock));

    public bool IsCurrentThread => ReferenceEquals(Thread.CurrentThread, _thread);

    /// <summary>The thread (shutdown joins it).</summary>
    public Thread Thread => _thread;

    /// <summary>Its context now (null before it started); it changes when the thread re-binds.</summary>
    public ThreadContext? Context => Volatile.Read(ref _ctx);

    public void Start() => _thread.Start();

    /// <summary>IRQTF_RUNTHREAD is set: a wake now merges with the run already pending.</summary>
    public bool IsRunPending => Volatile.Read(ref _runThread) != 0;

    /// <summary>
    /// __irq_wake_thread()'s test_and_set_bit(IRQTF_RUNTHREAD): false if a run is already pending, which
    /// this wake merges with. Called under the line's lock together with the threads_active and OneShot
    /// accounting, so a second CPU running the chain cannot count the same run twice; the thread's
    /// finish takes that lock too, so it never drops counts that were not yet raised.
    /// </summary>
    public bool TrySetRun() => Interlocked.Exchange(ref _runThread, 1) == 0;

    /// <summary>
    /// wake_up_process(), outside the line's lock, after <see cref="TrySetRun"/> returned true: runnable
    /// on its core's run queue before the wake-up, so the waker (often cpu/N of that core, which idles
    /// next) sees it there.
    /// </summary>
    public void Wake()
    {
        Enqueue();
        _parker.Unpark();
    }

    /// <summary>Puts the thread on its bound CPU's run queue unless it is on one. A CAS, so the waker and the thread itself never count it twice.</summary>
    private void Enqueue()
    {
        if (Volatile.Read(ref _queuedOn) is not null)
        {
            return;
        }
        int bound = Volatile.Read(ref _boundCpu);
        var queue = _action.Desc.Controller.Runtime.Cpus[bound >= 0 ? bound : _action.Desc.FirstAffinityCpu].RunQueue;
        if (Interlocked.CompareExchange(ref _queuedOn, queue, null) is null)
        {
            queue.Enqueue();
        }
    }

    /// <summary>Takes the thread off the run queue it is counted on, if any (the thread itself, before it parks or blocks).</summary>
    private void Dequeue() => Interlocked.Exchange(ref _queuedOn, null)?.Dequeue();

    /// <summary>Its thread function blocks in a runtime primitive (mutex, completion, wait queue): not runnable meanwhile.</summary>
    void ISleepNotifier.Sleeping() => Dequeue();

    /// <summary>It runs again.</summary>
    void ISleepNotifier.Running() => Enqueue();

    public void AffinityChanged()
    {
        Volatile.Write(ref _affinityChanged, 1);
    }

    /// <summary>kthread_stop(): the caller has synchronized the line, so no run is pending; <paramref name="join"/> waits for the thread to exit.</summary>
    public void Stop(bool join)
    {
        _stop = true;
        _parker.Unpark();
        if (join && !IsCurrentThread)
        {
            _thread.Join();
        }
    }

    private void Main()
    {
        var desc = _action.Desc;
        Volatile.Write(ref _cpuClock, ThreadCpuClock.Create());
        Bind(desc);
        try
        {
            while (true)
            {
                if (Interlocked.Exchange(ref _runThread, 0) != 0)
                {
                    if (Volatile.Read(ref _affinityChanged) != 0)
                    {
                        Bind(desc);
                    }
                    RunOnce(desc);
                    continue;
                }
                if (_stop)
                {
                    return;
                }
                // Going to sleep: off the run queue (full barrier), then look for a run once more: a waker
                // that set one after our look above but enqueued before our dequeue was undone by it.
                Dequeue();
                if (Volatile.Read(ref _runThread) != 0)
                {
                    Enqueue();
                    continue;
                }
                _parker.Park(-1);
            }
        }
        finally
        {
            Dequeue();
            ThreadContext.Detach();
        }
    }

    private void RunOnce(IrqDesc desc)
    {
        var ctx = _ctx!;
        var cpu = ctx.Cpu;
        cpu.RunCallback(ctx, _action, static a => a.ThreadReturn = a.ThreadFn!(a.Irq, a.DevId), static a => $"irq {a.Irq} thread function '{a.Name}'");
        Volatile.Write(ref _runs, _runs + 1);
        desc.FinishThreadRun(_action);
    }

    private void Bind(IrqDesc desc)
    {
        Volatile.Write(ref _affinityChanged, 0);
        var cpu = desc.Controller.Runtime.Cpus[desc.FirstAffinityCpu];
        if (_ctx is not null && ReferenceEquals(_ctx.Cpu, cpu))
        {
            return;
        }
        var ctx = new ThreadContext(cpu, ThreadRole.IrqThread) { SleepNotifier = this };
        Volatile.Write(ref _ctx, ctx);
        ThreadContext.Attach(ctx);
        Volatile.Write(ref _boundCpu, cpu.Id);
        cpu.PlaceCurrentThread(ThreadRole.IrqThread);
    }
}
