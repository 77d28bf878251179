using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;

namespace DeferRuntime.Softirqs;

/// <summary>
/// kernel/softirq.c: running a CPU's pending softirqs. Whoever runs them holds the CPU's bh gate and
/// has SOFTIRQ_OFFSET in its preempt_count: cpu/N on irq exit, ksoftirqd/N after an overflow, or any
/// thread of the CPU whose local_bh_enable() drops the last bh-disable.
/// </summary>
/// <remarks>
/// Ordering: within one pass vectors run lowest first (HI before TIMER ... RCU), each pending bit once.
/// A pass that leaves new bits pending restarts, at most MAX_SOFTIRQ_RESTART times and within
/// MAX_SOFTIRQ_TIME, and stops early on need_resched; what is left is handed to ksoftirqd/N.
/// </remarks>
internal static class SoftirqEngine
{
    /// <summary>
    /// The pending vectors irq exit may run now: all of them, or only SOFTIRQ_NOW_MASK (HI, TASKLET)
    /// while ksoftirqd/N is running and the runtime lets it do its job (Linux 4.15 to 6.4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RunnableOnIrqExit(VirtualCpu cpu) => Runnable(cpu, Volatile.Read(ref cpu.Line.SoftirqPending));

    /// <summary>As <see cref="RunnableOnIrqExit"/> for a given pending mask (the bh holder adds its own bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Runnable(VirtualCpu cpu, int pending)
    {
        if (pending != 0 && cpu.Runtime.Options.LetKsoftirqdDoItsJob && cpu.Ksoftirqd.IsRunning && (pending & SoftirqTable.NowMask) == 0)
        {
            return 0;
        }
        return pending;
    }

    /// <summary>
    /// invoke_softirq() on irq exit: runs pending softirqs on cpu/N unless another thread of the CPU
    /// holds the bh gate (its release runs them) or ksoftirqd owns them.
    /// </summary>
    public static bool InvokeOnIrqExit(VirtualCpu cpu, ThreadContext ctx)
    {
        if (RunnableOnIrqExit(cpu) == 0 || !cpu.BhGate.TryEnter(ctx))
        {
            return false;
        }
        ctx.PreemptCount += PreemptCount.SoftirqOffset;
        try
        {
            DoSoftirq(cpu, ctx);
        }
        finally
        {
            ctx.PreemptCount -= PreemptCount.SoftirqOffset;
            cpu.ExitBh(ctx);
        }
        return true;
    }

    /// <summary>
    /// __do_softirq(): swap the pending mask to zero, run each set vector lowest first, restart while new
    /// bits appear within budget, then wake ksoftirqd/N for the rest. The caller holds the bh gate and
    /// has SOFTIRQ_OFFSET set.
    /// </summary>
    public static void DoSoftirq(VirtualCpu cpu, ThreadContext ctx)
    {
        Debug.Assert(ReferenceEquals(cpu.BhGate.Owner, ctx), "__do_softirq without the bh gate");
        Debug.Assert(ctx.InServingSoftirq, "__do_softirq without SOFTIRQ_OFFSET");
        // irqtime_account_irq(): softirq time of every holder but ksoftirqd, whose time stays its own.
        if (cpu.Runtime.Options.IrqTimeAccounting && ctx.Role != ThreadRole.Ksoftirqd)
        {
            DoSoftirqAccounted(cpu, ctx);
            return;
        }
        DoSoftirqCore(cpu, ctx);
    }

    /// <summary>__do_softirq() timed: wall time of the run less the hard IRQs cpu/N took inside it (preemption points).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DoSoftirqAccounted(VirtualCpu cpu, ThreadContext ctx)
    {
        long hardBefore = Volatile.Read(ref cpu.HardirqTicks);
        long start = Stopwatch.GetTimestamp();
        try
        {
            DoSoftirqCore(cpu, ctx);
        }
        finally
        {
            long spent = Stopwatch.GetTimestamp() - start - (Volatile.Read(ref cpu.HardirqTicks) - hardBefore);
            Volatile.Write(ref cpu.SoftirqTicks, cpu.SoftirqTicks + Math.Max(0, spent));
        }
    }

