using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using DeferRuntime.Platform;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Cpus;

// The cpu/N thread: take pending hard IRQs with the irq gate held, run softirqs on irq exit, idle.
public sealed partial class VirtualCpu
{
    /// <summary>I (set at boot, before the threads start): the run queue of this CPU's core, which idle reads.</summary>
    internal CoreRunQueue RunQueue = null!;

    // C: idle polls that stopped to give way to a runnable task of this CPU (or to a gate holder).
    internal long IdleYields;

    /// <summary>Times cpu/N's idle poll stopped (and parked) because another task of its CPU was runnable.</summary>
    internal long IdleYieldCount => Volatile.Read(ref IdleYields);

    private void CpuThreadMain(CountdownEvent booted)
    {
        var ctx = _cpuContext;
        ThreadContext.Attach(ctx);
        Volatile.Write(ref _cpuThreadClock, ThreadCpuClock.Create());
        try
        {
            PlaceCurrentThread(ThreadRole.Cpu);
        }
        finally
        {
            booted.Signal();
        }

        try
        {
            bool awake = true;
            while (!_exit && !Runtime.IsPanicked)
            {
                // The clock event: once per pass, not per handler (a clock read is ~20 ns).
                CheckClockEvent(awake);
                awake = RunPending(ctx);
                if (!awake)
                {
                    Idle();
                }
            }
        }
        finally
        {
            ThreadContext.Detach();
        }
    }

    /// <summary>One pass of cpu/N: hard IRQs (with irq exit), else softirqs raised from elsewhere.</summary>
    private bool RunPending(ThreadContext ctx)
    {
        if (AnyIrqPending() && DoHardIrq(ctx))
        {
            return true;
        }
        // A remote raise or a kick after a gate release: run softirqs as irq exit would.
        return SoftirqEngine.InvokeOnIrqExit(this, ctx);
    }

    /// <summary>
    /// Work cpu/N itself can do now. Pending work behind a gate held by another thread of this CPU does
    /// not count: the holder's release delivers it (interrupts) or runs it (softirqs), so cpu/N parks
    /// instead of spinning on a lower-priority holder.
    /// </summary>
    private bool HasWorkForCpuThread() =>
        _exit || Runtime.IsPanicked ||
        (AnyIrqPending() && !IrqGate.IsHeld) ||
        (SoftirqEngine.RunnableOnIrqExit(this) != 0 && !BhGate.IsHeld);

    /// <summary>Pending work that someone else's release or ksoftirqd will hand over.</summary>
    private bool HasGatedWork() =>
        (AnyIrqPending() && IrqGate.IsHeld) ||
        Volatile.Read(ref Line.SoftirqPending) != 0;

    /// <summary>
    /// The idle task does not run while another task of its CPU can: a task on this core's run queue
    /// (a kworker with work, ksoftirqd, a woken irq thread; see <see cref="CoreRunQueue"/>), or work that
    /// waits behind a gate another thread of this CPU holds (that holder runs, maybe on our core at a
    /// lower priority, and its release kicks us). Polling at nice -10 would keep those tasks off the
    /// core. PERF: a few loads, cheap enough for every look of a poll.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool ShouldYieldToTasks() => RunQueue.HasRunnable || HasGatedWork();

    private void Idle()
    {
        var policy = Runtime.Options.IdlePolicy;
        if (policy != IdlePolicy.Halt && PollForWork(policy))
        {
            return;
        }

        // Announce the park, then re-check: a kicker sets pending work before it reads IdleState, and we
        // write IdleState before we read pending work, both with full barriers, so one of us sees the other.
        Interlocked.Exchange(ref Line.IdleState, Parked);
        if (HasWorkForCpuThread())
        {
            // If a kicker already flipped us back it also unparks: its signal is absorbed by a later park
            // as an early return, which the loop tolerates.
            Interlocked.Exchange(ref Line.IdleState, Running);
            return;
        }
        // idle=poll parks only while it gives way to a task. The last task to leave the run queue kicks
        // the CPUs of its core after its decrement (full barrier), and we look at the count after Parked
        // (full barrier): if it left before our look, go back round to the poll instead of parking until
        // the next interrupt.
        if (policy == IdlePolicy.Poll && !ShouldYieldToTasks())
        {
            Interlocked.Exchange(ref Line.IdleState, Running);
            return;
        }
        // Tickless: park only until the next timer event (the one-shot clock event), read after Parked
        // was announced so an armer that lowers it after this read sees Parked and kicks.
        long timeoutNs = ClockEventTimeoutNs();
        if (timeoutNs == 0)
        {
            Interlocked.Exchange(ref Line.IdleState, Running);
            FireClockEvent();
            return;
        }
        Parks++;
        _parker.Park(timeoutNs);
        Interlocked.Exchange(ref Line.IdleState, Running);
    }

