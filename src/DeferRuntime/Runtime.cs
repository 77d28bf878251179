using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using DeferRuntime.Cpus;
using DeferRuntime.Devices;
using DeferRuntime.Diagnostics;
using DeferRuntime.Interrupts;
using DeferRuntime.Platform;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;
using DeferRuntime.Timers;
using DeferRuntime.Workqueues;

namespace DeferRuntime;

/// <summary>
/// One booted instance of the runtime: its virtual CPUs with their threads, the softirq table, tasklets
/// and cross-CPU calls. Boot with <see cref="Boot"/>; <see cref="Dispose"/> shuts down in order and
/// loses nothing that was accepted.
/// </summary>
/// <remarks>
/// <para>What runs where: <c>cpu/N</c> takes hard IRQs (including the CALL_FUNCTION IPI) with CPU N's
/// irq gate held and runs softirqs on irq exit with its bh gate held; <c>ksoftirqd/N</c> takes over
/// softirqs that overflow the irq-exit budget. Tasklets run inside the HI and TASKLET softirqs.</para>
/// <para>Threads that belong to no CPU (the application's) may raise softirqs, schedule tasklets and
/// send calls: each request goes to a CPU chosen by <see cref="RuntimeOptions.ForeignPlacement"/>,
/// which is kicked. Local interrupt and bh control from such threads is refused.</para>
/// <para>Shutdown: refuse new requests from threads of no CPU, wait for requests in flight, let every
/// CPU run what is pending (work chained from handlers is still accepted, timers already due run) until
/// all CPUs are quiescent and no handler ran while that was checked, then stop and join every thread.
/// Timers not yet due are left armed and counted in <see cref="AbandonedTimerCount"/>. All of it within
/// the caller's timeout and a short grace: a thread that never returns from a handler is left behind and
/// reported (see <see cref="Shutdown"/>).</para>
/// <para>Several instances may live in one process; there is no static mutable state beyond the
/// per-thread context.</para>
/// </remarks>
public sealed partial class Runtime : IDisposable, IAsyncDisposable
{
    // The states only go up; shutdown's thread is the only writer after Running.
    private const int StateRunning = 0;
    private const int StateStopping = 1; // shutdown began: new foreign requests refused, the drain runs
    private const int StateGaveUp = 2; // the drain's deadline passed (or its token fired): waits on runtime threads give up
    private const int StateStopped = 3; // every thread joined or left behind

    private readonly VirtualCpu[] _cpus; // I
    private readonly int[] _osCoreToCpu; // I: OS core number -> virtual CPU pinned there (ProcessorLocal placement)
    private readonly List<ThreadPlacementReport> _placements = []; // L: _placements
    private readonly List<CpuBinding> _bindings = []; // L: _bindings; application threads bound with BindCurrentThread
    private int _state; // A: StateRunning / StateStopping / StateGaveUp / StateStopped
    private int _roundRobin; // A: next CPU under RoundRobin placement
    private volatile KernelPanicException? _panic;
    private readonly ManualResetEventSlim _stopped = new(); // set when Dispose has joined every thread
    private readonly TaskCompletionSource _stoppedTask = new(TaskCreationOptions.RunContinuationsAsynchronously); // completed with _stopped, for ShutdownAsync

    private Runtime(RuntimeOptions options)
    {
        Options = options;
        Hz = options.Hz;
        PollWindowTicks = (long)(options.PollWindow.TotalSeconds * Stopwatch.Frequency);
        int[] cores = ThreadPlacement.AllowedCores();
        _cpus = new VirtualCpu[options.CpuCount];
        for (int i = 0; i < _cpus.Length; i++)
        {
            _cpus[i] = new VirtualCpu(this, i, cores[i % cores.Length]);
        }
        CoreRunQueue.Attach(_cpus, options.IdlePolicy);
        _osCoreToCpu = new int[cores.Max() + 1];
        for (int core = 0; core < _osCoreToCpu.Length; core++)
        {
            int index = Array.IndexOf(cores, core);
            _osCoreToCpu[core] = index < 0 ? core % _cpus.Length : index % _cpus.Length;
        }

        Softirqs.Open(SoftirqVector.Hi, TaskletAction.RunHi);
        Softirqs.Open(SoftirqVector.Tasklet, TaskletAction.RunNormal);
        Softirqs.Open(SoftirqVector.Timer, CpuTimers.RunTimerSoftirq);
        Softirqs.Open(SoftirqVector.Hrtimer, CpuTimers.RunHrtimerSoftirq);
        Irqs = new IrqController(this, options.IrqLines);
        NetRx = new NetRxSoftirq(this);
        Wq = new WorkqueueSubsystem(this);
    }

