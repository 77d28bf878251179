using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;

namespace DeferRuntime.Devices;

/// <summary>
/// The poll function of a NAPI instance (napi_struct.poll): process at most <paramref name="budget"/>
/// packets, return how many. Returning less than the budget means "done": the poll must first call
/// <see cref="NapiStruct.CompleteDone"/> (and re-enable its device interrupt if that returns true).
/// Returning the whole budget means "more work": the poll must not complete, and it will be polled again.
/// </summary>
/// <remarks>Runs in softirq context (NET_RX) on the CPU that scheduled the instance.</remarks>
public delegate int NapiPoll(NapiStruct napi, int budget);

/// <summary>
/// struct napi_struct: New API receive polling. A driver's top half masks its device interrupt and calls
/// <see cref="Schedule"/>; NET_RX then calls the poll function with a weight (64) until the device has
/// nothing left; the poll completes (<see cref="CompleteDone"/>) and unmasks the device. Under a flood the
/// device stays masked and is drained by polling: one interrupt for many packets.
/// </summary>
/// <remarks>
/// <para>The state word, changed only by compare-and-swap (as the kernel's napi->state):</para>
/// <list type="bullet">
/// <item><c>Sched</c> (NAPI_STATE_SCHED): the instance is owned by a poll list or by the poll running it.
/// Only whoever sets it queues the instance, so it is never on two lists or polled on two CPUs at once.</item>
/// <item><c>Missed</c> (NAPI_STATE_MISSED): <see cref="Schedule"/> came while Sched was set. It queues
/// nothing, but <see cref="CompleteDone"/> then keeps the instance scheduled for one more poll, so an event
/// that raced with the completion is not left behind.</item>
/// <item><c>Disable</c> (NAPI_STATE_DISABLE): <see cref="Disable"/> is pending or done; Schedule refuses,
/// and a poll that used its whole weight is completed so that the disabler can take Sched.</item>
/// <item><c>Listed</c> (NAPI_STATE_LISTED): added and not yet deleted (<see cref="Dispose"/>).</item>
/// </list>
/// <para>Like netif_napi_add(), a new instance starts disabled: call <see cref="Enable"/> (the driver's
/// ndo_open does napi_enable) before its first <see cref="Schedule"/>, which returns false until then.</para>
/// <para>Field legend: <c>I:</c> set at creation; <c>A:</c> any thread, Interlocked; <c>O:</c> the current
/// owner of Sched (the poll path), handed over with the state word's full barriers.</para>
/// </remarks>
public sealed class NapiStruct : IIntrusiveNode<NapiStruct>, IDisposable
{
    /// <summary>NAPI_POLL_WEIGHT: the default weight, packets per poll.</summary>
    public const int DefaultWeight = 64;

    internal const int StateSched = 1;   // on a poll list or being polled
    internal const int StateMissed = 2;  // scheduled again while scheduled: poll once more after completion
    internal const int StateDisable = 4; // napi_disable() pending or done
    internal const int StateListed = 8;  // netif_napi_add() done, netif_napi_del() not yet

    private readonly NetRxSoftirq _netRx; // I
    internal readonly NapiPoll PollFunction; // I
    private int _state; // A: the bits above

    internal NapiStruct? ListNext; // O: link on a CPU's inbox or poll list (one list at a time: Sched)

    private long _schedules; // A: napi_schedule() calls that queued the instance
    private long _scheduleMissed; // A: napi_schedule() calls that found it scheduled (Missed set)
    private long _scheduleRefused; // A: napi_schedule() calls refused while disabled
    private long _releases; // A: completions and Missed re-queues; net_rx_action compares it around a poll
    private long _completeDone; // A: napi_complete_done() calls that ended polling (returned true)
    private long _missedRepolls; // A: napi_complete_done() calls that kept it scheduled because of Missed
    private long _polls; // O
    private long _fullWeightPolls; // O: polls that used the whole weight and stayed scheduled
    private long _packets; // A: work reported by polls
    private int _warned; // A: one contract warning per instance (WARN_ONCE)

