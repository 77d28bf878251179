using System.Runtime.CompilerServices;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Cpus;

/// <summary>
/// The calling thread's execution context and local interrupt/bh control: preempt_count queries
/// (in_irq, in_softirq, in_interrupt, in_atomic, irqs_disabled, smp_processor_id) and
/// local_irq_save/restore, local_irq_disable/enable, local_bh_disable/enable, preempt_disable/enable.
/// </summary>
/// <remarks>
/// The queries answer for any thread: a thread of no CPU is in task context on no CPU. The controls
/// need a thread bound to a CPU (a handler, tasklet, softirq or worker of a runtime): local interrupt
/// and bh state belong to a CPU, so from any other thread they throw <see cref="InvalidOperationException"/>.
/// </remarks>
public static class CpuContext
{
    /// <summary>in_hardirq(): running a hard-IRQ handler.</summary>
    public static bool InIrq => ThreadContext.Current?.InHardirq ?? false;

    /// <summary>in_softirq(): serving a softirq or with bottom halves disabled.</summary>
    public static bool InSoftirq => ThreadContext.Current?.InSoftirqOrBhDisabled ?? false;

    /// <summary>in_serving_softirq(): running a softirq handler (or a tasklet).</summary>
    public static bool InServingSoftirq => ThreadContext.Current?.InServingSoftirq ?? false;

    /// <summary>in_interrupt(): hard IRQ, softirq, or bottom halves disabled.</summary>
    public static bool InInterrupt => ThreadContext.Current?.InInterrupt ?? false;

    /// <summary>
    /// in_task(): in task context, not in a hard-IRQ handler or serving a softirq (a tasklet, a BH work
    /// item), as include/linux/preempt.h defines it (there are no NMIs here). A task with bottom halves or
    /// preemption disabled is still in task context; a kworker, an irq thread, a bound task and a thread of
    /// no CPU are tasks.
    /// </summary>
    public static bool InTask => ThreadContext.Current is not { } ctx || !(ctx.InHardirq || ctx.InServingSoftirq);

    /// <summary>in_atomic(): preempt_count non-zero, or local interrupts disabled: sleeping is not allowed.</summary>
    public static bool InAtomic => ThreadContext.Current is { } ctx && (ctx.PreemptCount != 0 || ctx.IrqsOff);

    /// <summary>irqs_disabled(): the calling thread holds its CPU's irq gate.</summary>
    public static bool IrqsDisabled => ThreadContext.Current?.IrqsOff ?? false;

    /// <summary>preempt_count() of the calling thread (0 for a thread of no CPU).</summary>
    public static int PreemptCountValue => ThreadContext.Current?.PreemptCount ?? 0;

    /// <summary>raw_smp_processor_id(): the virtual CPU the calling thread is bound to, or -1 for a thread of no CPU.</summary>
    public static int CurrentCpuId => ThreadContext.Current?.Cpu.Id ?? -1;

    /// <summary>The virtual CPU the calling thread is bound to, or null.</summary>
    public static VirtualCpu? CurrentCpu => ThreadContext.Current?.Cpu;

    /// <summary>
    /// local_irq_save(): disables local interrupts on the calling thread's CPU (takes its irq gate,
    /// waiting while another thread of the CPU holds it) and returns the previous state for
    /// <see cref="LocalIrqRestore"/>. Usable with <c>using</c>.
    /// </summary>
    public static LocalIrqFlags LocalIrqSave()
    {
        var ctx = RequireBound("local_irq_save()");
        if (ctx.IrqsOff)
        {
            return new LocalIrqFlags(ctx, wasDisabled: true);
        }
        DisableIrqs(ctx);
        return new LocalIrqFlags(ctx, wasDisabled: false);
    }