    private static void DoSoftirqCore(VirtualCpu cpu, ThreadContext ctx)
    {
        var table = cpu.Runtime.Softirqs;
        // PERF: the 2 ms budget is only consulted between passes, so the clock is first read at the first
        // restart rather than on entry: a call that finds nothing new after its pass (the common case)
        // reads no clock at all. The price: the first pass's own duration does not count toward the
        // budget, so a 3 ms first pass gets one more pass before ksoftirqd takes over.
        long budgetStart = 0;
        int restart = SoftirqTable.MaxRestart;

        while (true)
        {
            // The holder's own bits, plus the shared ones; PERF: no exchange when nobody else raised.
            int pending = cpu.LocalSoftirqPending;
            cpu.LocalSoftirqPending = 0;
            if (Volatile.Read(ref cpu.Line.SoftirqPending) != 0)
            {
                pending |= Interlocked.Exchange(ref cpu.Line.SoftirqPending, 0);
            }
            while (pending != 0)
            {
                int nr = BitOperations.TrailingZeroCount(pending);
                pending &= pending - 1;
                cpu.SoftirqBatch = pending;
                cpu.SoftirqCounts[nr]++;
                // PERF: the softirq_entry/exit tracepoints and the raise-latency probe cost a load and a
                // predictable branch each while nobody listens.
                if (DeferRuntimeEventSource.SoftirqOn || cpu.Runtime.SoftirqLatencyOn)
                {
                    NoteEntry(cpu, nr);
                }
                RunAction(cpu, ctx, table, nr);
                if (DeferRuntimeEventSource.SoftirqOn)
                {
                    DeferRuntimeEventSource.Log.softirq_exit(nr, SoftirqTable.Names[nr], cpu.Id);
                }
                cpu.SoftirqCompletions++;
                if (cpu.Runtime.IsPanicked)
                {
                    return;
                }
                cpu.PreemptionPoint(ctx);
            }

            if (cpu.HolderPending == 0)
            {
                return;
            }
            long now = Stopwatch.GetTimestamp();
            if (budgetStart == 0)
            {
                budgetStart = now;
            }
            if (--restart > 0 && !cpu.NeedResched && now - budgetStart < SoftirqTable.MaxSoftirqTicks)
            {
                continue;
            }
            cpu.ClearNeedResched();
            if (!cpu.Ksoftirqd.IsCurrentThread)
            {
                cpu.KsoftirqdWakeups++;
                cpu.Ksoftirqd.Wakeup();
            }
            return;
        }
    }

    /// <summary>softirq_entry, and the raise-to-entry sample of the vector's first pending raise.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void NoteEntry(VirtualCpu cpu, int nr)
    {
        if (DeferRuntimeEventSource.SoftirqOn)
        {
            DeferRuntimeEventSource.Log.softirq_entry(nr, SoftirqTable.Names[nr], cpu.Id);
        }
        // Taken whether or not the histogram still listens, so a stamp never outlives its run.
        long raisedAt = Volatile.Read(ref cpu.RaisedAt[nr]) == 0 ? 0 : Interlocked.Exchange(ref cpu.RaisedAt[nr], 0);
        if (raisedAt != 0 && cpu.Runtime.Metrics is { } metrics)
        {
            metrics.RecordSoftirqLatency(nr, Stopwatch.GetTimestamp() - raisedAt);
        }
    }

    private static void RunAction(VirtualCpu cpu, ThreadContext ctx, SoftirqTable table, int nr)
    {
        // The vector, for shutdown's report of a thread it could not join: RunCallback records only a
        // reference-type state, and this one is a value (PERF: no boxing). Softirqs never nest in a thread.
        Debug.Assert(ctx.RunningSoftirq == 0, "a softirq action runs inside another on the same thread");
        ctx.RunningSoftirq = nr + 1;
        cpu.RunCallback(ctx, (Action: table.Action(nr)!, Nr: nr), static s => s.Action(), static s => $"softirq {SoftirqTable.Names[s.Nr]}");
        ctx.RunningSoftirq = 0;
    }
}