    internal NapiStruct(NetRxSoftirq netRx, NapiPoll poll, string name, int weight)
    {
        _netRx = netRx;
        PollFunction = poll;
        Name = name;
        Weight = weight;
        // netif_napi_add(): the instance starts owned by "disable", as the kernel's starts with SCHED set.
        _state = StateListed | StateDisable | StateSched;
    }

    /// <summary>The name given at netif_napi_add() (the device's, typically).</summary>
    public string Name { get; }

    /// <summary>napi->weight: the most packets one poll may process.</summary>
    public int Weight { get; }

    /// <summary>The NET_RX engine (and runtime) this instance belongs to.</summary>
    public NetRxSoftirq NetRx => _netRx;

    NapiStruct? IIntrusiveNode<NapiStruct>.Next
    {
        get => ListNext;
        set => ListNext = value;
    }

    /// <summary>napi_is_scheduled(): NAPI_STATE_SCHED is set (queued or being polled, or held by <see cref="Disable"/>).</summary>
    public bool IsScheduled => (Volatile.Read(ref _state) & StateSched) != 0;

    /// <summary>True from <see cref="Disable"/> (or creation) until <see cref="Enable"/>.</summary>
    public bool IsDisabled => (Volatile.Read(ref _state) & StateDisable) != 0;

    internal bool DisablePending => (Volatile.Read(ref _state) & StateDisable) != 0;

    internal long Releases => Volatile.Read(ref _releases);

    // ---- scheduling ----

