using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;

namespace DeferRuntime.Tasklets;

/// <summary>
/// struct tasklet_struct: a deferred function that runs in softirq context (TASKLET_SOFTIRQ, or
/// HI_SOFTIRQ for <see cref="HiSchedule"/>) on the CPU that scheduled it, never on two CPUs at once.
/// Create one with <see cref="Runtime.CreateTasklet"/>.
/// </summary>
/// <remarks>
/// State word bit layout (<c>_state</c>, changed only by Interlocked):
/// <code>
///   bit 0  SCHED  scheduled: on some CPU's list, not yet started (TASKLET_STATE_SCHED)
///   bit 1  RUN    its callback is running on some CPU (TASKLET_STATE_RUN)
/// </code>
/// <c>_count</c> is the disable nesting (tasklet_disable increments, tasklet_enable decrements); the
/// tasklet runs only at zero. Scheduling an already scheduled tasklet is a no-op; scheduling it while it
/// runs sets SCHED again, so it runs exactly once more.
/// </remarks>
public sealed class Tasklet : IIntrusiveNode<Tasklet>
{
    internal const int Sched = 1;
    internal const int Run = 2;

    private readonly Action<Tasklet> _callback;
    private int _state; // A: Sched | Run
    private int _count; // A: disable nesting
    private Tasklet? _next; // A: owned by the list the tasklet is on (it is on at most one: SCHED)
    private long _runs; // RUN holder

    internal Tasklet(Runtime runtime, Action<Tasklet> callback, string? name)
    {
        Runtime = runtime;
        _callback = callback;
        Name = name ?? CallbackName.Of(callback);
    }

    /// <summary>The runtime that runs this tasklet.</summary>
    public Runtime Runtime { get; }

    /// <summary>A name for reports and fault records.</summary>
    public string Name { get; }

    /// <summary>TASKLET_STATE_SCHED is set: scheduled and not yet started.</summary>
    public bool IsScheduled => (Volatile.Read(ref _state) & Sched) != 0;

    /// <summary>TASKLET_STATE_RUN is set: the callback is running.</summary>
    public bool IsRunning => (Volatile.Read(ref _state) & Run) != 0;

    /// <summary>The disable count is non-zero.</summary>
    public bool IsDisabled => Volatile.Read(ref _count) != 0;

    /// <summary>How many times the callback has run.</summary>
    public long RunCount => Volatile.Read(ref _runs);

    /// <summary>The CPU whose list it was last queued on.</summary>
    internal VirtualCpu? QueuedOn { get; set; }

    /// <summary>Whether it was last queued on the HI list.</summary>
    internal bool QueuedHi { get; private set; }

    Tasklet? IIntrusiveNode<Tasklet>.Next { get => _next; set => _next = value; }

    /// <summary>tasklet_schedule(): run once on this CPU's TASKLET_SOFTIRQ; a no-op if already scheduled.</summary>
    public void Schedule() => ScheduleCommon(hi: false, "tasklet_schedule()");