    /// <summary>
    /// Spins for work: forever under Poll (yielding now and then), for the poll window under Hybrid; in
    /// both, only while no other task of this CPU is runnable. False when it stops to park.
    /// </summary>
    private bool PollForWork(IdlePolicy policy)
    {
        long now = Stopwatch.GetTimestamp();
        long deadline = policy == IdlePolicy.Poll ? long.MaxValue : now + Runtime.PollWindowTicks;
        long nextYield = now + YieldEveryTicks;
        for (int i = 1; ; i++)
        {
            if (HasWorkForCpuThread())
            {
                return true;
            }
            // At every look, the first included: the event just handled may have made a task runnable
            // (queued work, woken an irq thread or ksoftirqd), and one may become runnable at any moment
            // from another CPU (work queued on a pool here, a thread woken). That task shares our core at
            // a lower priority: polling would keep it off the core for the whole window, at every event
            // of a storm. Park, and let the next kick's wake-up preempt it instead, as an interrupt
            // preempts a task.
            if (ShouldYieldToTasks())
            {
                IdleYields++;
                return false;
            }
            // PERF: one pause per look, as the kernel's idle=poll does one cpu_relax() per check. A pause
            // costs ~40 ns on the development VM; SpinWait(16) here put ~0.37 us on the mean wake-up.
            Thread.SpinWait(1);
            if ((i & 63) == 0)
            {
                now = Stopwatch.GetTimestamp();
                if (ClockEventDueWhilePolling(now))
                {
                    return true;
                }
                if (now >= deadline)
                {
                    return false;
                }
                // idle=poll still lets the other threads of this core run (threads of no CPU, other
                // processes): a yield per ~0.5 ms, by time so a cheaper pause does not make it more frequent.
                if (now >= nextYield)
                {
                    Thread.Yield();
                    nextYield = now + YieldEveryTicks;
                }
            }
        }
    }

    private static readonly long YieldEveryTicks = Stopwatch.Frequency / 2000;

    /// <summary>
    /// Hard-IRQ entry on cpu/N: takes the irq gate (never waits for it), services every vector pending at
    /// this moment in hardirq context, then irq_exit(): softirqs unless already in interrupt context.
    /// Vectors that arrive meanwhile wait for the next entry, so irq exit gets its turn under a storm.
    /// </summary>
    internal bool DoHardIrq(ThreadContext ctx)
    {
        Debug.Assert(ctx.IsCpuThread, "only cpu/N takes hard IRQs");
        if (ctx.IrqsOff || !IrqGate.TryEnter(ctx))
        {
            return false;
        }
        ctx.IrqsOff = true;
        ctx.PreemptCount += PreemptCount.HardirqOffset;
        HardirqEntries++;
        // irqtime_account_irq() on entry and exit; PERF: no clock read unless accounting is on.
        long accountFrom = Runtime.Options.IrqTimeAccounting ? Stopwatch.GetTimestamp() : 0;
        try
        {
            for (int word = 0; word < VectorCount / 64; word++)
            {
                ref long pending = ref Unsafe.Add(ref Line.IrqPending0, word);
                if (Volatile.Read(ref pending) == 0)
                {
                    continue;
                }
                long bits = Interlocked.Exchange(ref pending, 0);
                while (bits != 0)
                {
                    int vector = (word << 6) | BitOperations.TrailingZeroCount(bits);
                    bits &= bits - 1;
                    IrqBatchWord = word;
                    IrqBatch = bits;
                    DispatchVector(ctx, vector);
                }
            }
        }
        finally
        {
            if (accountFrom != 0)
            {
                Volatile.Write(ref HardirqTicks, HardirqTicks + (Stopwatch.GetTimestamp() - accountFrom));
            }
            ctx.PreemptCount -= PreemptCount.HardirqOffset;
            ctx.IrqsOff = false;
            IrqGate.Exit(ctx);
        }

        if (!ctx.InInterrupt)
        {
            SoftirqEngine.InvokeOnIrqExit(this, ctx);
        }
        return true;
    }