    /// <summary>
    /// napi_schedule(): if the instance is not already scheduled, marks it (NAPI_STATE_SCHED), puts it on
    /// the calling CPU's poll list and raises NET_RX — raise_softirq_irqoff() from a hard-IRQ handler, the
    /// usual caller, after it masked its device interrupt. From a thread of no CPU the instance goes to the
    /// CPU the runtime's placement picks. Lock-free and allocation-free.
    /// </summary>
    /// <returns>
    /// True if this call scheduled it. False if it was already scheduled — nothing is queued twice; the call
    /// is remembered (NAPI_STATE_MISSED) so that the running poll's completion polls once more — or if it is
    /// disabled.
    /// </returns>
    public bool Schedule()
    {
        var ctx = ThreadContext.Current;
        var runtime = _netRx.Runtime;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, runtime))
        {
            runtime.ThrowIfStoppedForTask(ctx, "napi_schedule()");
            if (!SchedulePrep())
            {
                return false;
            }
            _netRx.Enqueue(ctx.Cpu, this, local: ctx);
            return true;
        }
        return ScheduleForeign();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ScheduleForeign()
    {
        // Enter the CPU's rundown protection before touching the state: if shutdown refuses us, the
        // instance must not be left marked scheduled on no list.
        var cpu = _netRx.Runtime.EnterForeign("napi_schedule()");
        try
        {
            if (!SchedulePrep())
            {
                return false;
            }
            _netRx.Enqueue(cpu, this, local: null);
            return true;
        }
        finally
        {
            cpu.ExitForeign();
        }
    }

    /// <summary>napi_schedule_prep(): takes NAPI_STATE_SCHED, or sets MISSED if it is already taken; refused while disabled.</summary>
    private bool SchedulePrep()
    {
        int val = Volatile.Read(ref _state);
        while (true)
        {
            if ((val & StateDisable) != 0)
            {
                Interlocked.Increment(ref _scheduleRefused);
                return false;
            }
            int next = (val & StateSched) != 0 ? val | StateMissed : val | StateSched;
            int seen = Interlocked.CompareExchange(ref _state, next, val);
            if (seen == val)
            {
                break;
            }
            val = seen;
        }
        if ((val & StateSched) != 0)
        {
            Interlocked.Increment(ref _scheduleMissed);
            return false;
        }
        Interlocked.Increment(ref _schedules);
        return true;
    }

    /// <summary>
    /// napi_complete_done(): called by the poll function when it processed fewer packets than its budget.
    /// Clears NAPI_STATE_SCHED — unless a <see cref="Schedule"/> was missed meanwhile, in which case the
    /// instance stays scheduled, is queued again on this CPU, and the call returns false.
    /// </summary>
    /// <param name="workDone">Packets this poll processed (less than the weight).</param>
    /// <returns>True when polling is over: the driver now re-enables its device interrupt. False: leave it masked.</returns>
    public bool CompleteDone(int workDone)
    {
        if (workDone >= Weight)
        {
            // The kernel's contract: a poll that used its whole budget must not complete; net_rx_action
            // still owns the instance and polls it again. Refuse rather than let it be queued twice.
            WarnOnce($"napi_complete_done({workDone}) on '{Name}' with work_done >= weight {Weight}: a poll that used its whole budget must return it without completing; the instance stays scheduled and is polled again");
            return false;
        }
        int val = Volatile.Read(ref _state);
        while (true)
        {
            if ((val & StateSched) == 0)
            {
                WarnOnce($"napi_complete_done() on '{Name}', which is not scheduled (NAPI_STATE_SCHED clear): completed twice, or outside its poll");
                return false;
            }
            // Missed: keep Sched for one more poll; otherwise give it up.
            int next = (val & StateMissed) != 0 ? val & ~StateMissed : val & ~StateSched;
            int seen = Interlocked.CompareExchange(ref _state, next, val);
            if (seen == val)
            {
                break;
            }
            val = seen;
        }
        Interlocked.Increment(ref _releases);
        if ((val & StateMissed) != 0)
        {
            Interlocked.Increment(ref _missedRepolls);
            _netRx.EnqueueFromAnyContext(this);
            return false;
        }
        Interlocked.Increment(ref _completeDone);
        return true;
    }

    /// <summary>napi_complete(): <see cref="CompleteDone"/> with no work reported.</summary>
    public bool Complete() => CompleteDone(0);

    // ---- enable / disable / delete ----

    /// <summary>
    /// napi_disable(): stops scheduling and waits until the instance is not scheduled, then holds it
    /// (NAPI_STATE_SCHED) so that it cannot be scheduled until <see cref="Enable"/>. A poll that keeps using
    /// its whole weight is completed by NET_RX so this does not wait forever. Sleeps: not from atomic context.
    /// </summary>
    public void Disable()
    {
        MightSleep.Check("napi_disable()");
        int old = Interlocked.Or(ref _state, StateDisable);
        if ((old & StateDisable) != 0)
        {
            throw new InvalidOperationException($"napi_disable() on '{Name}', which is already disabled (or being disabled): napi_disable() does not nest; napi_enable() first.");
        }
        var backoff = default(Backoff);
        while (true)
        {
            int val = Volatile.Read(ref _state);
            if ((val & StateSched) == 0 && Interlocked.CompareExchange(ref _state, (val | StateSched) & ~StateMissed, val) == val)
            {
                return;
            }
            _netRx.Runtime.ThrowIfDead("napi_disable()");
            backoff.Wait();
        }
    }

    /// <summary>napi_enable(): makes a disabled instance schedulable (a new one starts disabled, as after netif_napi_add()).</summary>
    public void Enable()
    {
        int val = Volatile.Read(ref _state);
        while (true)
        {
            if ((val & (StateSched | StateDisable)) != (StateSched | StateDisable))
            {
                throw new InvalidOperationException($"napi_enable() on '{Name}', which is not disabled: enable only after netif_napi_add() or napi_disable().");
            }
            if ((val & StateListed) == 0)
            {
                throw new ObjectDisposedException(nameof(NapiStruct), $"napi_enable() on '{Name}' after netif_napi_del().");
            }
            int seen = Interlocked.CompareExchange(ref _state, val & ~(StateSched | StateDisable | StateMissed), val);
            if (seen == val)
            {
                return;
            }
            val = seen;
        }
    }

    /// <summary>netif_napi_del(): disables the instance if it is not (waiting for a running poll) and removes it from its NET_RX engine. Harmless twice.</summary>
    public void Dispose()
    {
        if ((Volatile.Read(ref _state) & StateListed) == 0)
        {
            return;
        }
        if (!IsDisabled)
        {
            Disable();
        }
        if ((Interlocked.And(ref _state, ~StateListed) & StateListed) != 0)
        {
            _netRx.Remove(this);
        }
    }

    // ---- NET_RX's side (the owner of Sched: the bh-gate holder of the CPU polling it) ----

    /// <summary>Before a poll: counted while we own the instance.</summary>
    internal void NotePoll() => _polls++;

    /// <summary>After a poll that used its whole weight and stays ours.</summary>
    internal void NoteFullWeightPoll() => _fullWeightPolls++;

    /// <summary>After a poll: its work (atomically, since a completed instance may already be polled elsewhere).</summary>
    internal void NotePackets(int work) => Interlocked.Add(ref _packets, work);

    /// <summary>napi_complete() by net_rx_action for a pending napi_disable(): Sched goes to the disabler.</summary>
    internal void CompleteForDisable()
    {
        Debug.Assert(IsScheduled, "only the owner of StateSched completes for disable");
        Interlocked.And(ref _state, ~(StateSched | StateMissed));
        Interlocked.Increment(ref _releases);
    }

    /// <summary>WARN_ONCE() for a broken driver contract: reported in the runtime's fault log, once per instance.</summary>
    internal void WarnOnce(string message)
    {
        if (Interlocked.Exchange(ref _warned, 1) == 0)
        {
            _netRx.Runtime.ReportWarning(CpuContext.CurrentCpuId, $"napi '{Name}'", message);
        }
    }

    /// <summary>A snapshot of the instance's counts and state.</summary>
    public NapiStats GetStats()
    {
        int state = Volatile.Read(ref _state);
        return new NapiStats(
            Name, Weight, Interlocked.Read(ref _schedules), Interlocked.Read(ref _scheduleMissed), Interlocked.Read(ref _scheduleRefused),
            Volatile.Read(ref _polls), Volatile.Read(ref _fullWeightPolls), Interlocked.Read(ref _packets),
            Interlocked.Read(ref _completeDone), Interlocked.Read(ref _missedRepolls),
            (state & StateSched) != 0, (state & StateMissed) != 0, (state & StateDisable) != 0);
    }

    /// <inheritdoc/>
    public override string ToString() => $"napi '{Name}' (weight {Weight})";
}