    /// <summary>Boots a runtime: validates the options, starts cpu/N and ksoftirqd/N for every CPU, pins them, and returns once all are running.</summary>
    public static Runtime Boot(RuntimeOptions? options = null)
    {
        options ??= new RuntimeOptions();
        options.Validate();
        var runtime = new Runtime(options);
        using var booted = new CountdownEvent(runtime._cpus.Length * 2);
        foreach (var cpu in runtime._cpus)
        {
            cpu.Start(booted);
        }
        booted.Wait();
        runtime.Wq.StartTicker();
        // Make the tracepoints' event source exist, so a session started now (dotnet-trace) sees it
        // before the first event path touches it.
        _ = DeferRuntimeEventSource.Log;
        return runtime;
    }

    /// <summary>The options this runtime was booted with.</summary>
    public RuntimeOptions Options { get; }

    /// <summary>The virtual CPUs, indexed by id.</summary>
    public IReadOnlyList<VirtualCpu> Cpus => _cpus;

    /// <summary>Handler exceptions and broken contexts (oopses) reported so far.</summary>
    public FaultLog Faults { get; } = new();

    private volatile RuntimeMetrics? _metrics; // A: set by RuntimeMetrics.Create, read by the latency probes

    /// <summary>The metrics publishing this runtime's counters, or null.</summary>
    internal RuntimeMetrics? Metrics => _metrics;