    private void DispatchVector(ThreadContext ctx, int vector)
    {
        if (vector == CallFunctionVector)
        {
            RunCallQueue(ctx);
            return;
        }
        if (vector == LocalTimerVector)
        {
            Timers.LocalTimerInterrupt(ctx);
            HardirqCompletions++;
            return;
        }
        // The flow handler runs each handler through RunCallback, so nothing a driver throws gets here.
        Runtime.Irqs.HandleVector(this, ctx, vector);
        HardirqCompletions++;
    }

    /// <summary>generic_smp_call_function_single_interrupt(): runs every queued cross-CPU call.</summary>
    private void RunCallQueue(ThreadContext ctx)
    {
        var csd = IntrusiveMpsc.TakeAllFifo(ref Line.CallHead);
        while (csd is not null)
        {
            var next = ((IIntrusiveNode<CallSingleData>)csd).Next;
            ((IIntrusiveNode<CallSingleData>)csd).Next = null;
            CallBatch = next;
            csd.Fault = RunCallback(ctx, csd, static c => c.Invoke(), static _ => "IPI call function");
            IpiCalls++;
            HardirqCompletions++;
            csd.Unlock();
            csd = next;
        }
    }

    /// <summary>
    /// Runs one user callback (softirq action, tasklet, IPI function) so that it cannot take the CPU
    /// down: an exception is reported as an oops with <paramref name="describe"/>'s name and returned;
    /// a callback that returns with a different preempt_count or interrupt state is reported and the
    /// context put back (the kernel's "huh, entered softirq ... with preempt_count"). The name is only
    /// built on a fault. PERF: generic over the state so the common path allocates nothing.
    /// </summary>
    /// <remarks>
    /// What runs is recorded on <paramref name="ctx"/> for shutdown's report of a thread it could not join
    /// (<see cref="ThreadContext.DescribeRunning"/>): the state and <paramref name="describe"/>, the name
    /// being built only when reported. PERF: no allocation; two reference stores (GC write barriers) in,
    /// and two null stores (none) out unless an outer record is put back: callbacks nest (a tasklet inside
    /// the TASKLET softirq, a hard IRQ taken at a preemption point inside a work item). A value-type state
    /// is not boxed (<c>typeof(T).IsValueType</c> is a JIT-time constant): the softirq loop records its
    /// vector instead.
    /// </remarks>
    internal Exception? RunCallback<T>(ThreadContext ctx, T state, Action<T> body, Func<T, string> describe)
    {
        int preemptBefore = ctx.PreemptCount;
        bool irqsOffBefore = ctx.IrqsOff;
        object? outerState = ctx.RunningState;
        Delegate? outerDescribe = ctx.RunningDescribe;
        if (typeof(T).IsValueType)
        {
            ctx.RunningDescribe = null;
        }
        else
        {
            ctx.RunningState = state;
            ctx.RunningDescribe = describe;
        }
        // After shutdown gave up, no callback starts (RuntimeShutdownReport's contract). Read after the
        // stores above: the thread's half of an asymmetric Dekker pair with Runtime.CloseCallbacks, whose
        // process-wide barrier makes sure that either we see the close here, or shutdown sees what we
        // published and reports it as still running. PERF: one load of a line nobody writes until then.
        if (Runtime.CallbacksClosed)
        {
            ctx.RunningState = outerState;
            ctx.RunningDescribe = outerDescribe;
            Runtime.RefuseCallback(ctx, state, describe);
            return null;
        }
        Exception? fault = null;
        try
        {
            body(state);
        }
        catch (Exception e)
        {
            fault = e;
            Runtime.ReportFault(this, describe(state), e);
        }
        if (outerDescribe is null)
        {
            // PERF: the common case (no outer callback): nulls need no GC write barrier, and drop the
            // references for the GC.
            ctx.RunningState = null;
            ctx.RunningDescribe = null;
        }
        else
        {
            ctx.RunningState = outerState;
            ctx.RunningDescribe = outerDescribe;
        }
        if (ctx.PreemptCount != preemptBefore || ctx.IrqsOff != irqsOffBefore)
        {
            string what = describe(state);
            RestoreIrqsAfterCallback(ctx, irqsOffBefore, what);
            RestoreContextAfterCallback(ctx, preemptBefore, what);
        }
        return fault;
    }

