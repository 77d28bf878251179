using System.Runtime.CompilerServices;

namespace DeferRuntime.Cpus;

/// <summary>
/// Per-thread execution context of a thread bound to a virtual CPU: the kernel's current task's
/// preempt_count plus "this thread holds CPU N's irq gate". Threads that belong to no CPU have none.
/// </summary>
/// <remarks>Every field is written only by the thread that owns the context.</remarks>
internal sealed class ThreadContext
{
    [ThreadStatic]
    private static ThreadContext? t_current;

    public ThreadContext(VirtualCpu cpu, ThreadRole role)
    {
        Cpu = cpu;
        Role = role;
        IsTask = role != ThreadRole.Cpu;
    }

    /// <summary>The CPU this thread is bound to.</summary>
    public VirtualCpu Cpu { get; }

    /// <summary>What the thread is.</summary>
    public ThreadRole Role { get; }

    /// <summary>
    /// A task of its CPU (every role but cpu/N, which is the CPU's interrupt context): it takes the CPU's
    /// <see cref="TaskGate"/> while it is non-preemptible.
    /// </summary>
    public readonly bool IsTask;

    /// <summary>
    /// 1 while this task is inside a non-preemptible section (it holds its CPU's <see cref="TaskGate"/>).
    /// Written by the owner; read by another task of the CPU revoking the gate's bias, after a
    /// process-wide barrier. Always 0 on cpu/N.
    /// </summary>
    public int InTaskSection;

    /// <summary>This task's marker for revoking the task gate's bias (preallocated: a hand-over allocates nothing).</summary>
    public readonly TaskGate.Revocation Revocation = new();

    /// <summary>
    /// True while this task holds its CPU's bh gate because it disabled interrupts, not because it disabled
    /// bottom halves: on one CPU, interrupts off keeps that CPU's softirqs out too (they run on irq exit,
    /// never while the CPU has interrupts disabled, and ksoftirqd is a task that cannot run meanwhile).
    /// Released with the irq gate.
    /// </summary>
    public bool BhHeldForIrqs;

    /// <summary>preempt_count(): see <see cref="PreemptCount"/> for the layout.</summary>
    public int PreemptCount;

    /// <summary>True while this thread holds its CPU's irq gate (local interrupts disabled).</summary>
    public bool IrqsOff;

    /// <summary>
    /// The gate of this CPU this thread is waiting to take (<see cref="ContextGate.Enter"/>'s slow path),
    /// or null. Written by the owner; read racily by shutdown's report of threads it left behind (what a
    /// stuck thread waits for) and by tests.
    /// </summary>
    public ContextGate? WaitingForGate;

    /// <summary>The worker pool to tell when this thread blocks and resumes (workers only), or null.</summary>
    public Locking.ISleepNotifier? SleepNotifier;

    /// <summary>
    /// Naps taken inside the runtime's spin-waits (a contended spinlock, a pool lock, a gate): the
    /// thread is asleep in the OS, but in kernel terms it spins, so the workqueue ticker, which reads
    /// this racily, must not take it for a worker blocked outside the runtime.
    /// </summary>
    public long SpinWaitNaps;

    // What the thread runs now, for shutdown's report of a thread it could not join (DescribeRunning).
    // Written by the owner around each user callback (VirtualCpu.RunCallback) and each softirq action;
    // read racily by shutdown, and only once the thread has failed to exit, i.e. is stuck where it was.

    /// <summary>The state of the innermost user callback running on this thread when it is of a reference type, or null.</summary>
    public object? RunningState;

    /// <summary>That callback's <c>Func&lt;T, string&gt;</c> naming it (RunCallback's describe), or null (none, or a value-type state).</summary>
    public Delegate? RunningDescribe;

    /// <summary>The softirq vector this thread is running, plus one; 0 while it runs none.</summary>
    public int RunningSoftirq;

    /// <summary>The context of the calling thread, or null if it is bound to no CPU.</summary>
    public static ThreadContext? Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => t_current;
    }

    /// <summary>The calling thread's lock bookkeeping, kept here so a thread of a CPU finds both with one thread-static lookup.</summary>
    public Locking.LockThreadState? LockState;

    /// <summary>Binds the calling thread: called once at the top of every runtime-owned thread.</summary>
    public static void Attach(ThreadContext context)
    {
        context.LockState = Locking.LockThreadState.Current;
        t_current = context;
    }

    /// <summary>Unbinds the calling thread when it exits.</summary>
    public static void Detach() => t_current = null;

    /// <summary>A short real sleep inside a runtime spin-wait (<see cref="Platform.Nap.Short"/>), counted in <see cref="SpinWaitNaps"/>.</summary>
    public static void NapInSpinWait()
    {
        if (t_current is { } ctx)
        {
            Volatile.Write(ref ctx.SpinWaitNaps, ctx.SpinWaitNaps + 1);
        }
        Platform.Nap.Short();
    }

    public bool InHardirq => (PreemptCount & Cpus.PreemptCount.HardirqMask) != 0;
    public bool InServingSoftirq => (PreemptCount & Cpus.PreemptCount.SoftirqOffset) != 0;
    public bool InSoftirqOrBhDisabled => (PreemptCount & Cpus.PreemptCount.SoftirqMask) != 0;
    public bool InInterrupt => (PreemptCount & (Cpus.PreemptCount.HardirqMask | Cpus.PreemptCount.SoftirqMask)) != 0;
    public bool IsCpuThread => Role == ThreadRole.Cpu;

    /// <summary>
    /// Before this thread goes from preemptible to non-preemptible: a task takes its CPU's task gate (a
    /// no-op when already inside a section, and on cpu/N). PERF: a load and a branch when inside.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EnterNonPreemptible()
    {
        if (IsTask && InTaskSection == 0)
        {
            Cpu.TaskGate.Enter(this);
        }
    }

    /// <summary>After a preempt_count decrement or an irq enable: a task that is preemptible again leaves the task gate.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void LeaveIfPreemptible()
    {
        if (InTaskSection != 0 && PreemptCount == 0 && !IrqsOff)
        {
            Cpu.TaskGate.Exit(this);
        }
    }

    /// <summary>
    /// The name of the innermost callback this thread is running ("tasklet 'x'", "irq 5 handler 'eth0'",
    /// "work item 'y'"), built now from what <see cref="VirtualCpu.RunCallback"/> recorded; null if it runs
    /// none (or one whose state is a value type: a softirq action, see <see cref="RunningSoftirq"/>). For
    /// reports of another thread; a torn read (the thread moved on meanwhile) gives null, not a wrong name.
    /// </summary>
    public string? DescribeRunning()
    {
        var describe = Volatile.Read(ref RunningDescribe);
        var state = Volatile.Read(ref RunningState);
        if (describe is null || state is null || describe.Method.GetParameters() is not [{ ParameterType: var type }] || !type.IsInstanceOfType(state))
        {
            return null;
        }
        try
        {
            return describe.DynamicInvoke(state) as string;
        }
#pragma warning disable CA1031 // a report of a stuck thread must not fail on a describe that throws
        catch (Exception)
#pragma warning restore CA1031
        {
            return null;
        }
    }

    public string Describe() => $"{Thread.CurrentThread.Name ?? "thread"} (preempt_count=0x{PreemptCount:x}, irqs {(IrqsOff ? "disabled" : "enabled")})";
}
