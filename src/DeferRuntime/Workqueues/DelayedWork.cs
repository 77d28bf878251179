using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Timers;

namespace DeferRuntime.Workqueues;

/// <summary>
/// struct delayed_work: a work item queued after a delay, through a timer of the per-CPU timer wheel
/// (<see cref="TimerList"/>, TIMER_SOFTIRQ) whose callback queues it: <see cref="Workqueue.QueueDelayed(DelayedWork, long)"/>,
/// <see cref="Workqueue.ModDelayed(DelayedWork, long)"/>. PENDING is set from the queue call on, through
/// the delay, until the function starts; cancel stops the timer.
/// </summary>
/// <remarks>
/// <para>The timer is made on the first delayed queue (it belongs to that runtime); re-arming it
/// allocates nothing. It fires on the CPU that armed it (or the CPU passed to QueueDelayedOn), at or
/// after the expiry, and the item then goes to that CPU's pool (bound workqueues) or the workqueue's
/// unbound pool, as the kernel's delayed_work_timer_fn() does.</para>
/// <para><see cref="WorkStruct.FlushWork"/> on an item whose timer holds the pending instance (armed, or
/// being armed: from the CAS that takes PENDING on) waits only for an instance running now, if any, as the
/// kernel's flush_work() does (that instance is on no queue yet);
/// <see cref="FlushDelayedWork"/> fires it at once and waits for its run, as flush_delayed_work() does.</para>
/// <para>Field legend: <c>O:</c> the owner of PENDING (written before the timer is armed, read by its
/// callback, which the arm orders after); <c>A:</c> Interlocked/volatile.</para>
/// </remarks>
public class DelayedWork : WorkStruct
{
    private TimerList? _timer; // A: made once, by the PENDING owner of the first delayed queue
    internal Workqueue? TargetWq; // O: dwork->wq
    internal int TargetCpu = -1; // O: dwork->cpu (-1: WORK_CPU_UNBOUND, the CPU the timer fires on)

    /// <summary>INIT_DELAYED_WORK(): a delayed work item that runs <paramref name="func"/>.</summary>
    public DelayedWork(Action<WorkStruct> func, string? name = null)
        : base(func, name)
    {
    }

    internal override bool IsDelayed => true;

    /// <summary>The delay timer is armed (timer_pending(&amp;dwork-&gt;timer)).</summary>
    public bool IsTimerPending => Volatile.Read(ref _timer)?.TimerPending ?? false;

    /// <summary>The jiffy the delay timer was last set to expire at (0 before the first delayed queue).</summary>
    public long TimerExpires => Volatile.Read(ref _timer)?.Expires ?? 0;

    internal override bool TryStopTimer() => StopTimer(waitForCallback: false);

    /// <summary>
    /// del_timer() (or, <paramref name="waitForCallback"/>, del_timer_sync()) of the armed timer. If it
    /// stopped it, the stopper owns PENDING now; whatever it does next (skip, re-arm, queue at once), the
    /// timer no longer holds the instance.
    /// </summary>
    private bool StopTimer(bool waitForCallback)
    {
        if (Volatile.Read(ref _timer) is { } timer && (waitForCallback ? timer.DelTimerSync() : timer.DelTimer()))
        {
            ClearTimerHeld();
            TargetWq!.Runtime.Wq.DelayedDisarmed();
            return true;
        }
        return false;
    }

    /// <summary>The timer for <paramref name="runtime"/>, made on first use by the PENDING owner.</summary>
    internal TimerList TimerFor(Runtime runtime)
    {
        var timer = Volatile.Read(ref _timer);
        if (timer is null)
        {
            // One closure per delayed item, made once: re-arming allocates nothing.
            timer = runtime.TimerSetup(_ => TimerFired(), TimerFlags.None, $"delayed_work '{Name}'");
            Volatile.Write(ref _timer, timer);
        }
        else if (!ReferenceEquals(timer.Runtime, runtime))
        {
            throw new InvalidOperationException($"delayed work item '{Name}' has its timer on another runtime; a delayed work item belongs to the runtime of its first delayed queue.");
        }
        return timer;
    }

    /// <summary>delayed_work_timer_fn(): in TIMER_SOFTIRQ on the timer's CPU; PENDING is still held, so queue it.</summary>
    private void TimerFired()
    {
        var wq = TargetWq!;
        var cpu = TargetCpu >= 0 ? wq.Runtime.Cpus[TargetCpu] : ThreadContext.Current!.Cpu;
        wq.Runtime.Wq.DelayedDisarmed();
        // Before the link, never after: a flush that still sees TIMER returns at once, which is right
        // only while the instance is on no worklist.
        ClearTimerHeld();
        wq.QueueOwned(cpu, this, "delayed_work_timer_fn()", fromTimer: true);
    }