    /// <summary>A queue-latency histogram listens. PERF: two loads and a null check while nobody does.</summary>
    internal bool WorkLatencyOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _metrics is { WorkLatencyOn: true };
    }

    /// <summary>A softirq raise-latency histogram listens.</summary>
    internal bool SoftirqLatencyOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _metrics is { SoftirqLatencyOn: true };
    }

    internal bool AttachMetrics(RuntimeMetrics metrics) => Interlocked.CompareExchange(ref _metrics, metrics, null) is null;

    internal void DetachMetrics(RuntimeMetrics metrics) => Interlocked.CompareExchange(ref _metrics, null, metrics);

    /// <summary>What the OS granted each thread at boot (pinning, priority), and why not where refused.</summary>
    public IReadOnlyList<ThreadPlacementReport> Placements
    {
        get
        {
            lock (_placements)
            {
                return _placements.OrderBy(p => p.Cpu).ThenBy(p => p.Thread, StringComparer.Ordinal).ToArray();
            }
        }
    }

    /// <summary>True once shutdown has begun.</summary>
    public bool IsShutDown => Volatile.Read(ref _state) != StateRunning;

    internal SoftirqTable Softirqs { get; } = new();

    internal long PollWindowTicks { get; }

    /// <summary>The run queue of OS core <paramref name="core"/>, one that a virtual CPU's threads are pinned to.</summary>
    internal CoreRunQueue RunQueueOfCore(int core) => _cpus.First(c => c.Core == core).RunQueue;

    internal bool IsPanicked => _panic is not null;

    internal bool IsStopped => Volatile.Read(ref _state) == StateStopped;


    /// <summary>The interrupt controller: lines, request_irq()/free_irq(), disable/enable, affinity, /proc/interrupts.</summary>
    public IrqController Irqs { get; }

    /// <summary>NET_RX and NAPI: netif_napi_add(), the per-CPU poll lists, the budgets, /proc/net/softnet_stat. NET_RX opens on the first NapiAdd.</summary>
    public NetRxSoftirq NetRx { get; }

    internal bool IsStoppedOrPanicked => IsStopped || _panic is not null;

    /// <summary>False once shutdown has begun or the runtime panicked: threads of no CPU may not start new requests.</summary>
    internal bool AcceptsForeignWork => Volatile.Read(ref _state) == StateRunning && _panic is null;

    // ---- softirqs ----

    /// <summary>open_softirq(): installs the action of <paramref name="vector"/>; once per vector. HI and TASKLET (tasklets), TIMER and HRTIMER (timers) are the runtime's own.</summary>
    public void OpenSoftirq(SoftirqVector vector, Action action)
    {
        ThrowIfUnusable("open_softirq()");
        Softirqs.Open(vector, action);
    }

    /// <summary>
    /// raise_softirq(): marks <paramref name="vector"/> pending on the calling thread's CPU, or, from a
    /// thread of no CPU, on the CPU the placement policy picks, and makes sure it will run. Allocation-free.
    /// </summary>
    public void RaiseSoftirq(SoftirqVector vector)
    {
        int nr = Softirqs.CheckRaise(vector, "raise_softirq");
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, this))
        {
            ThrowIfStoppedForTask(ctx, "raise_softirq()");
            RaiseLocal(ctx, nr);
            return;
        }
        RaiseForeign(nr, "raise_softirq()");
    }

    /// <summary>raise_softirq_irqoff(): as <see cref="RaiseSoftirq"/>, for callers that already have local interrupts disabled (hard-IRQ handlers, LocalIrqSave sections).</summary>
    public void RaiseSoftirqIrqOff(SoftirqVector vector)
    {
        int nr = Softirqs.CheckRaise(vector, "raise_softirq_irqoff");
        var ctx = ThreadContext.Current;
        if (ctx is null || !ReferenceEquals(ctx.Cpu.Runtime, this) || !ctx.IrqsOff)
        {
            throw new InvalidOperationException(
                "raise_softirq_irqoff() needs local interrupts disabled on one of this runtime's CPUs (a hard-IRQ handler or a LocalIrqSave section); use RaiseSoftirq() elsewhere.");
        }
        RaiseLocal(ctx, nr);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RaiseLocal(ThreadContext ctx, int nr)
    {
        // In interrupt context (hardirq, softirq, bh disabled) the softirq runs on irq exit, at the
        // restart of the running __do_softirq, or at local_bh_enable(). Outside it the kernel wakes
        // ksoftirqd; we kick cpu/N instead, which runs it at once as irq exit would.
        if (ctx.InInterrupt)
        {
            ctx.Cpu.OrSoftirqPending(nr);
        }
        else
        {
            ctx.Cpu.RaiseAndKick(nr);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RaiseForeign(int nr, string caller)
    {
        var cpu = EnterForeign(caller);
        cpu.RaiseAndKick(nr);
        cpu.ExitForeign();
    }

    // ---- tasklets ----

    /// <summary>tasklet_setup(): a tasklet that runs <paramref name="callback"/> in softirq context. Allocate it once and schedule it many times.</summary>
    public Tasklet CreateTasklet(Action<Tasklet> callback, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(callback);
        ThrowIfUnusable("tasklet_setup()");
        return new Tasklet(this, callback, name);
    }

    // ---- cross-CPU calls ----

    /// <summary>
    /// smp_call_function_single(): runs <paramref name="func"/> on CPU <paramref name="cpu"/> in hard-IRQ
    /// context. On the caller's own CPU it runs at once with local interrupts disabled. With
    /// <paramref name="wait"/> it returns when the function has run, and rethrows what it threw.
    /// </summary>
    public void SmpCallFunctionSingle(int cpu, Action func, bool wait = true)
    {
        ArgumentNullException.ThrowIfNull(func);
        var target = CpuAt(cpu, "smp_call_function_single()");
        var ctx = ThreadContext.Current;
        bool own = ctx is not null && ReferenceEquals(ctx.Cpu, target);
        if (own)
        {
            var flags = CpuContext.LocalIrqSave();
            try
            {
                func();
            }
            finally
            {
                CpuContext.LocalIrqRestore(flags);
            }
            return;
        }
        if (wait && ctx is not null && (ctx.IrqsOff || ctx.InInterrupt))
        {
            throw new InvalidOperationException(
                $"smp_call_function_single(cpu {cpu}, wait) from {ctx.Describe()}: waiting for another CPU with interrupts or softirqs disabled can deadlock; pass wait: false.");
        }

        var csd = new CallSingleData(static f => ((Action)f!)(), func);
        SmpCallFunctionSingleAsync(cpu, csd);
        if (!wait)
        {
            return;
        }
        var backoff = default(Backoff);
        while (csd.IsBusy)
        {
            ThrowIfDead("smp_call_function_single()");
            backoff.Wait();
        }
        if (csd.Fault is { } fault)
        {
            throw new InvalidOperationException($"smp_call_function_single(cpu {cpu}): the function threw {fault.GetType().Name}: {fault.Message}", fault);
        }
    }

    /// <summary>
    /// smp_call_function_single_async(): queues a pre-allocated call on CPU <paramref name="cpu"/> and
    /// returns at once; allocation-free. Returns false (the kernel's -EBUSY) if <paramref name="csd"/> is
    /// still queued or running from an earlier call.
    /// </summary>
    public bool SmpCallFunctionSingleAsync(int cpu, CallSingleData csd)
    {
        ArgumentNullException.ThrowIfNull(csd);
        var target = CpuAt(cpu, "smp_call_function_single_async()");
        var ctx = ThreadContext.Current;
        bool bound = ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, this);
        if (bound)
        {
            ThrowIfStoppedForTask(ctx!, "smp_call_function_single_async()");
        }
        else
        {
            EnterForeignOn(target, "smp_call_function_single_async()");
        }
        try
        {
            if (!csd.TryLock())
            {
                return false;
            }
            target.EnqueueCall(csd);
            return true;
        }
        finally
        {
            if (!bound)
            {
                target.ExitForeign();
            }
        }
    }

    private VirtualCpu CpuAt(int cpu, string caller)
    {
        if ((uint)cpu >= (uint)_cpus.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(cpu), cpu, $"{caller}: CPU {cpu} does not exist; this runtime has CPUs 0 to {_cpus.Length - 1}.");
        }
        return _cpus[cpu];
    }

    // ---- threads of no CPU ----

    /// <summary>Picks the CPU for a request from a thread of no CPU and enters its rundown protection.</summary>
    internal VirtualCpu EnterForeign(string caller)
    {
        VirtualCpu cpu;
        if (Options.ForeignPlacement == ForeignPlacement.RoundRobin)
        {
            cpu = _cpus[(int)((uint)Interlocked.Increment(ref _roundRobin) % (uint)_cpus.Length)];
        }
        else
        {
            cpu = _cpus[ProcessorLocalCpuId()];
        }
        EnterForeignOn(cpu, caller);
        return cpu;
    }

    /// <summary>
    /// The virtual CPU pinned to the OS core the calling thread is running on at this instant
    /// (<see cref="ForeignPlacement.ProcessorLocal"/>); a core no CPU is pinned to maps modulo the CPU count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int ProcessorLocalCpuId()
    {
        int core = Thread.GetCurrentProcessorId();
        return (uint)core < (uint)_osCoreToCpu.Length ? _osCoreToCpu[core] : (int)((uint)core % (uint)_cpus.Length);
    }

    /// <summary>Enters the rundown protection of CPU <paramref name="cpu"/> for a request from a thread of no CPU aimed at it.</summary>
    internal VirtualCpu EnterForeignOnCpu(int cpu, string caller)
    {
        var target = CpuAt(cpu, caller);
        EnterForeignOn(target, caller);
        return target;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void EnterForeignOn(VirtualCpu cpu, string caller)
    {
        // Increment first (full barrier), then read the state: shutdown writes the state, then waits for
        // every CPU's in-flight count to drain, so no request slips in behind its check.
        cpu.EnterForeign();
        if (Volatile.Read(ref _state) != StateRunning || _panic is not null)
        {
            cpu.ExitForeign();
            ThrowIfUnusable(caller);
        }
    }

    /// <summary>
    /// Nothing a thread of this runtime waits for is sure to happen any more: the runtime panicked, or
    /// its shutdown gave up (the drain's deadline passed or its token fired, leaving threads that may
    /// never return) or is over. Waits on another runtime thread (a gate, a contended spinlock's naps, a
    /// synchronous IPI, tasklet_kill) check it and give up with <see cref="ThrowIfDead"/>. False during
    /// the drain itself: such waits are how the drain's work gets done. PERF: two loads.
    /// </summary>
    internal bool IsDead
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _state) >= StateGaveUp || _panic is not null;
    }

    /// <summary>
    /// For waits on the runtime's threads (a synchronous IPI, tasklet_kill, tasklet_disable, a gate, a
    /// spinlock): once <see cref="IsDead"/>, nothing will ever finish what is waited for, so say so: a
    /// <see cref="KernelPanicException"/> after a panic, else an <see cref="ObjectDisposedException"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ThrowIfDead(string caller)
    {
        if (IsDead)
        {
            ThrowDead(caller);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowDead(string caller) => throw DeadException(caller);

    /// <summary>What <see cref="ThrowIfDead"/> throws, for awaited waits that fail their task with it instead.</summary>
    internal Exception DeadException(string caller)
    {
        if (_panic is { } panic)
        {
            return new KernelPanicException(panic.Fault);
        }
        if (IsStopped)
        {
            return new ObjectDisposedException(nameof(Runtime), $"{caller}: the runtime has stopped; what it waits for will never run.");
        }
        return new ObjectDisposedException(nameof(Runtime), $"{caller}: the runtime's shutdown gave up waiting (its deadline passed); what this waits for may never run.");
    }

    /// <summary>Requests from an application thread still bound after shutdown (its binding leaked) are refused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ThrowIfStoppedForTask(ThreadContext ctx, string caller)
    {
        if (ctx.Role == ThreadRole.Task && Volatile.Read(ref _state) == StateStopped)
        {
            ThrowIfUnusable(caller);
        }
    }

    internal void ThrowIfNotAccepting(string caller) => ThrowIfUnusable(caller);

    private void ThrowIfUnusable(string caller)
    {
        if (_panic is { } panic)
        {
            throw new KernelPanicException(panic.Fault);
        }
        if (Volatile.Read(ref _state) != StateRunning)
        {
            throw new ObjectDisposedException(nameof(Runtime), $"{caller}: the runtime has been shut down and accepts no new work.");
        }
    }

    // ---- reporting ----

    /// <summary>Reports an oops from a CPU thread: counted, kept, announced; with PanicOnOops the runtime halts.</summary>
    internal void ReportFault(VirtualCpu cpu, string source, Exception exception)
    {
        var record = new FaultRecord(DateTimeOffset.UtcNow, cpu.Id, Thread.CurrentThread.Name ?? "?", source, exception);
        Faults.Add(record);
        // A wait that gave up because shutdown did (ThrowIfDead) is no driver bug: recorded, never fatal.
        if (Options.PanicOnOops && _panic is null && Volatile.Read(ref _state) < StateGaveUp)
        {
            _panic = new KernelPanicException(record);
            foreach (var c in _cpus)
            {
                c.Kick();
            }
            // Awaited flushes and cancels give up as the sleeping ones do (ThrowIfDead).
            Wq.WakeAsyncWaitersOnDeath();
        }
    }

    /// <summary>
    /// WARN(): records a warning in <see cref="Faults"/> from any thread; never panics, because the
    /// runtime has handled the condition (the kernel's WARN is not an oops).
    /// </summary>
    internal void ReportWarning(int cpu, string source, string message, FaultKind kind = FaultKind.Warning)
    {
        Faults.Add(new FaultRecord(DateTimeOffset.UtcNow, cpu, Thread.CurrentThread.Name ?? "?", source, new KernelWarningException(message)) { Kind = kind });
    }

    /// <summary>Registers a binding; refused once shutdown has begun (checked under the same lock shutdown takes).</summary>
    internal void AddBinding(CpuBinding binding)
    {
        lock (_bindings)
        {
            if (Volatile.Read(ref _state) != StateRunning)
            {
                throw new ObjectDisposedException(nameof(Runtime), "kthread_bind(): the runtime has been shut down and accepts no new work.");
            }
            _bindings.Add(binding);
        }
    }

    internal void RemoveBinding(CpuBinding binding)
    {
        lock (_bindings)
        {
            _bindings.Remove(binding);
        }
    }

    private int LiveBindingCount()
    {
        lock (_bindings)
        {
            return _bindings.Count;
        }
    }

    private string[] LiveBindings()
    {
        lock (_bindings)
        {
            return _bindings.Select(b => $"'{b.ThreadName}' on CPU {b.Cpu.Id}").ToArray();
        }
    }

    internal void RecordPlacement(ThreadPlacementReport report)
    {
        lock (_placements)
        {
            _placements.Add(report);
        }
    }

    /// <summary>The panic that halted this runtime, or null.</summary>
    public KernelPanicException? Panic => _panic;

    /// <summary>/proc/softirqs: executions per vector (rows) and CPU (columns), in the kernel's format.</summary>
    public string RenderSoftirqs()
    {
        var sb = new StringBuilder();
        sb.Append(' ', 13);
        foreach (var cpu in _cpus)
        {
            sb.Append(CultureInfo.InvariantCulture, $" {"CPU" + cpu.Id.ToString(CultureInfo.InvariantCulture),14}");
        }
        sb.AppendLine();
        for (int nr = 0; nr < SoftirqTable.VectorCount; nr++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{SoftirqTable.Names[nr],12}:");
            foreach (var cpu in _cpus)
            {
                sb.Append(CultureInfo.InvariantCulture, $" {cpu.GetSoftirqCount((SoftirqVector)nr),14}");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>CPU time consumed by the kworkers of every unbound pool (they belong to no one CPU; see <see cref="VirtualCpu.GetCpuTime"/> for the per-CPU split). Null without per-thread CPU clocks.</summary>
    public TimeSpan? GetUnboundWorkerCpuTime()
    {
        long ns = Wq.UnboundWorkerCpuNs();
        return ns < 0 ? null : TimeSpan.FromTicks(ns / 100);
    }

    /// <summary>The boot report: each thread's pinning and priority as the OS granted them.</summary>
    public string RenderPlacements()
    {
        var sb = new StringBuilder();
        foreach (var p in Placements)
        {
            sb.AppendLine(p.ToString());
        }
        return sb.ToString();
    }
}
