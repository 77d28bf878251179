using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;

namespace DeferRuntime.Interrupts;

// The flow handlers (kernel/irq/chip.c) and what they call: cpu/N runs them in hardirq context with its
// irq gate held; the descriptor lock is taken around the state changes, never across a handler.
internal sealed partial class IrqDesc
{
    // ---- the flow handlers: cpu/N in hardirq context, irq gate held ----

    /// <summary>generic_handle_irq(): runs the line's flow handler on <paramref name="cpu"/>.</summary>
    internal void Handle(VirtualCpu cpu, ThreadContext ctx)
    {
        if (_trigger == IrqTrigger.Edge)
        {
            HandleEdge(cpu, ctx);
        }
        else
        {
            HandleLevel(cpu, ctx);
        }
    }

    /// <summary>
    /// handle_edge_irq(): ack (take the latch), run the chain, and replay while an edge arrived during
    /// the run — latched again, or taken by another CPU that found the line in progress. Any number of
    /// edges during one run make one replay; the rest are counted as coalesced.
    /// </summary>
    private void HandleEdge(VirtualCpu cpu, ThreadContext ctx)
    {
        if ((Interlocked.And(ref _hw, ~HwLatched) & HwLatched) == 0)
        {
            return; // a second delivery of an edge another flow run has already taken (or replayed)
        }
        lock (_lock)
        {
            if (_inProgress || _depth > 0 || _actions.Length == 0)
            {
                // irq_may_run() failed or the line is disabled: remember it and mask; the CPU running
                // the chain replays it, or enable_irq() resends it.
                SetPendingLocked();
                Mask();
                return;
            }
            StartRunLocked(cpu);
        }

        while (true)
        {
            var actions = _actions;
            uint wake = RunChain(cpu, ctx, actions, out var result);
            uint toWake;
            bool again = false;
            lock (_lock)
            {
                NoteInterruptLocked(cpu, result);
                toWake = AccountWakeLocked(wake, actions);
                if (_depth == 0 && _threadsOneshot == 0)
                {
                    again = _pending;
                    _pending = false;
                    if ((Volatile.Read(ref _hw) & HwMasked) == 0 &&
                        (Interlocked.And(ref _hw, ~HwLatched) & HwLatched) != 0)
                    {
                        if (again)
                        {
                            Interlocked.Increment(ref _coalesced);
                        }
                        again = true;
                    }
                }
                if (again)
                {
                    _replays++;
                }
                else
                {
                    FinishRunLocked();
                }
            }
            WakeThreads(toWake, actions);
            if (!again)
            {
                return;
            }
        }
    }

    /// <summary>
    /// handle_level_irq(): mask and ack, run the chain, unmask; a device still asserting the line makes it
    /// fire again at the unmask. While disabled or in progress elsewhere the line just stays masked.
    /// </summary>
    private void HandleLevel(VirtualCpu cpu, ThreadContext ctx)
    {
        Mask();
        Interlocked.And(ref _hw, ~HwLatched); // mask_ack_irq(): an edge latch means nothing to a level line
        lock (_lock)
        {
            if (_inProgress)
            {
                return; // the running CPU unmasks when done, and the line re-fires if still asserted
            }
            if (_depth > 0 || _actions.Length == 0)
            {
                _pending = true;
                return;
            }
            StartRunLocked(cpu);
        }
        var actions = _actions;
        uint wake = RunChain(cpu, ctx, actions, out var result);
        uint toWake;
        lock (_lock)
        {
            NoteInterruptLocked(cpu, result);
            toWake = AccountWakeLocked(wake, actions);
            FinishRunLocked();
        }
        WakeThreads(toWake, actions);
    }

    private void SetPendingLocked()
    {
        if (_pending)
        {
            Interlocked.Increment(ref _coalesced);
        }
        _pending = true;
    }

    private void StartRunLocked(VirtualCpu cpu)
    {
        _inProgress = true;
        _runningCpu = cpu.Id;
        if (_threadsOneshotCapable)
        {
            // IRQS_ONESHOT: the line stays masked from here until every woken OneShot thread returned.
            Mask();
        }
    }

    private void FinishRunLocked()
    {
        _inProgress = false;
        _runningCpu = -1;
        RestartDeliveryLocked();
    }

    /// <summary>
    /// cond_unmask_irq() and check_irq_resend(): when the line is enabled, not running and no OneShot
    /// thread holds it, an edge left pending is resent and the chip is unmasked (delivering what
    /// latched meanwhile).
    /// </summary>
    private void RestartDeliveryLocked()
    {
        if (_depth != 0 || _inProgress || _threadsOneshot != 0)
        {
            return;
        }
        if (_pending)
        {
            _pending = false;
            if (_trigger == IrqTrigger.Edge)
            {
                _resends++;
                int old = Interlocked.Or(ref _hw, HwLatched);
                if ((old & HwLatched) != 0)
                {
                    Interlocked.Increment(ref _coalesced);
                }
                else if ((old & HwMasked) == 0)
                {
                    Deliver();
                }
            }
        }
        Unmask();
    }