    /// <summary>local_irq_restore(): puts local interrupts back as <paramref name="flags"/> found them; pending interrupts are delivered on enable.</summary>
    public static void LocalIrqRestore(LocalIrqFlags flags)
    {
        var ctx = RequireBound("local_irq_restore()");
        if (!ReferenceEquals(flags.Context, ctx))
        {
            throw new InvalidOperationException("local_irq_restore() with flags saved on another thread: interrupt state is per CPU and per thread; restore on the thread that saved.");
        }
        if (!flags.WasDisabled && ctx.IrqsOff)
        {
            EnableIrqs(ctx, "local_irq_restore()");
        }
    }

    /// <summary>local_irq_disable(): disables local interrupts (not nested: one <see cref="LocalIrqEnable"/> re-enables).</summary>
    public static void LocalIrqDisable()
    {
        var ctx = RequireBound("local_irq_disable()");
        if (!ctx.IrqsOff)
        {
            DisableIrqs(ctx);
        }
    }

    /// <summary>local_irq_enable(): enables local interrupts and delivers any that are pending.</summary>
    public static void LocalIrqEnable()
    {
        var ctx = RequireBound("local_irq_enable()");
        if (ctx.IrqsOff)
        {
            EnableIrqs(ctx, "local_irq_enable()");
        }
    }

    /// <summary>
    /// local_bh_disable(): disables softirqs on the calling thread's CPU (nested). Softirqs raised
    /// meanwhile stay pending and run at the matching <see cref="LocalBhEnable"/>. Returns a scope whose
    /// Dispose is that enable.
    /// </summary>
    public static LocalBhScope LocalBhDisable()
    {
        var ctx = RequireBound("local_bh_disable()");
        if (ctx.InHardirq)
        {
            throw new InvalidOperationException($"local_bh_disable() in hard-IRQ context ({ctx.Describe()}): softirqs cannot run inside a hard IRQ anyway, and the kernel's local_bh_enable() refuses hardirq context.");
        }
        if ((ctx.PreemptCount & PreemptCount.SoftirqMask) == 0)
        {
            if (ctx.IrqsOff)
            {
                throw new InvalidOperationException($"local_bh_disable() with local interrupts disabled ({ctx.Describe()}): take the bh side first (spin_lock_bh, then local_irq_save), as local_bh_enable() may not run with interrupts disabled.");
            }
            // A task: first the CPU to itself among its tasks, then its softirqs kept out.
            ctx.EnterNonPreemptible();
            try
            {
                ctx.Cpu.BhGate.Enter(ctx);
            }
            catch
            {
                ctx.LeaveIfPreemptible();
                throw;
            }
        }
        else if ((ctx.PreemptCount & PreemptCount.SoftirqMask) >= PreemptCount.SoftirqMask - PreemptCount.SoftirqDisableOffset)
        {
            throw new InvalidOperationException("local_bh_disable() nested more than 127 deep: the softirq field of preempt_count would overflow.");
        }
        ctx.PreemptCount += PreemptCount.SoftirqDisableOffset;
        return new LocalBhScope(ctx);
    }

    /// <summary>local_bh_enable(): undoes one <see cref="LocalBhDisable"/>; dropping the last one runs pending softirqs in the caller, as the kernel does.</summary>
    public static void LocalBhEnable()
    {
        var ctx = RequireBound("local_bh_enable()");
        BhEnable(ctx);
    }

