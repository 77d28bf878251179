using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using DeferRuntime.Diagnostics;
using DeferRuntime.Platform;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;
using DeferRuntime.Timers;

namespace DeferRuntime.Cpus;

/// <summary>
/// A virtual CPU: per-CPU state plus the gates that make its contexts exclusive (DESIGN §1). Several OS
/// threads are bound to it: <c>cpu/N</c> (hard IRQs, softirqs on irq exit), <c>ksoftirqd/N</c>, and later
/// kworkers and irq threads, all pinned to the same core when pinning is on.
/// </summary>
/// <remarks>
/// Field legend, as kernel/workqueue.c does it:
/// <list type="bullet">
/// <item><c>I:</c> set at boot, read-only after.</item>
/// <item><c>A:</c> any thread, through Interlocked (see <see cref="CpuSharedLine"/>).</item>
/// <item><c>B:</c> the holder of this CPU's bh gate (whoever runs its softirqs).</item>
/// <item><c>C:</c> the cpu/N thread only.</item>
/// </list>
/// </remarks>
public sealed partial class VirtualCpu
{
    internal const int Running = 0;
    internal const int Parked = 1;

    /// <summary>CALL_FUNCTION_SINGLE_VECTOR: the IPI that drains the call queue.</summary>
    internal const int CallFunctionVector = 0;

    /// <summary>Hard-IRQ vectors per CPU (four 64-bit pending words).</summary>
    internal const int VectorCount = 256;

    internal CpuSharedLine Line; // A: see CpuSharedLine

    // A: requests from threads of no CPU in flight toward this CPU (rundown protection for shutdown).
    // PERF: off the polled line: only producers write it and only shutdown reads it, so keeping it there
    // cost every foreign request two extra cache-line round trips with the polling cpu/N.
    internal PaddedInt32 ForeignInFlight;

    private readonly Parker _parker = new(); // I
    private readonly ThreadContext _cpuContext; // I: cpu/N's own context
    private Thread? _thread; // I
    private volatile bool _exit; // set once by shutdown

    // B: work queued by the bh-gate holder itself (a schedule from softirq or bh-disabled context on this
    // CPU): plain fields, no atomics, as the kernel's per-CPU lists are plain under local_bh_disable().
    // The gate's CAS/exchange publishes them to the next holder; ExitBh folds the pending bits into the
    // shared mask so that nobody who looks only at the shared mask (cpu/N idle, ksoftirqd, shutdown)
    // can miss them once the gate is free.
    internal Tasklet? LocalHead, LocalTail, LocalHiHead, LocalHiTail;
    internal int LocalSoftirqPending;

    // What a running batch has taken off the shared lists and not reached yet, published by the thread
    // running it (B: the bh-gate holder; H: cpu/N in hard-IRQ context) for shutdown's report only: if that
    // thread is left behind inside a callback of the batch, these are the items it holds that will never
    // start. PERF: plain stores, one per item; a reference store costs its GC write barrier.
    internal int SoftirqBatch; // B: vectors of the current __do_softirq pass after the running one
    internal Tasklet? TaskletBatch; // B: the rest of the tasklet list being run
    internal long IrqBatch; // H: vectors of word IrqBatchWord taken at this hard-IRQ entry and not dispatched yet
    internal int IrqBatchWord; // H
    internal CallSingleData? CallBatch; // H: the rest of the IPI calls taken at this entry

    // B: per-vector executions, as /proc/softirqs counts them.
    internal readonly long[] SoftirqCounts = new long[SoftirqTable.VectorCount];

    // A: per vector, the Stopwatch timestamp of its first raise since it last ran here, 0 if none. Written
    // only while a raise-latency histogram has a listener (RuntimeMetrics); the runner takes it at entry.
    internal readonly long[] RaisedAt = new long[SoftirqTable.VectorCount];

    // B: tasklet callbacks run on this CPU (both lists), for metrics.
    internal long TaskletRuns;

    // B: handler runs finished; shutdown compares sums to prove nothing ran during its quiescence check.
    internal long SoftirqCompletions;

    // B: times __do_softirq gave up (restart limit, 2 ms budget or need-resched) and woke ksoftirqd.
    internal long KsoftirqdWakeups;

    // C: hard-IRQ entries, IPI calls run, and completions for the shutdown check.
    internal long HardirqEntries;
    internal long IpiCalls;
    internal long HardirqCompletions;

    // C: parks of cpu/N when idle.
    internal long Parks;

