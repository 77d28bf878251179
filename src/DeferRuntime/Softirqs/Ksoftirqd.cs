using DeferRuntime.Cpus;
using DeferRuntime.Platform;

namespace DeferRuntime.Softirqs;

/// <summary>
/// ksoftirqd/N: runs the softirqs that overflowed the irq-exit budget, at the lowest priority (nice 19
/// by default, as the seed texts describe; current Linux runs it at nice 0, which the options allow).
/// </summary>
/// <remarks>
/// While it is running (woken and not yet asleep again), irq exit leaves softirqs to it except HI and
/// TASKLET (SOFTIRQ_NOW_MASK). It takes the bh gate with a waiting enter: a lower-priority thread may
/// wait for cpu/N, never the other way round.
/// </remarks>
internal sealed class Ksoftirqd
{
    private readonly VirtualCpu _cpu;
    private readonly ThreadContext _ctx;
    private readonly Parker _parker = new();
    private Thread? _thread;
    private int _running; // A: 1 from wake-up until it finds nothing pending (the kernel's TASK_RUNNING); on its core's run queue while 1
    private volatile bool _exit;
    private int _cpuClock = ThreadCpuClock.None; // I (set by the thread when it starts)

    public Ksoftirqd(VirtualCpu cpu)
    {
        _cpu = cpu;
        _ctx = new ThreadContext(cpu, ThreadRole.Ksoftirqd);
    }

    public bool IsRunning => Volatile.Read(ref _running) != 0;

    public bool IsCurrentThread => ReferenceEquals(ThreadContext.Current, _ctx);

    /// <summary>The thread's CPU-time clock (ThreadCpuClock.None until it started, or where unsupported).</summary>
    public int CpuClock => Volatile.Read(ref _cpuClock);

    /// <summary>wakeup_softirqd(). The waker puts it on its core's run queue (before the wake-up), so cpu/N's idle gives way to it.</summary>
    public void Wakeup()
    {
        if (Volatile.Read(ref _running) == 0 && Interlocked.CompareExchange(ref _running, 1, 0) == 0)
        {
            _cpu.RunQueue.Enqueue();
            _parker.Unpark();
        }
    }

    public void Start(CountdownEvent booted)
    {
        _thread = new Thread(() => Main(booted))
        {
            Name = $"ksoftirqd/{_cpu.Id}",
            IsBackground = true,
        };
        _thread.Start();
    }

    public void Stop()
    {
        _exit = true;
        _parker.Unpark();
    }

    /// <summary>The thread, once started (shutdown joins it).</summary>
    public Thread? Thread => _thread;

    /// <summary>Its context (for shutdown's report of a thread it could not join).</summary>
    public ThreadContext Context => _ctx;

    private void Main(CountdownEvent booted)
    {
        ThreadContext.Attach(_ctx);
        Volatile.Write(ref _cpuClock, ThreadCpuClock.Create());
        try
        {
            _cpu.PlaceCurrentThread(ThreadRole.Ksoftirqd);
        }
        finally
        {
            booted.Signal();
        }

        try
        {
            while (!_exit && !_cpu.Runtime.IsPanicked)
            {
                if (Volatile.Read(ref _running) != 0)
                {
                    RunWhilePending();
                    // Going to sleep: clear TASK_RUNNING, full barrier, re-check (a raise that saw us
                    // running did not wake us). Each 0 -> 1 of the flag, whoever makes it, enqueues on the
                    // run queue, and each 1 -> 0 dequeues.
                    Interlocked.Exchange(ref _running, 0);
                    _cpu.RunQueue.Dequeue();
                    if (Volatile.Read(ref _cpu.Line.SoftirqPending) != 0)
                    {
                        if (Interlocked.CompareExchange(ref _running, 1, 0) == 0)
                        {
                            _cpu.RunQueue.Enqueue();
                        }
                        continue;
                    }
                }
                _parker.Park(-1);
            }
        }
        finally
        {
            ThreadContext.Detach();
        }
    }

    /// <summary>Takes the task gate, then the bh gate; false if the runtime died while we waited (we exit).</summary>
    private bool TryEnterBh()
    {
        try
        {
            _ctx.EnterNonPreemptible();
            _cpu.BhGate.Enter(_ctx);
            return true;
        }
        catch (Exception e) when (e is ObjectDisposedException or Diagnostics.KernelPanicException)
        {
            _ctx.LeaveIfPreemptible();
            return false;
        }
    }

    /// <summary>run_ksoftirqd(), looped while softirqs stay pending, with cond_resched() in between.</summary>
    private void RunWhilePending()
    {
        while (Volatile.Read(ref _cpu.Line.SoftirqPending) != 0 && !_cpu.Runtime.IsPanicked)
        {
            // A task: the CPU to itself among its tasks first (the task gate), then its softirqs.
            if (!TryEnterBh())
            {
                return;
            }
            _ctx.PreemptCount += PreemptCount.SoftirqOffset;
            try
            {
                if (_cpu.HolderPending != 0)
                {
                    SoftirqEngine.DoSoftirq(_cpu, _ctx);
                }
            }
            finally
            {
                _ctx.PreemptCount -= PreemptCount.SoftirqOffset;
                _cpu.ExitBh(_ctx);
                _ctx.LeaveIfPreemptible();
            }
            // cond_resched(): let the other threads of this core (and cpu/N's HI/TASKLET) in.
            Thread.Yield();
        }
    }
}