    internal static void BhEnable(ThreadContext ctx)
    {
        int softirq = ctx.PreemptCount & PreemptCount.SoftirqMask;
        if ((softirq & ~PreemptCount.SoftirqOffset) < PreemptCount.SoftirqDisableOffset)
        {
            throw new InvalidOperationException($"local_bh_enable() without a matching local_bh_disable() ({ctx.Describe()}).");
        }
        if (ctx.IrqsOff || ctx.InHardirq)
        {
            throw new InvalidOperationException($"local_bh_enable() with local interrupts disabled ({ctx.Describe()}): it may run softirqs, which need interrupts enabled; restore interrupts first.");
        }
        var cpu = ctx.Cpu;
        if (softirq != PreemptCount.SoftirqDisableOffset)
        {
            ctx.PreemptCount -= PreemptCount.SoftirqDisableOffset;
            return;
        }

        // The last bh-disable of this thread, not serving a softirq: run what is pending before the gate
        // is let go, in this thread, as __local_bh_enable_ip() does.
        try
        {
            if (SoftirqEngine.Runnable(cpu, cpu.HolderPending) != 0)
            {
                ctx.PreemptCount += PreemptCount.SoftirqOffset - PreemptCount.SoftirqDisableOffset;
                try
                {
                    SoftirqEngine.DoSoftirq(cpu, ctx);
                }
                finally
                {
                    ctx.PreemptCount -= PreemptCount.SoftirqOffset;
                }
            }
            else
            {
                ctx.PreemptCount -= PreemptCount.SoftirqDisableOffset;
            }
        }
        finally
        {
            cpu.ExitBh(ctx);
            ctx.LeaveIfPreemptible();
        }
        if (!ctx.IsCpuThread)
        {
            cpu.AfterBhGateRelease();
        }
    }

    /// <summary>preempt_disable(): the thread is atomic until the matching <see cref="PreemptEnable"/> (spinlocks hold this).</summary>
    public static void PreemptDisable()
    {
        var ctx = RequireBound("preempt_disable()");
        if ((ctx.PreemptCount & PreemptCount.PreemptMask) == PreemptCount.PreemptMask)
        {
            throw new InvalidOperationException("preempt_disable() nested more than 255 deep: the preempt field of preempt_count would overflow.");
        }
        ctx.EnterNonPreemptible();
        ctx.PreemptCount += PreemptCount.PreemptOffset;
    }

    /// <summary>preempt_enable(): undoes one <see cref="PreemptDisable"/>.</summary>
    public static void PreemptEnable()
    {
        var ctx = RequireBound("preempt_enable()");
        if ((ctx.PreemptCount & PreemptCount.PreemptMask) == 0)
        {
            throw new InvalidOperationException($"preempt_enable() without a matching preempt_disable() ({ctx.Describe()}).");
        }
        ctx.PreemptCount -= PreemptCount.PreemptOffset;
        ctx.LeaveIfPreemptible();
    }

    /// <summary>
    /// cond_resched(): a preemption point. On cpu/N inside a softirq it takes pending hard IRQs; on
    /// another thread in process context it yields the core; in atomic context it does nothing.
    /// </summary>
    public static void CondResched()
    {
        var ctx = ThreadContext.Current;
        if (ctx is null)
        {
            Thread.Yield();
            return;
        }
        if (ctx.IsCpuThread)
        {
            ctx.Cpu.PreemptionPoint(ctx);
            return;
        }
        if (ctx.PreemptCount == 0 && !ctx.IrqsOff)
        {
            Thread.Yield();
        }
    }

    private static void DisableIrqs(ThreadContext ctx)
    {
        var cpu = ctx.Cpu;
        if (!ctx.IsTask)
        {
            // cpu/N in a softirq: it holds the bh gate, and a task that holds the irq gate holds the bh
            // gate too, so the irq gate is free or ours (nested): this never waits.
            cpu.IrqGate.Enter(ctx);
            ctx.IrqsOff = true;
            return;
        }
        // A task: the CPU to itself among its tasks, then its softirqs kept out (on one CPU interrupts off
        // means no irq exit, so no softirq, and ksoftirqd is a task that cannot run), then its interrupts.
        // Taking the bh gate first is what makes the irq gate uncontended among our threads: cpu/N, in a
        // softirq holding the bh gate, never waits for an irq gate held by a task (issue: a tasklet
        // holding L waiting for the irq gate of a task spinning on L wedged the CPU).
        ctx.EnterNonPreemptible();
        try
        {
            if ((ctx.PreemptCount & PreemptCount.SoftirqMask) == 0)
            {
                cpu.BhGate.Enter(ctx);
                ctx.BhHeldForIrqs = true;
            }
            cpu.IrqGate.Enter(ctx);
        }
        catch
        {
            ReleaseBhHeldForIrqs(ctx);
            ctx.LeaveIfPreemptible();
            throw;
        }
        ctx.IrqsOff = true;
    }