    // C: Stopwatch ticks cpu/N spent in hard-IRQ entries (RuntimeOptions.IrqTimeAccounting).
    internal long HardirqTicks;

    // B: Stopwatch ticks spent in softirqs by any holder but ksoftirqd/N, nested hard IRQs excluded
    // (RuntimeOptions.IrqTimeAccounting). ksoftirqd's softirq time stays its own task time, as the
    // kernel's irqtime_account_irq() leaves it.
    internal long SoftirqTicks;

    // I (set by cpu/N when it starts): its thread's CPU-time clock.
    private int _cpuThreadClock = ThreadCpuClock.None;

    // A: need_resched(): set by whoever wants this CPU back from softirq processing.
    private volatile bool _needResched;

    internal VirtualCpu(Runtime runtime, int id, int core)
    {
        Runtime = runtime;
        Id = id;
        Core = core;
        _cpuContext = new ThreadContext(this, ThreadRole.Cpu);
        Ksoftirqd = new Ksoftirqd(this);
        Timers = new CpuTimers(this);
        Line.IdleState = Running;
        Line.NextEventNs = CpuTimers.NoEvent;
        Line.NextDeferrableNs = CpuTimers.NoEvent;
    }

    /// <summary>The runtime this CPU belongs to.</summary>
    public Runtime Runtime { get; }

    /// <summary>smp_processor_id() of this CPU.</summary>
    public int Id { get; }

    /// <summary>The OS core its threads are pinned to (when pinning is on): <c>N mod cores</c> of the allowed set.</summary>
    public int Core { get; }

    /// <summary>The irq gate: "local interrupts disabled on this CPU".</summary>
    internal ContextGate IrqGate { get; } = new();

    /// <summary>The bh gate: "softirqs disabled on this CPU".</summary>
    internal ContextGate BhGate { get; } = new();

    /// <summary>The task gate: "a task of this CPU is non-preemptible" (one task at a time; see <see cref="Cpus.TaskGate"/>).</summary>
    internal TaskGate TaskGate { get; } = new();

    /// <summary>Times the task gate changed hands between two tasks of this CPU (one process-wide barrier each).</summary>
    public long TaskGateHandOverCount => TaskGate.Revocations;

    internal Ksoftirqd Ksoftirqd { get; }

    /// <summary>Softirq executions on this CPU per vector, in <see cref="SoftirqVector"/> order.</summary>
    public long GetSoftirqCount(SoftirqVector vector) => Volatile.Read(ref SoftirqCounts[(int)vector]);

    /// <summary>Tasklet callbacks run on this CPU (normal and HI).</summary>
    public long TaskletRunCount => Volatile.Read(ref TaskletRuns);

    /// <summary>Times softirq processing overflowed its budget and was handed to ksoftirqd/N.</summary>
    public long KsoftirqdWakeupCount => Volatile.Read(ref KsoftirqdWakeups);

    /// <summary>Hard-IRQ entries of cpu/N (each services every vector pending at that moment).</summary>
    public long HardirqEntryCount => Volatile.Read(ref HardirqEntries);

    /// <summary>Cross-CPU function calls run on this CPU.</summary>
    public long IpiCallCount => Volatile.Read(ref IpiCalls);

    /// <summary>Times cpu/N parked for lack of work.</summary>
    public long ParkCount => Volatile.Read(ref Parks);

    /// <summary>
    /// Where this CPU's time went, as /proc/stat's irq and softirq columns and the per-thread times of
    /// top(1) show it: hard-IRQ and softirq time (only with <see cref="RuntimeOptions.IrqTimeAccounting"/>),
    /// and the CPU time consumed by ksoftirqd/N, by the kworkers of CPU N's bound pools (normal and
    /// high priority, retired ones included), by the irq threads bound to N, and by cpu/N itself (which
    /// includes its idle polling). Null where it is not measured (accounting off, or no per-thread CPU
    /// clock on this platform). The threads run concurrently, so the parts may sum to more than wall time.
    /// </summary>
    public CpuTimeStats GetCpuTime()
    {
        bool accounting = Runtime.Options.IrqTimeAccounting;
        return new CpuTimeStats(
            Id,
            accounting ? Stopwatch.GetElapsedTime(0, Volatile.Read(ref HardirqTicks)) : null,
            accounting ? Stopwatch.GetElapsedTime(0, Volatile.Read(ref SoftirqTicks)) : null,
            FromNs(ThreadCpuClock.ReadNs(Ksoftirqd.CpuClock)),
            FromNs(Runtime.Wq.BoundWorkerCpuNs(Id)),
            FromNs(Runtime.Irqs.IrqThreadCpuNs(Id)),
            FromNs(ThreadCpuClock.ReadNs(Volatile.Read(ref _cpuThreadClock))));
    }