    /// <summary>
    /// cancel_delayed_work(): stops the timer or takes the item off its queue; does not wait for a running
    /// instance. Returns true if it was pending. Callable from any context.
    /// </summary>
    public bool CancelDelayedWork() => CancelCore(sync: false, "cancel_delayed_work()");

    /// <summary>
    /// cancel_delayed_work_sync(): as <see cref="CancelDelayedWork"/>, then waits for a running instance;
    /// when it returns the item is neither pending, nor armed, nor running. May sleep, except for an item
    /// last queued or armed on a bh workqueue, which may be cancelled from atomic context other than hard
    /// IRQ and is then busy-waited for, as <see cref="WorkStruct.CancelWorkSync"/> explains.
    /// </summary>
    public bool CancelDelayedWorkSync() => CancelCore(sync: true, "cancel_delayed_work_sync()", SyncEntry("cancel_delayed_work_sync()"));

    /// <summary>
    /// cancel_delayed_work_sync(), awaited: stops the timer or takes the item off its queue at the call,
    /// then completes (true if it was pending) once no instance runs, as <see cref="CancelDelayedWorkSync"/>
    /// returns, holding no thread meanwhile. Context rules and cancellation as
    /// <see cref="WorkStruct.CancelWorkSyncAsync"/>: cancelling the token cancels only the waiting.
    /// </summary>
    public Task<bool> CancelDelayedWorkSyncAsync(CancellationToken cancellationToken = default) =>
        CancelSyncAsync("cancel_delayed_work_sync()", SyncEntry("cancel_delayed_work_sync()"), cancellationToken);

    /// <summary>
    /// disable_delayed_work() (Linux 6.10+): stops the timer or takes the item off its queue, and keeps it
    /// from being queued or armed until <see cref="EnableDelayedWork"/>; as <see cref="WorkStruct.DisableWork"/>.
    /// Returns true if it was pending. Callable from any context.
    /// </summary>
    public bool DisableDelayedWork() => DisableCore(sync: false, "disable_delayed_work()", spin: false);

    /// <summary>
    /// disable_delayed_work_sync() (Linux 6.10+): <see cref="DisableDelayedWork"/>, then waits for a
    /// running instance; the context rule is <see cref="CancelDelayedWorkSync"/>'s.
    /// </summary>
    public bool DisableDelayedWorkSync() => DisableCore(sync: true, "disable_delayed_work_sync()", SyncEntry("disable_delayed_work_sync()"));

    /// <summary>enable_delayed_work() (Linux 6.10+): as <see cref="WorkStruct.EnableWork"/>.</summary>
    public bool EnableDelayedWork() => EnableWork();

    /// <summary>While the timer holds the instance, the workqueue it was armed for decides; otherwise the last queue.</summary>
    internal override bool LastQueuedOnBh => IsTimerHeld ? Volatile.Read(ref TargetWq)?.IsBh == true : base.LastQueuedOnBh;

    /// <summary>
    /// flush_delayed_work(): if the timer is armed, queues the item now (the delay is cut short), then
    /// waits for it as <see cref="WorkStruct.FlushWork"/> does. Returns true if it waited. May sleep.
    /// </summary>
    public bool FlushDelayedWork()
    {
        MightSleep.Check("flush_delayed_work()");
        ThrowIfSelf("flush_delayed_work()");
        // del_timer_sync(), as the kernel's flush_delayed_work(): a timer callback running now still holds
        // the instance (TIMER) until it has queued it, so wait for the callback, after which the flush
        // finds the instance queued; del_timer() would let the flush return at once.
        if (StopTimer(waitForCallback: true))
        {
            TargetWq!.QueueOwnedFromAnyThread(TargetCpu, this, "flush_delayed_work()");
        }
        return FlushCore("flush_delayed_work()");
    }

    /// <summary>
    /// flush_delayed_work(), awaited: if the timer is armed, queues the item now (the delay is cut short)
    /// at the call, then completes once that instance has run, as <see cref="FlushDelayedWork"/> returns:
    /// true if it waited for one, false (already complete) if there was nothing to wait for. Context
    /// rules and cancellation as <see cref="WorkStruct.FlushWorkAsync"/>.
    /// </summary>
    /// <remarks>
    /// The one wait that happens on the calling thread is the kernel's: del_timer_sync() of a timer whose
    /// callback runs right now, which only queues this item (microseconds), so that the flush finds the
    /// instance queued. The wait for the work itself holds no thread.
    /// </remarks>
    public Task<bool> FlushDelayedWorkAsync(CancellationToken cancellationToken = default)
    {
        MightSleep.Check("flush_delayed_work()");
        ThrowIfSelf("flush_delayed_work()");
        if (StopTimer(waitForCallback: true))
        {
            TargetWq!.QueueOwnedFromAnyThread(TargetCpu, this, "flush_delayed_work()");
        }
        return FlushCoreAsync("flush_delayed_work()", cancellationToken);
    }
}
