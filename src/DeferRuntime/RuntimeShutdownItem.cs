namespace DeferRuntime;

/// <summary>What kind of accepted work a <see cref="RuntimeShutdownItem"/> is.</summary>
public enum ShutdownItemKind
{
    /// <summary>A raised softirq vector whose action had not run (raise_softirq()).</summary>
    Softirq,

    /// <summary>A scheduled tasklet (tasklet_schedule(), tasklet_hi_schedule()).</summary>
    Tasklet,

    /// <summary>A queued work item (queue_work()), on a bound, unbound or BH workqueue.</summary>
    Work,

    /// <summary>A delayed work item whose timer had fired, so it was queued (queue_delayed_work()).</summary>
    DelayedWork,

    /// <summary>A timer callback (timer_list or hrtimer).</summary>
    Timer,

    /// <summary>A threaded handler woken by its hard-IRQ handler (IRQ_WAKE_THREAD).</summary>
    IrqThread,

    /// <summary>An interrupt asserted on a CPU whose handlers had not run.</summary>
    HardIrq,

    /// <summary>A cross-CPU function call (smp_call_function_single()).</summary>
    IpiCall,

    /// <summary>A NAPI poll.</summary>
    NapiPoll,
}

/// <summary>Where an accepted item stands when <see cref="Runtime.Shutdown"/> returns.</summary>
public enum ShutdownItemState
{
    /// <summary>It never started and never will: no callback of the runtime starts after shutdown returns.</summary>
    NotStarted,

    /// <summary>It started before shutdown gave up and had not returned: its thread was left behind (<see cref="RuntimeShutdownReport.StuckThreads"/>).</summary>
    StillRunning,
}

/// <summary>
/// One accepted item that shutdown did not see finish: what a program re-queues durably, or compensates
/// for, after <see cref="Runtime.Shutdown"/> (everything accepted and not listed ran to its end).
/// </summary>
/// <param name="Name">The item's name: a tasklet's, work item's or timer's (its method when it was given none), a softirq vector (<c>NET_RX</c>), an irq line (<c>irq 5 'eth0'</c>).</param>
/// <param name="Kind">What it is.</param>
/// <param name="State">Not started (never will), or still running on a thread that was left behind.</param>
/// <param name="Cpu">The virtual CPU it was queued on or runs on, or null (an unbound workqueue's item not yet started).</param>
/// <param name="Workqueue">The workqueue of a work item, or null.</param>
/// <param name="Thread">The thread running it (<see cref="ShutdownItemState.StillRunning"/>), or null.</param>
/// <param name="Item">The object itself (the <c>WorkStruct</c>, <c>Tasklet</c>, <c>TimerList</c>...), so a program can act on it; null for a softirq vector or an interrupt.</param>
public sealed record RuntimeShutdownItem(
    string Name, ShutdownItemKind Kind, ShutdownItemState State, int? Cpu, string? Workqueue, string? Thread, object? Item)
{
    /// <summary>One line: <c>work 'flush' on workqueue 'events' (CPU 0): not started</c>.</summary>
    public override string ToString()
    {
        string kind = Kind switch
        {
            ShutdownItemKind.DelayedWork => "delayed work",
            ShutdownItemKind.IrqThread => "irq thread",
            ShutdownItemKind.HardIrq => "hard IRQ",
            ShutdownItemKind.IpiCall => "IPI call",
            ShutdownItemKind.NapiPoll => "napi poll",
            _ => Kind.ToString().ToLowerInvariant(),
        };
        string wq = Workqueue is null ? "" : $" on workqueue '{Workqueue}'";
        string cpu = Cpu is { } c ? $" (CPU {c})" : "";
        string state = State == ShutdownItemState.NotStarted ? "not started" : $"still running on {Thread}";
        string disabled = Item is Tasklets.Tasklet { IsDisabled: true } ? " (disabled)" : "";
        return $"{kind} '{Name}'{disabled}{wq}{cpu}: {state}";
    }
}