    private static TimeSpan? FromNs(long ns) => ns < 0 ? null : TimeSpan.FromTicks(ns / 100);

    internal bool NeedResched => _needResched;

    /// <summary>set_tsk_need_resched(): asks softirq processing on this CPU to stop at its next restart and leave the rest to ksoftirqd.</summary>
    internal void SetNeedResched() => _needResched = true;

    internal void ClearNeedResched() => _needResched = false;

    internal ThreadContext CpuContext => _cpuContext;

    // ---- raising work toward this CPU (any thread) ----

    /// <summary>Wakes cpu/N if it is parked; one read when it is not. PERF: the common case is a running CPU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Kick()
    {
        if (Volatile.Read(ref Line.IdleState) == Parked)
        {
            KickSlow();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void KickSlow()
    {
        if (Interlocked.CompareExchange(ref Line.IdleState, Running, Parked) == Parked)
        {
            _parker.Unpark();
        }
    }

    /// <summary>__raise_softirq_irqoff(): sets softirq <paramref name="nr"/> pending here. Full barrier (Interlocked.Or).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void OrSoftirqPending(int nr)
    {
        Interlocked.Or(ref Line.SoftirqPending, 1 << nr);
        // PERF: the softirq_raise tracepoint and the raise-latency probe: a load and a branch each while off.
        if (DeferRuntimeEventSource.SoftirqOn || Runtime.SoftirqLatencyOn)
        {
            NoteRaise(nr);
        }
    }

    /// <summary>
    /// __raise_softirq_irqoff() for the bh-gate holder: marks <paramref name="nr"/> in its own pending word,
    /// without an atomic (see <see cref="LocalSoftirqPending"/>). B: the holder only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void RaiseHolderLocal(int nr)
    {
        LocalSoftirqPending |= 1 << nr;
        if (DeferRuntimeEventSource.SoftirqOn || Runtime.SoftirqLatencyOn)
        {
            NoteRaise(nr);
        }
    }

    /// <summary>
    /// The softirq_raise tracepoint, and the raise stamp of the raise-to-entry latency histogram: the first
    /// raise since the vector last ran on this CPU wins (later raises coalesce into the same run).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void NoteRaise(int nr)
    {
        if (DeferRuntimeEventSource.SoftirqOn)
        {
            DeferRuntimeEventSource.Log.softirq_raise(nr, SoftirqTable.Names[nr], Id);
        }
        if (Runtime.SoftirqLatencyOn && Volatile.Read(ref RaisedAt[nr]) == 0)
        {
            Interlocked.CompareExchange(ref RaisedAt[nr], Stopwatch.GetTimestamp(), 0);
        }
    }

    /// <summary>Raises a softirq on this CPU from a thread that is not running in its interrupt context.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void RaiseAndKick(int nr)
    {
        OrSoftirqPending(nr);
        Kick();
    }

    /// <summary>Marks hard-IRQ <paramref name="vector"/> pending and kicks cpu/N: an interrupt arriving.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void AssertVector(int vector)
    {
        Debug.Assert((uint)vector < VectorCount, "vector out of range");
        Interlocked.Or(ref Unsafe.Add(ref Line.IrqPending0, vector >> 6), 1L << (vector & 63));
        Kick();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool AnyIrqPending() =>
        (Volatile.Read(ref Line.IrqPending0) | Volatile.Read(ref Line.IrqPending1) |
         Volatile.Read(ref Line.IrqPending2) | Volatile.Read(ref Line.IrqPending3)) != 0;

    /// <summary>Pushes a scheduled tasklet on this CPU's list and raises its softirq (__tasklet_schedule_common).</summary>
    internal void EnqueueTasklet(Tasklet tasklet, bool hi, bool kick)
    {
        tasklet.QueuedOn = this;
        if (hi)
        {
            IntrusiveMpsc.Push(ref Line.HiTaskletHead, tasklet);
            OrSoftirqPending((int)SoftirqVector.Hi);
        }
        else
        {
            IntrusiveMpsc.Push(ref Line.TaskletHead, tasklet);
            OrSoftirqPending((int)SoftirqVector.Tasklet);
        }
        if (kick)
        {
            Kick();
        }
    }

    /// <summary>
    /// __tasklet_schedule_common() for a caller that holds this CPU's bh gate: appended to the holder's
    /// own list, its softirq marked in the holder's own pending word (unless <paramref name="raise"/> is
    /// false), without an atomic operation. PERF: the same-CPU schedule path.
    /// </summary>
    internal void EnqueueTaskletLocal(Tasklet tasklet, bool hi, bool raise = true)
    {
        tasklet.QueuedOn = this;
        ((IIntrusiveNode<Tasklet>)tasklet).Next = null;
        if (hi)
        {
            if (LocalHiTail is null)
            {
                LocalHiHead = tasklet;
            }
            else
            {
                ((IIntrusiveNode<Tasklet>)LocalHiTail).Next = tasklet;
            }
            LocalHiTail = tasklet;
        }
        else
        {
            if (LocalTail is null)
            {
                LocalHead = tasklet;
            }
            else
            {
                ((IIntrusiveNode<Tasklet>)LocalTail).Next = tasklet;
            }
            LocalTail = tasklet;
        }
        if (raise)
        {
            RaiseHolderLocal(hi ? (int)SoftirqVector.Hi : (int)SoftirqVector.Tasklet);
        }
    }

    /// <summary>Takes the holder's own list of <paramref name="hi"/> tasklets, oldest first.</summary>
    internal Tasklet? TakeLocalTasklets(bool hi)
    {
        Tasklet? head;
        if (hi)
        {
            head = LocalHiHead;
            LocalHiHead = LocalHiTail = null;
        }
        else
        {
            head = LocalHead;
            LocalHead = LocalTail = null;
        }
        return head;
    }

    /// <summary>What the bh-gate holder has pending: the shared mask plus its own bits. B: the holder only.</summary>
    internal int HolderPending => Volatile.Read(ref Line.SoftirqPending) | LocalSoftirqPending;

    /// <summary>Releases the bh gate, first moving the holder's own pending bits to the shared mask.</summary>
    internal void ExitBh(ThreadContext ctx)
    {
        int local = LocalSoftirqPending;
        if (local != 0)
        {
            LocalSoftirqPending = 0;
            Interlocked.Or(ref Line.SoftirqPending, local);
        }
        BhGate.Exit(ctx);
    }

    /// <summary>Queues a cross-CPU call and sends the CALL_FUNCTION IPI.</summary>
    internal void EnqueueCall(CallSingleData csd)
    {
        IntrusiveMpsc.Push(ref Line.CallHead, csd);
        AssertVector(CallFunctionVector);
    }

    /// <summary>Rundown protection: a thread of no CPU announces a request toward this CPU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void EnterForeign() => Interlocked.Increment(ref ForeignInFlight.Value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExitForeign() => Interlocked.Decrement(ref ForeignInFlight.Value);

    /// <summary>
    /// kthread_bind(): makes the calling application thread a task of this CPU until the returned binding
    /// is disposed, so it may use local_bh_disable/enable, local_irq_save/restore and preempt_disable on
    /// this CPU, and its raises and schedules go here. With <see cref="RuntimeOptions.Pinning"/> on, the
    /// thread is pinned to this CPU's core like every thread of the CPU (what the OS granted is in
    /// <see cref="CpuBinding.Placement"/>, a refusal reported there as boot reports it), and its previous
    /// affinity comes back when the binding is disposed. As a task of this CPU, its non-preemptible
    /// sections exclude those of the CPU's other tasks (see <see cref="Cpus.CpuContext"/>). Like a
    /// kthread at module unload, a binding must be released before the runtime shuts down: shutdown
    /// refuses new bindings and waits for the live ones, since their requests bypass the checks that
    /// stop threads of no CPU.
    /// </summary>
    public CpuBinding BindCurrentThread()
    {
        if (ThreadContext.Current is { } existing)
        {
            throw new InvalidOperationException($"kthread_bind(): thread '{Thread.CurrentThread.Name}' is already bound to CPU {existing.Cpu.Id}; a thread belongs to one CPU.");
        }
        var ctx = new ThreadContext(this, ThreadRole.Task);
        int[]? previousCores = null;
        string? pinError = null;
        if (Runtime.Options.Pinning)
        {
            previousCores = ThreadPlacement.CurrentThreadCores() ?? ThreadPlacement.AllowedCores();
            pinError = ThreadPlacement.PinCurrentThread(Core);
        }
        var placement = new ThreadPlacementReport(
            Thread.CurrentThread.Name ?? $"managed thread {Environment.CurrentManagedThreadId}", Id,
            Runtime.Options.Pinning ? Core : null, Runtime.Options.Pinning && pinError is null, pinError, "unchanged", true, null);
        var binding = new CpuBinding(ctx, placement, pinError is null ? previousCores : null);
        try
        {
            Runtime.AddBinding(binding);
        }
        catch
        {
            binding.RestoreAffinity();
            throw;
        }
        ThreadContext.Attach(ctx);
        return binding;
    }

    // ---- threads ----

    internal void Start(CountdownEvent booted)
    {
        _thread = new Thread(() => CpuThreadMain(booted), maxStackSize: 0)
        {
            Name = $"cpu/{Id}",
            IsBackground = true,
        };
        _thread.Start();
        Ksoftirqd.Start(booted);
    }

    /// <summary>
    /// Tells cpu/N and ksoftirqd/N to exit (called by shutdown once the CPU is quiescent, or once it gave
    /// up on it) and adds them to <paramref name="threads"/>, which shutdown joins with a bound.
    /// </summary>
    internal void Stop(List<StoppingThread> threads)
    {
        _exit = true;
        Interlocked.Exchange(ref Line.IdleState, Running);
        _parker.Unpark();
        Ksoftirqd.Stop();
        if (_thread is not null)
        {
            threads.Add(new StoppingThread(_thread, () => _cpuContext));
        }
        if (Ksoftirqd.Thread is { } ksoftirqd)
        {
            threads.Add(new StoppingThread(ksoftirqd, () => Ksoftirqd.Context));
        }
    }

    internal bool IsCurrentThreadOwned =>
        ReferenceEquals(Thread.CurrentThread, _thread) || Ksoftirqd.IsCurrentThread;

    /// <summary>
    /// True when nothing is pending or in flight on this CPU: no vector, softirq, tasklet or call
    /// pending, no timer due, both gates free, ksoftirqd asleep and no foreign caller mid-request.
    /// Timers not yet due do not count: shutdown leaves them (see <see cref="CpuTimers"/>).
    /// </summary>
    /// <remarks>
    /// The in-flight count is read first: once it reads 0 with shutdown's state already written, every
    /// earlier foreign request has published its work (and is seen below), and every later one is refused.
    /// Read last, a request could publish after its work was checked and leave before the count was.
    /// </remarks>
    internal bool IsQuiescent =>
        Volatile.Read(ref ForeignInFlight.Value) == 0 &&
        !AnyIrqPending() &&
        Volatile.Read(ref Line.SoftirqPending) == 0 &&
        Volatile.Read(ref LocalSoftirqPending) == 0 &&
        Volatile.Read(ref LocalHead) is null &&
        Volatile.Read(ref LocalHiHead) is null &&
        Volatile.Read(ref Line.TaskletHead) is null &&
        Volatile.Read(ref Line.HiTaskletHead) is null &&
        Volatile.Read(ref Line.CallHead) is null &&
        !IrqGate.IsHeld &&
        !BhGate.IsHeld &&
        !Ksoftirqd.IsRunning &&
        !Timers.HasDueEvent();

    internal long CompletionSum => Volatile.Read(ref SoftirqCompletions) + Volatile.Read(ref HardirqCompletions);

    /// <summary>Applies pinning and priority to the calling thread (one of this CPU's) and records what the OS granted.</summary>
    internal void PlaceCurrentThread(ThreadRole role)
    {
        var options = Runtime.Options;
        string? pinError = null;
        if (options.Pinning)
        {
            pinError = ThreadPlacement.PinCurrentThread(Core);
        }

        string priority;
        string? priorityError = null;
        switch (options.Priorities)
        {
            case PriorityPolicy.None:
                priority = "unchanged";
                break;
            case PriorityPolicy.Fifo when role == ThreadRole.Cpu:
                priority = $"SCHED_FIFO {options.CpuFifoPriority}";
                priorityError = ThreadPlacement.SetFifo(options.CpuFifoPriority);
                break;
            default:
                int nice = role switch
                {
                    ThreadRole.Cpu => options.CpuNice,
                    ThreadRole.Ksoftirqd => options.KsoftirqdNice,
                    _ => 0,
                };
                priority = $"nice {nice}";
                priorityError = ThreadPlacement.SetNice(nice); // also nice 0: see SetNice on inheritance
                break;
        }

        Runtime.RecordPlacement(new ThreadPlacementReport(
            Thread.CurrentThread.Name ?? "?", Id, options.Pinning ? Core : null, options.Pinning && pinError is null, pinError,
            priority, priorityError is null, priorityError));
    }
}