/// <summary>One NAPI instance's counts: how often it was scheduled (≈ interrupts taken) against how much it polled.</summary>
/// <param name="Name">The instance's name.</param>
/// <param name="Weight">Packets per poll at most.</param>
/// <param name="Schedules">napi_schedule() calls that queued it: one per interrupt that switched the device to polling.</param>
/// <param name="ScheduleMissed">napi_schedule() calls that found it already scheduled (NAPI_STATE_MISSED set, nothing queued).</param>
/// <param name="ScheduleRefused">napi_schedule() calls refused because it was disabled.</param>
/// <param name="Polls">Poll function calls.</param>
/// <param name="FullWeightPolls">Polls that used the whole weight and stayed scheduled (polling mode).</param>
/// <param name="Packets">Work reported by the polls.</param>
/// <param name="CompleteDone">napi_complete_done() calls that ended polling: the device went back to interrupts.</param>
/// <param name="MissedRepolls">Completions turned into one more poll by a missed napi_schedule().</param>
/// <param name="Scheduled">NAPI_STATE_SCHED now.</param>
/// <param name="Missed">NAPI_STATE_MISSED now.</param>
/// <param name="Disabled">Disabled now.</param>
public sealed record NapiStats(
    string Name, int Weight, long Schedules, long ScheduleMissed, long ScheduleRefused, long Polls, long FullWeightPolls,
    long Packets, long CompleteDone, long MissedRepolls, bool Scheduled, bool Missed, bool Disabled)
{
    /// <summary>Packets per successful napi_schedule(): about packets per interrupt; ≫ 1 once a flood turned into polling.</summary>
    public double PacketsPerSchedule => Schedules == 0 ? 0 : (double)Packets / Schedules;
}