    /// <summary>
    /// A preemption point: cpu/N, busy in softirqs, takes pending hard IRQs between two handlers, the
    /// way a real CPU takes an interrupt in the middle of one. Elsewhere a plain check.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void PreemptionPoint(ThreadContext ctx)
    {
        if (ctx.IsCpuThread && !ctx.IrqsOff && AnyIrqPending())
        {
            DoHardIrq(ctx);
        }
    }

    /// <summary>
    /// After a callback: a handler that returned with a different preempt_count or interrupts left
    /// disabled is reported (the kernel's "huh, entered softirq ... with preempt_count") and the context
    /// is put back, so one buggy handler cannot wedge the CPU.
    /// </summary>
    private void RestoreContextAfterCallback(ThreadContext ctx, int preemptBefore, string what)
    {
        if (ctx.PreemptCount == preemptBefore)
        {
            return;
        }
        Runtime.ReportFault(this, what, new InvalidOperationException(
            $"{what} on CPU {Id} returned with preempt_count 0x{ctx.PreemptCount:x}, entered with 0x{preemptBefore:x}: an unbalanced disable/enable in the callback; the count was restored"));
        bool heldBh = (ctx.PreemptCount & PreemptCount.SoftirqMask) != 0;
        bool holdsBhNow = (preemptBefore & PreemptCount.SoftirqMask) != 0;
        ctx.PreemptCount = preemptBefore;
        if (heldBh && !holdsBhNow)
        {
            // What was raised or scheduled while the leaked section was open sits in the holder's own
            // pending word and lists: ExitBh publishes it, and it must also be delivered, as the missing
            // local_bh_enable() would have (else it waits for the next unrelated kick).
            ExitBh(ctx);
            AfterBhGateRelease();
        }
        ctx.LeaveIfPreemptible();
    }

    /// <summary>Releases an irq gate left held by a callback that entered with interrupts enabled.</summary>
    private void RestoreIrqsAfterCallback(ThreadContext ctx, bool irqsOffBefore, string what)
    {
        if (ctx.IrqsOff == irqsOffBefore)
        {
            return;
        }
        Runtime.ReportFault(this, what, new InvalidOperationException(
            $"{what} on CPU {Id} returned with interrupts {(ctx.IrqsOff ? "disabled" : "enabled")}: an unbalanced local_irq_save/restore in the callback; the state was restored"));
        // Only "left disabled" can happen: callbacks that run with interrupts disabled (hard IRQ, IPI)
        // cannot enable them (EnableIrqs refuses hardirq context), so there is nothing to re-take.
        Debug.Assert(ctx.IrqsOff, "a callback re-enabled interrupts it was entered with disabled");
        if (ctx.IrqsOff)
        {
            // As local_irq_restore() would: pending interrupts delivered, a task's softirqs let back in.
            Cpus.CpuContext.ReleaseIrqGate(ctx);
        }
    }

    /// <summary>
    /// The kernel's sti with an interrupt pending: after a thread of this CPU releases the irq gate,
    /// pending vectors are delivered at once (on cpu/N) or cpu/N is kicked to take them.
    /// </summary>
    internal void AfterIrqGateRelease(ThreadContext ctx)
    {
        if (!AnyIrqPending())
        {
            return;
        }
        if (ctx.IsCpuThread)
        {
            DoHardIrq(ctx);
        }
        else
        {
            Kick();
        }
    }

    /// <summary>After a non-cpu/N thread releases the bh gate: softirqs raised meanwhile go to cpu/N.</summary>
    internal void AfterBhGateRelease()
    {
        if (Volatile.Read(ref Line.SoftirqPending) != 0)
        {
            Kick();
        }
    }
}