    private static void EnableIrqs(ThreadContext ctx, string caller)
    {
        if (ctx.InHardirq)
        {
            throw new InvalidOperationException($"{caller} in hard-IRQ context ({ctx.Describe()}): handlers run with interrupts disabled and may not enable them.");
        }
        ReleaseIrqGate(ctx);
    }

    /// <summary>
    /// local_irq_enable()'s delivery: releases the irq gate and delivers what arrived meanwhile (the kernel's
    /// sti with an interrupt pending), then, for a task, lets the CPU's softirqs back in and has what was
    /// raised meanwhile run (irq exit's invoke_softirq(): cpu/N is kicked), and leaves the task gate if
    /// the task is preemptible again.
    /// </summary>
    internal static void ReleaseIrqGate(ThreadContext ctx)
    {
        ctx.IrqsOff = false;
        ctx.Cpu.IrqGate.Exit(ctx);
        ctx.Cpu.AfterIrqGateRelease(ctx);
        if (ReleaseBhHeldForIrqs(ctx))
        {
            ctx.Cpu.AfterBhGateRelease();
        }
        ctx.LeaveIfPreemptible();
    }

    private static bool ReleaseBhHeldForIrqs(ThreadContext ctx)
    {
        if (!ctx.BhHeldForIrqs)
        {
            return false;
        }
        ctx.BhHeldForIrqs = false;
        ctx.Cpu.ExitBh(ctx);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ThreadContext RequireBound(string caller) => ThreadContext.Current ?? ThrowUnbound(caller);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ThreadContext ThrowUnbound(string caller) =>
        throw new InvalidOperationException(
            $"{caller} from thread '{Thread.CurrentThread.Name ?? Environment.CurrentManagedThreadId.ToString(System.Globalization.CultureInfo.InvariantCulture)}', which belongs to no CPU: local interrupt and bottom-half state belong to a CPU. Call it from a handler, tasklet, softirq or worker of a runtime.");
}

/// <summary>The flags of local_irq_save(): whether interrupts were already disabled. Dispose restores them.</summary>
public readonly struct LocalIrqFlags : IDisposable, IEquatable<LocalIrqFlags>
{
    internal LocalIrqFlags(ThreadContext context, bool wasDisabled)
    {
        Context = context;
        WasDisabled = wasDisabled;
    }

    internal ThreadContext? Context { get; }

    /// <summary>True if interrupts were already disabled when the flags were saved.</summary>
    public bool WasDisabled { get; }

    /// <summary>local_irq_restore(flags).</summary>
    public void Dispose()
    {
        if (Context is not null)
        {
            CpuContext.LocalIrqRestore(this);
        }
    }

    /// <inheritdoc />
    public bool Equals(LocalIrqFlags other) => ReferenceEquals(Context, other.Context) && WasDisabled == other.WasDisabled;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is LocalIrqFlags other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Context, WasDisabled);

    /// <summary>Equality of saved states.</summary>
    public static bool operator ==(LocalIrqFlags left, LocalIrqFlags right) => left.Equals(right);

    /// <summary>Inequality of saved states.</summary>
    public static bool operator !=(LocalIrqFlags left, LocalIrqFlags right) => !left.Equals(right);
}

/// <summary>A local_bh_disable() section; Dispose is local_bh_enable().</summary>
public readonly ref struct LocalBhScope
{
    private readonly ThreadContext? _context;

    internal LocalBhScope(ThreadContext context) => _context = context;

    /// <summary>local_bh_enable().</summary>
    public void Dispose()
    {
        if (_context is not null)
        {
            CpuContext.BhEnable(_context);
        }
    }
}