    /// <summary>tasklet_hi_schedule(): as <see cref="Schedule"/>, on HI_SOFTIRQ, which runs before every other vector.</summary>
    public void HiSchedule() => ScheduleCommon(hi: true, "tasklet_hi_schedule()");

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ScheduleCommon(bool hi, string caller)
    {
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, Runtime))
        {
            // A thread of this runtime: the CPU it is bound to, as the kernel's this_cpu.
            Runtime.ThrowIfStoppedForTask(ctx, caller);
            if ((Interlocked.Or(ref _state, Sched) & Sched) == 0)
            {
                QueuedHi = hi;
                if (ctx.InSoftirqOrBhDisabled)
                {
                    // The softirq field of preempt_count is non-zero only while this thread holds its
                    // CPU's bh gate: the holder's own list, no atomics, runs at the restart or bh enable.
                    ctx.Cpu.EnqueueTaskletLocal(this, hi);
                }
                else
                {
                    ctx.Cpu.EnqueueTasklet(this, hi, kick: !ctx.InInterrupt);
                }
            }
            return;
        }
        ScheduleForeign(hi, caller);
    }

    /// <summary>From a thread of no CPU: routed by the placement policy, with rundown protection against shutdown.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ScheduleForeign(bool hi, string caller)
    {
        var cpu = Runtime.EnterForeign(caller);
        try
        {
            if ((Interlocked.Or(ref _state, Sched) & Sched) == 0)
            {
                QueuedHi = hi;
                cpu.EnqueueTasklet(this, hi, kick: true);
            }
        }
        finally
        {
            cpu.ExitForeign();
        }
    }

    /// <summary>tasklet_disable_nosync(): stop it from running; a running instance is not waited for.</summary>
    public void DisableNoSync()
    {
        Interlocked.Increment(ref _count);
    }

    /// <summary>
    /// tasklet_disable(): stop it from running and wait for a running instance to finish. The wait may
    /// sleep (as in Linux 6.x), so it is refused in atomic context: use <see cref="DisableNoSync"/> there.
    /// </summary>
    public void Disable()
    {
        // Its own callback runs in softirq context, so this also refuses a tasklet waiting for itself.
        ThrowIfAtomic("tasklet_disable()", "use DisableNoSync() there");
        Interlocked.Increment(ref _count);
        WaitWhileRunning("tasklet_disable()");
    }

    /// <summary>
    /// tasklet_enable(): undo one disable. A tasklet scheduled while disabled runs once the count is back
    /// to zero.
    /// </summary>
    public void Enable()
    {
        int count = Interlocked.Decrement(ref _count);
        if (count < 0)
        {
            Interlocked.Increment(ref _count);
            throw new InvalidOperationException($"tasklet_enable() on tasklet '{Name}' without a matching tasklet_disable(): the disable count would go negative.");
        }
        if (count == 0 && (Volatile.Read(ref _state) & Sched) != 0)
        {
            // The kernel re-raises TASKLET_SOFTIRQ for a disabled tasklet on every pass and busy-loops
            // through ksoftirqd until it is enabled; we keep it on its list without re-raising and raise
            // here instead: the same order of events without burning the core.
            var cpu = QueuedOn;
            if (cpu is not null && !Runtime.IsStopped)
            {
                cpu.RaiseAndKick(QueuedHi ? (int)Softirqs.SoftirqVector.Hi : (int)Softirqs.SoftirqVector.Tasklet);
            }
        }
    }

    /// <summary>
    /// tasklet_kill(): wait until a scheduled instance has run and a running one has finished, and leave
    /// the tasklet unscheduled. A tasklet that keeps rescheduling itself is stopped by it. Sleeps: not
    /// allowed from atomic context. A disabled, scheduled tasklet never runs, so killing it waits forever,
    /// as in the kernel: enable it first.
    /// </summary>
    public void Kill()
    {
        ThrowIfAtomic("tasklet_kill()", "it waits for the tasklet to run and finish, and must be called from process context");

        // Take SCHED ourselves; while someone else holds it, the scheduled instance has yet to run.
        var backoff = default(Backoff);
        while ((Interlocked.Or(ref _state, Sched) & Sched) != 0)
        {
            do
            {
                Runtime.ThrowIfDead("tasklet_kill()");
                backoff.Wait();
            }
            while ((Volatile.Read(ref _state) & Sched) != 0);
        }
        WaitWhileRunning("tasklet_kill()");
        Interlocked.And(ref _state, ~Sched);
    }

    private void WaitWhileRunning(string caller)
    {
        var backoff = default(Backoff);
        while ((Volatile.Read(ref _state) & Run) != 0)
        {
            Runtime.ThrowIfDead(caller);
            backoff.Wait();
        }
    }

    private void ThrowIfAtomic(string caller, string advice)
    {
        var ctx = ThreadContext.Current;
        if (Locking.MightSleep.IsAtomic(ctx))
        {
            throw new InvalidOperationException($"{caller} on tasklet '{Name}' from atomic context ({ctx?.Describe() ?? "a spinlock held"}): {advice}.");
        }
    }

    // ---- run side (tasklet_action_common), on the CPU holding the bh gate ----

    /// <summary>tasklet_trylock(): take RUN; false if it is running on another CPU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryLockRun() => (Interlocked.Or(ref _state, Run) & Run) == 0;

    /// <summary>tasklet_unlock(): drop RUN (full barrier, so Disable/Kill waiters see the callback's effects).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void UnlockRun() => Interlocked.And(ref _state, ~Run);

    /// <summary>tasklet_clear_sched(): clear SCHED before the callback, so the callback may reschedule itself.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool ClearSched() => (Interlocked.And(ref _state, ~Sched) & Sched) != 0;

    internal bool IsEnabled => Volatile.Read(ref _count) == 0;

    internal void Invoke()
    {
        try
        {
            _callback(this);
        }
        finally
        {
            _runs++;
        }
    }
}