    /// <summary>handle_irq_event_percpu(): every action in order; returns the thread bits to wake.</summary>
    private uint RunChain(VirtualCpu cpu, ThreadContext ctx, IrqAction[] actions, out IrqReturn result)
    {
        uint wake = 0;
        result = IrqReturn.None;
        foreach (var action in actions)
        {
            action.LastReturn = IrqReturn.None;
            // PERF: a tracepoint is one volatile load and a predictable branch while nobody listens.
            if (DeferRuntimeEventSource.IrqOn)
            {
                DeferRuntimeEventSource.Log.irq_handler_entry(Irq, action.Name, cpu.Id);
            }
            var fault = cpu.RunCallback(ctx, action, static a => a.LastReturn = a.Handler(a.Irq, a.DevId), static a => $"irq {a.Irq} handler '{a.Name}'");
            var ret = action.LastReturn;
            if (DeferRuntimeEventSource.IrqOn)
            {
                DeferRuntimeEventSource.Log.irq_handler_exit(Irq, action.Name, (int)ret, cpu.Id);
            }
            if (fault is not null)
            {
                // The oops is reported; count the run as handled so one throwing driver does not also
                // get its line disabled as spurious (the line keeps being serviced, DESIGN §3).
                ret = IrqReturn.Handled;
            }
            else if ((ret & ~(IrqReturn.Handled | IrqReturn.WakeThread)) != 0)
            {
                Controller.Runtime.ReportWarning(cpu.Id, action.ToString(), $"irq {Irq}: bogus return value {(int)ret:x} from handler '{action.Name}' (expected IRQ_NONE, IRQ_HANDLED or IRQ_WAKE_THREAD)");
                ret = IrqReturn.Handled;
            }
            if ((ret & IrqReturn.WakeThread) != 0)
            {
                if (action.Thread is null)
                {
                    Controller.Runtime.ReportWarning(cpu.Id, action.ToString(), $"irq {Irq}: handler '{action.Name}' returned IRQ_WAKE_THREAD but no thread function was set (warn_no_thread)");
                }
                else
                {
                    wake |= action.ThreadMask;
                }
            }
            result |= ret;
        }
        Volatile.Write(ref _cpuRuns[cpu.Id], _cpuRuns[cpu.Id] + 1);
        return wake;
    }

    /// <summary>
    /// note_interrupt(): 99,900 unhandled of the last 100,000 disables the line with a report naming its
    /// handlers; the unhandled count restarts after 100 ms without one.
    /// </summary>
    private void NoteInterruptLocked(VirtualCpu cpu, IrqReturn result)
    {
        bool none = result == IrqReturn.None;
        if (none)
        {
            _unhandled++;
        }
        if (!_spurious.Note(none, none ? Controller.SpuriousClock() : 0, Controller.SpuriousQuietTicks))
        {
            return;
        }
        _spuriousDisabled = true;
        _depth++;
        Mask();
        string handlers = string.Join(", ", _actions.Select(a => $"'{a.Name}'"));
        Controller.Runtime.ReportWarning(cpu.Id, $"irq {Irq}",
            $"irq {Irq}: nobody cared: {SpuriousThreshold:N0} or more of the last {SpuriousWindow:N0} interrupts were unhandled (IRQ_NONE); handlers: {handlers}. Disabling IRQ #{Irq}", Diagnostics.FaultKind.SpuriousIrqDisabled);
    }

    /// <summary>
    /// __irq_wake_thread()'s accounting: threads_active and the OneShot mask are raised before any thread
    /// may run. Returns the thread bits to wake (a thread with a run already pending merges with it).
    /// </summary>
    private uint AccountWakeLocked(uint wake, IrqAction[] actions)
    {
        if (wake == 0)
        {
            return 0;
        }
        uint toWake = 0;
        foreach (var action in actions)
        {
            if ((action.ThreadMask & wake) == 0 || !action.Thread!.TrySetRun())
            {
                continue;
            }
            if ((action.Flags & IrqFlags.OneShot) != 0)
            {
                _threadsOneshot |= action.ThreadMask;
            }
            Interlocked.Increment(ref _threadsActive);
            toWake |= action.ThreadMask;
        }
        return toWake;
    }

    /// <summary>Wakes the threads <see cref="AccountWakeLocked"/> chose, outside the lock.</summary>
    private static void WakeThreads(uint toWake, IrqAction[] actions)
    {
        if (toWake == 0)
        {
            return;
        }
        foreach (var action in actions)
        {
            if ((action.ThreadMask & toWake) != 0)
            {
                action.Thread!.Wake();
            }
        }
    }

    /// <summary>irq_finalize_oneshot() and the end of irq_thread_fn(): called by the action's thread after each run.</summary>
    internal void FinishThreadRun(IrqAction action)
    {
        lock (_lock)
        {
            if ((_threadsOneshot & action.ThreadMask) != 0 && !action.Thread!.IsRunPending)
            {
                _threadsOneshot &= ~action.ThreadMask;
                RestartDeliveryLocked();
            }
        }
        Interlocked.Decrement(ref _threadsActive);
    }
}
