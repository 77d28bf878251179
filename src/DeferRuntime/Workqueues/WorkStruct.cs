using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;
using DeferRuntime.Locking;

namespace DeferRuntime.Workqueues;

/// <summary>
/// struct work_struct: a pre-allocated deferred function that a <see cref="Workqueue"/> runs in process
/// context on one of its workers. Allocate it once (INIT_WORK) and queue it many times: queueing
/// allocates nothing. Queueing an item that is already pending does nothing and returns false; an item
/// is never run concurrently with itself on one workqueue.
/// </summary>
/// <remarks>
/// <para>State word bit layout (<c>State</c>, changed only by Interlocked):</para>
/// <code>
///   bit  0     PENDING  queued (or its delayed timer armed, or held by a canceler): WORK_STRUCT_PENDING
///   bit  1     TIMER    the pending instance belongs to its delay timer, not to a worklist: set by the CAS
///                       that takes PENDING (or bumps SEQ) for an arming queue_delayed_work/mod_delayed_work,
///                       cleared when the timer lets go of it (fires, is stopped) or the arming is refused
///   bits 2-63  SEQ      queue sequence number, incremented by the same CAS that sets PENDING for a queue
/// </code>
/// <para>Each queued instance has its own sequence number. The worker that starts an instance records it
/// in <c>RunningSeq</c>, and in <c>CompletedSeq</c> when the function returns; a canceler that steals a
/// pending instance records it in <c>SkippedSeq</c>. <see cref="FlushWork"/> reads SEQ at the call and
/// waits until that instance has completed, or was skipped with nothing older still running: exactly
/// "the instance queued before the call", never a later re-queue. Instances of one item on one
/// workqueue start in SEQ order and never overlap, which is what makes these three numbers enough for
/// one workqueue. An item also queued on another workqueue may run there while it runs here (the
/// kernel allows it): such "untracked" runs are listed with their SEQs (a rare path, under a lock), so a
/// flush still waits for every run at or below its target and a re-queue finds the run for its own
/// workqueue, wherever it is.</para>
/// <para>TIMER exists for <see cref="FlushWork"/>: a delayed instance is on no worklist from the CAS
/// that takes PENDING until its timer's callback queues it, and the kernel's flush_work() does not wait
/// for it in any of that time (start_flush_work() finds no pwq). The timer's own pending flag is set only at the arming,
/// after the CAS; TIMER, in the same word as PENDING and SEQ, tells a flusher from the first instant. It
/// is cleared before a fired or flushed instance is linked, so no flush takes a queued instance for an
/// armed one.</para>
/// <para>Field legend (kernel/workqueue.c style): <c>I:</c> set at construction; <c>A:</c> any thread,
/// Interlocked or volatile; <c>L:</c> under the lock of the pool the item is linked on or runs on (the
/// kernel's pool-&gt;lock); <c>O:</c> the owner of PENDING (the queuer between CAS and link, a canceler).</para>
/// </remarks>
public class WorkStruct
{
    internal const long Pending = 1;
    internal const int MaxDisableCount = 0xFFFF; // WORK_OFFQ_DISABLE_BITS: 16
    internal const long TimerHeld = 2;
    internal const int SeqShift = 2;
    private const long SeqOne = 1L << SeqShift;

    private readonly Action<WorkStruct> _func; // I

    internal long State; // A: PENDING | TIMER | SEQ << 2

    // L (of the pool the instance runs on) for writes; read lock-free by flushers, hence volatile-style reads there.
    internal long RunningSeq; // SEQ of the instance running, or of the last one started
    internal long CompletedSeq; // SEQ of the last instance whose function returned
    internal long SkippedSeq; // L or O: SEQ of the last pending instance stolen by a canceler (or refused at link)

    internal WorkStruct? Next, Prev; // L: links on the list ListKind names
    internal WorkListKind ListKind; // L
    internal WorkerPool? QueuedPool; // L: the pool whose list holds the item; read lock-free by cancel (non-null: linked)
    internal PoolWorkqueue? Pwq; // L: pwq of the queued instance (kept while it runs)
    internal Worker? ScheduledOn; // L: the worker whose scheduled list holds it (ListKind.Scheduled)
    internal int Color; // L: flush color of the queued instance
    internal Worker? CurrentWorker; // L (of the pool it runs on), read lock-free: the worker running the tracked instance
    internal int Untracked; // A: instances running while a tracked one ran (for other workqueues): rare
    internal long UntrackedCompletedSeq; // A: atomic max of the SEQs of untracked instances that completed
    private List<(Worker Worker, long Seq)>? _untrackedRuns; // A (made once), then under its own lock: the untracked runs now
    internal int SyncCancelers; // A: cancel_work_sync()/disable_work_sync() calls waiting for a run of it now (diagnostics, tests)
    internal int DisableCount; // A: disable_work() nesting (the kernel's off-queue disable count): queues are refused while non-zero
    internal WorkqueueSubsystem? Owner; // A: the runtime it was last queued on (whose waiters flush it)
    internal long QueuedAt; // O, then L: Stopwatch timestamp of the queue while a queue-latency histogram listens, else 0

    /// <summary>INIT_WORK(): a work item that runs <paramref name="func"/>; <paramref name="name"/> appears in reports (default: the method passed, `Type.Method`; for a lambda, its containing method).</summary>
    public WorkStruct(Action<WorkStruct> func, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(func);
        _func = func;
        Name = name ?? CallbackName.Of(func);
    }

    /// <summary>A name for reports, fault records and the stall watchdog.</summary>
    public string Name { get; }

    /// <summary>work_pending(): PENDING is set (queued, or a delayed item's timer is armed).</summary>
    public bool IsPending => (Volatile.Read(ref State) & Pending) != 0;

    /// <summary>work_busy(): pending and/or running right now; a racy snapshot for diagnostics only.</summary>
    public WorkBusy Busy =>
        (IsPending ? WorkBusy.Pending : WorkBusy.None) |
        (IsRunning ? WorkBusy.Running : WorkBusy.None);

    internal long Seq => Volatile.Read(ref State) >> SeqShift;

    /// <summary>The pending instance belongs to its delay timer (TIMER): being armed, armed, or firing and not yet queued.</summary>
    internal bool IsTimerHeld => (Volatile.Read(ref State) & TimerHeld) != 0;

    internal void Invoke() => _func(this);

    internal virtual bool IsDelayed => false;

    /// <summary>
    /// flush_work(): waits until the instance queued before the call (if any) has finished running;
    /// later re-queues are not waited for. Returns true if it waited, false if the item was idle. May
    /// sleep: refused in atomic context and from the item's own function (it would wait for itself).
    /// </summary>
    public bool FlushWork()
    {
        MightSleep.Check("flush_work()");
        ThrowIfSelf("flush_work()");
        return FlushCore("flush_work()");
    }

    internal bool FlushCore(string caller)
    {
        if (!FlushTarget(caller, out var owner, out long target))
        {
            return false;
        }
        owner.WaitFor(caller, (Work: this, Target: target), static s => s.Work.IsFlushed(s.Target));
        return true;
    }

    /// <summary>
    /// start_flush_work(): the instance a flush now waits for (its SEQ), or false if there is none to
    /// wait for (never queued, idle, or only a timer-held instance with nothing running). Checks the
    /// ordered-workqueue deadlock when there is one.
    /// </summary>
    private bool FlushTarget(string caller, out WorkqueueSubsystem owner, out long target)
    {
        owner = Volatile.Read(ref Owner)!;
        target = 0;
        if (owner is null)
        {
            return false; // never queued
        }
        // One read: SEQ and TIMER of the same instance.
        long state = Volatile.Read(ref State);
        target = state >> SeqShift;
        if ((state & TimerHeld) != 0)
        {
            // flush_work() of a delayed item whose timer holds the pending instance (armed, or about to be:
            // the queuer has taken PENDING and not armed it yet): that instance is on no pwq, so, as the
            // kernel's start_flush_work() does, wait only for an instance running now, if any.
            // (flush_delayed_work() is the call that fires the timer at once and waits for the run.)
            if (!IsRunning)
            {
                return false;
            }
            target = Volatile.Read(ref RunningSeq);
        }
        if (IsFlushed(target))
        {
            return false;
        }
        ThrowIfOrderedDeadlock(caller);
        return true;
    }

    /// <summary>
    /// flush_work(), awaited: completes once the instance queued before the call (if any) has finished
    /// running, exactly what <see cref="FlushWork"/> waits for (the instance is picked at the call; later
    /// re-queues are not waited for), with true if there was one to wait for and false if the item was
    /// idle (then the task is already complete). Holds no thread meanwhile. The context rules are
    /// <see cref="FlushWork"/>'s, checked at the call, which throws: refused in atomic context, from the
    /// item's own function, and from an item of an ordered workqueue that it is queued behind.
    /// </summary>
    /// <remarks>
    /// <paramref name="cancellationToken"/> cancels the wait only (the task becomes Canceled; the item
    /// is not touched). If the runtime shuts down meanwhile, the task completes once shutdown's drain has
    /// run the instance, or faults with <see cref="ObjectDisposedException"/> if it never will.
    /// </remarks>
    public Task<bool> FlushWorkAsync(CancellationToken cancellationToken = default)
    {
        MightSleep.Check("flush_work()");
        ThrowIfSelf("flush_work()");
        return FlushCoreAsync("flush_work()", cancellationToken);
    }

    internal Task<bool> FlushCoreAsync(string caller, CancellationToken cancellation)
    {
        if (!FlushTarget(caller, out var owner, out long target))
        {
            return s_false;
        }
        return ThenTrue(owner.WaitForAsync(caller, (Work: this, Target: target), static s => s.Work.IsFlushed(s.Target), cancellation));
    }

    private static readonly Task<bool> s_false = Task.FromResult(false);
    private static readonly Task<bool> s_true = Task.FromResult(true);

    /// <summary>The flush's answer once its wait is over: true, it waited.</summary>
    private static Task<bool> ThenTrue(Task wait) => wait.IsCompletedSuccessfully ? s_true : AwaitThenTrue(wait);

    private static async Task<bool> AwaitThenTrue(Task wait)
    {
        await wait.ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// The instance with SEQ <paramref name="target"/> completed, or it was skipped and no older instance
    /// still runs. Read order matters: see the remarks of the type. Lock-free.
    /// </summary>
    internal bool IsFlushed(long target)
    {
        if (Completed >= target)
        {
            return !RunsAtOrBelow(target);
        }
        if (Volatile.Read(ref SkippedSeq) < target)
        {
            return false;
        }
        // The target was skipped (or ran). After it left the pending state only later instances can
        // start, so: a started instance newer than the target, or the latest started one completed.
        long running = Volatile.Read(ref RunningSeq);
        return (running > target || Completed >= running) && !RunsAtOrBelow(target);
    }

    /// <summary>
    /// Some run with SEQ at most <paramref name="target"/> is still going: an older instance, or the
    /// target itself while a later instance for another workqueue has already completed (completions
    /// across workqueues come in any order). The tracked run is read lock-free: its worker writes
    /// CurrentWork and CurrentSeq before it publishes itself in CurrentWorker, and clears CurrentWorker
    /// only after CompletedSeq.
    /// </summary>
    private bool RunsAtOrBelow(long target)
    {
        if (Volatile.Read(ref CurrentWorker) is { } worker && ReferenceEquals(Volatile.Read(ref worker.CurrentWork), this) &&
            Volatile.Read(ref worker.CurrentSeq) <= target)
        {
            return true;
        }
        if (Volatile.Read(ref _untrackedRuns) is { } runs)
        {
            lock (runs)
            {
                foreach (var run in runs)
                {
                    if (run.Seq <= target)
                    {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    /// <summary>An untracked run (for another workqueue, while the tracked one runs) starts. Rare; allocates the list once per item.</summary>
    internal void AddUntrackedRun(Worker worker, long seq)
    {
        var runs = Volatile.Read(ref _untrackedRuns) ?? Interlocked.CompareExchange(ref _untrackedRuns, [], null) ?? _untrackedRuns!;
        lock (runs)
        {
            runs.Add((worker, seq));
        }
    }

    /// <summary>An untracked run ends.</summary>
    internal void RemoveUntrackedRun(Worker worker)
    {
        var runs = Volatile.Read(ref _untrackedRuns)!;
        lock (runs)
        {
            for (int i = runs.Count - 1; i >= 0; i--)
            {
                if (ReferenceEquals(runs[i].Worker, worker))
                {
                    runs.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>
    /// The pool where this item runs now for <paramref name="wq"/>, if it does: the tracked run's, or an
    /// untracked one's (find_worker_executing_work's question, asked per workqueue so that a run for
    /// another workqueue does not hide it). Racy; the caller re-checks under that pool's lock.
    /// </summary>
    internal WorkerPool? PoolRunningFor(Workqueue wq)
    {
        if (Volatile.Read(ref CurrentWorker) is { } worker && ReferenceEquals(worker.CurrentPwq?.Wq, wq))
        {
            return worker.Pool;
        }
        if (Volatile.Read(ref Untracked) != 0 && Volatile.Read(ref _untrackedRuns) is { } runs)
        {
            lock (runs)
            {
                foreach (var run in runs)
                {
                    if (ReferenceEquals(run.Worker.CurrentPwq?.Wq, wq))
                    {
                        return run.Worker.Pool;
                    }
                }
            }
        }
        return null;
    }

    /// <summary>Some instance runs now (tracked or untracked): the lock-free gate of find_worker_executing_work. Lock-free.</summary>
    internal bool IsRunning => Volatile.Read(ref CurrentWorker) is not null || Volatile.Read(ref Untracked) != 0;

    /// <summary>The highest SEQ known completed, tracked or untracked. Lock-free.</summary>
    internal long Completed => Math.Max(Volatile.Read(ref CompletedSeq), Volatile.Read(ref UntrackedCompletedSeq));

    /// <summary>
    /// cancel_work(): takes the item off its queue if it is pending; does not wait for a running
    /// instance. Returns true if it was pending. Callable from any context.
    /// </summary>
    public bool CancelWork() => CancelCore(sync: false, "cancel_work()");

    /// <summary>
    /// cancel_work_sync(): takes the item off its queue if pending and waits for a running instance to
    /// finish; when it returns the item is neither pending nor running (unless re-queued afterwards).
    /// As in Linux 6.10+ it disables the item for the wait (queues return false meanwhile, and the item
    /// reads as not pending) and enables it again at the end. Returns true if it was pending. May sleep, except for an item last queued on a bh workqueue: that
    /// one may also be cancelled from atomic context other than hard IRQ (softirq, bottom halves or
    /// interrupts disabled, a spinlock held), and then busy-waits for its running instance, as in Linux
    /// 6.10+. Refused from hard IRQ for a bh item, in any atomic context for others, and from the item itself.
    /// </summary>
    public bool CancelWorkSync() => CancelCore(sync: true, "cancel_work_sync()", SyncEntry("cancel_work_sync()"));

    /// <summary>
    /// cancel_work_sync(), awaited: at the call, as <see cref="CancelWorkSync"/> does, disables the item
    /// for the wait and takes back a pending instance; the task then completes, with true if it was
    /// pending, once no instance runs any more, and the item is enabled again. Holds no thread while an
    /// instance runs (not even the busy-wait the sync call does for a bh item in atomic context). The
    /// context rules are <see cref="CancelWorkSync"/>'s, checked at the call, which throws.
    /// </summary>
    /// <remarks>
    /// <para>Cancelling <paramref name="cancellationToken"/> cancels the waiting, not the cancel: the
    /// pending instance was already taken back at the call and stays cancelled (the answer "was it
    /// pending" is lost with the Canceled task), the cancel's own disable is undone, so the item may be
    /// queued again, and an instance that was running at the call may still be running. That is the state
    /// cancel_work() leaves.</para>
    /// <para>If the runtime shuts down meanwhile, the task completes once the running instance returns,
    /// or faults with <see cref="ObjectDisposedException"/> if shutdown stopped the workers while it still
    /// ran; either way the item is enabled again.</para>
    /// </remarks>
    public Task<bool> CancelWorkSyncAsync(CancellationToken cancellationToken = default) =>
        CancelSyncAsync("cancel_work_sync()", SyncEntry("cancel_work_sync()"), cancellationToken);

    /// <summary>
    /// <see cref="CancelCore"/> with sync, awaited: the disable, the grab and the context re-check happen
    /// at the call; only the wait for the running instance is a task, and the disable is undone when it ends.
    /// </summary>
    private protected Task<bool> CancelSyncAsync(string caller, bool atomic, CancellationToken cancellation)
    {
        Interlocked.Increment(ref DisableCount);
        bool handedOver = false;
        try
        {
            int grabbed = GrabPendingWaiting();
            ReleasePending();
            if (atomic && RunsOutsideBh())
            {
                // As CancelCore: the run to wait for is not a bh one, which the kernel refuses here.
                MightSleep.Check(caller); // throws: the caller is atomic
            }
            var result = grabbed == 1 ? s_true : s_false;
            var owner = Volatile.Read(ref Owner);
            if (owner is null || IsIdleNow())
            {
                return result;
            }
            Interlocked.Increment(ref SyncCancelers);
            Task wait;
            try
            {
                wait = owner.WaitForAsync(caller, this, static w => w.IsIdleNow(), cancellation);
            }
            catch
            {
                Interlocked.Decrement(ref SyncCancelers);
                throw;
            }
            handedOver = true;
            return FinishCancelAsync(wait, result, caller);
        }
        finally
        {
            if (!handedOver)
            {
                UndoOwnDisable(caller);
            }
        }
    }

    private async Task<bool> FinishCancelAsync(Task wait, Task<bool> result, string caller)
    {
        try
        {
            await wait.ConfigureAwait(false);
            return result.Result;
        }
        finally
        {
            Interlocked.Decrement(ref SyncCancelers);
            UndoOwnDisable(caller);
        }
    }

    /// <summary>work_is_disabled-style check: <see cref="DisableWork"/> calls outnumber <see cref="EnableWork"/> calls, so queueing it does nothing.</summary>
    public bool IsDisabled => Volatile.Read(ref DisableCount) != 0;

    /// <summary>
    /// disable_work() (Linux 6.10+): cancels the item as <see cref="CancelWork"/> does and keeps it from
    /// being queued until a matching <see cref="EnableWork"/>: queue_work() and friends return false and
    /// do nothing meanwhile. Calls nest (at most 65535 deep). Does not wait for a running instance.
    /// Returns true if it was pending. Callable from any context. With bh workqueues this is what
    /// tasklet_disable() becomes.
    /// </summary>
    public bool DisableWork() => DisableCore(sync: false, "disable_work()", spin: false);

    /// <summary>
    /// disable_work_sync() (Linux 6.10+): <see cref="DisableWork"/>, then waits for a running instance
    /// to finish: when it returns the item is neither pending nor running, and stays so until
    /// <see cref="EnableWork"/>. The context rule is <see cref="CancelWorkSync"/>'s (may sleep; a bh
    /// item may also be disabled from atomic context other than hard IRQ, busy-waiting).
    /// </summary>
    public bool DisableWorkSync() => DisableCore(sync: true, "disable_work_sync()", SyncEntry("disable_work_sync()"));

    /// <summary>
    /// enable_work() (Linux 6.10+): undoes one <see cref="DisableWork"/>. Returns true if the item can be
    /// queued again (the last disable was undone). Callable from any context. Refused for an item that is
    /// not disabled (the kernel warns: an unbalanced enable).
    /// </summary>
    public bool EnableWork()
    {
        if (!TryDropDisable(out int before))
        {
            throw new InvalidOperationException(
                $"enable_work() on work item '{Name}', which is not disabled: every enable_work() must undo one disable_work() " +
                "(the kernel's work_offqd_enable() warns 'unbalanced disable/enable').");
        }
        return before == 1;
    }

    /// <summary>work_offqd_enable()'s decrement: one disable fewer, never below 0. False (nothing done) at 0.</summary>
    private bool TryDropDisable(out int before)
    {
        int count = Volatile.Read(ref DisableCount);
        while (count > 0)
        {
            int seen = Interlocked.CompareExchange(ref DisableCount, count - 1, count);
            if (seen == count)
            {
                before = count;
                return true;
            }
            count = seen;
        }
        before = 0;
        return false;
    }

    /// <summary>work_offqd_disable(): one more disable; refused at the 16-bit limit (the kernel warns and leaves the count).</summary>
    private void BumpDisableCount(string caller)
    {
        int count = Volatile.Read(ref DisableCount);
        while (true)
        {
            if (count >= MaxDisableCount) // a cancel_work_sync() waiting may hold one more, its own
            {
                throw new InvalidOperationException(
                    $"{caller} on work item '{Name}': disabled {MaxDisableCount} times already, the most the count holds (the kernel's " +
                    "work_offqd_disable() warns and leaves it). Every disable_work() needs a matching enable_work().");
            }
            int seen = Interlocked.CompareExchange(ref DisableCount, count + 1, count);
            if (seen == count)
            {
                return;
            }
            count = seen;
        }
    }

    /// <summary>
    /// enable_work() of a disable the runtime took itself (a cancel_work_sync()'s, or a failed
    /// disable_work()'s): an unbalanced enable_work() by the user during the wait may have taken it
    /// already. The kernel's work_offqd_enable() then warns and leaves the count at 0; so do we, rather
    /// than drive it negative (disabled for good, beyond any enable_work()).
    /// </summary>
    private void UndoOwnDisable(string caller)
    {
        if (!TryDropDisable(out _))
        {
            Volatile.Read(ref Owner)?.Runtime.ReportWarning(CpuContext.CurrentCpuId, $"work item '{Name}'",
                $"{caller} on work item '{Name}': its own disable was already undone by an enable_work() without a matching disable " +
                "while it waited (the kernel's work_offqd_enable() warns 'unbalanced disable/enable'); the count stays at 0.");
        }
    }

    /// <summary>
    /// __cancel_work(WORK_CANCEL_DISABLE), and the flush of disable_work_sync(). The count goes up first
    /// (a full barrier), then the pending instance, if any, is taken back: a queuer that took PENDING
    /// before the count went up has either linked its instance (taken back here) or will see the count
    /// (see TrySetPendingForQueue). The kernel takes PENDING first and bumps the count under it; from
    /// outside the two orders cannot be told apart.
    /// </summary>
    private protected bool DisableCore(bool sync, string caller, bool spin)
    {
        BumpDisableCount(caller);
        try
        {
            Volatile.Read(ref Owner)?.DisableWindowHook?.Invoke(this);
            return CancelCore(sync, caller, spin);
        }
        catch
        {
            // The call failed (a sync wait the context forbids, found after the grab; the runtime died):
            // it leaves no disable behind, as a failed cancel_work_sync() leaves the item enabled. A pending
            // instance it already took back stays cancelled.
            UndoOwnDisable(caller);
            throw;
        }
    }

    /// <summary>
    /// The context rule of the kernel's __cancel_work_sync() (Linux 6.10+): an item whose work data says
    /// WORK_OFFQ_BH (last on a bh pool) gets WARN_ON_ONCE(in_hardirq()), any other might_sleep(); and
    /// __flush_work(from_cancel) busy-waits for a bh item instead of sleeping; and no item may wait for
    /// itself. Returns true if the caller is atomic and so must spin; throws where the kernel forbids the call.
    /// </summary>
    /// <remarks>
    /// Why spinning is safe, and why not from hard IRQ: the running instance of a bh item runs in the
    /// softirq of its CPU. A canceler in softirq, with bottom halves disabled or (a task) with interrupts
    /// disabled holds its own CPU's bh gate, so that instance runs on another CPU and finishes without us.
    /// A task that is only non-preemptible (preemption disabled, a spinlock held) does not keep its CPU's
    /// softirq out, but that softirq runs on cpu/N and needs nothing the task holds. A hard IRQ may have interrupted that
    /// very softirq on its own CPU (here: cpu/N runs hard IRQs in the middle of its softirqs), which can
    /// then never finish while the handler spins: a deadlock, so the kernel warns and we refuse. Decided at
    /// the call from where the item was last queued (or, for a delayed item, armed); a kernel built
    /// without atomic-sleep debugging does the same for an armed bh item, which needs no wait. Checked
    /// again after the grab (<see cref="CancelCore"/>), where the kernel decides: a run to wait for that
    /// is not on a bh pool gets might_sleep().
    /// </remarks>
    private protected bool SyncEntry(string caller)
    {
        bool spin = SyncCancelMustSpin(caller);
        ThrowIfSelf(caller); // it would wait for itself
        return spin;
    }

    private bool SyncCancelMustSpin(string caller)
    {
        var ctx = ThreadContext.Current;
        if (!MightSleep.IsAtomic(ctx))
        {
            return false;
        }
        if (!LastQueuedOnBh)
        {
            MightSleep.Check(caller); // throws: might_sleep()
        }
        if (ctx is { InHardirq: true })
        {
            throw new InvalidOperationException(
                $"{caller} on bh work item '{Name}' in hard-IRQ context on CPU {ctx.Cpu.Id}: a bh work item may be cancelled synchronously " +
                "from atomic context, busy-waiting for its running instance, but not from hard IRQ (the kernel's __cancel_work_sync(): " +
                "WARN_ON_ONCE(in_hardirq())), because the instance may be the softirq this interrupt preempted on this CPU, which cannot " +
                "finish while the handler waits. Use cancel_work() here, or cancel it synchronously from softirq or task context.");
        }
        return true;
    }

    /// <summary>Last queued (or, for a delayed item, armed) on a bh workqueue: the kernel's WORK_OFFQ_BH. Racy; for the context rule only.</summary>
    internal virtual bool LastQueuedOnBh => Volatile.Read(ref Pwq)?.Pool.IsBh == true;

    /// <summary>
    /// __cancel_work() (<paramref name="sync"/> false) or __cancel_work_sync() (true), as Linux 6.10+ has
    /// them: the sync one disables the item, takes back a pending instance, waits for the running one and
    /// enables the item again. While it waits the item is idle and disabled: work_pending() reads false,
    /// queues return false, and another canceler does not wait for this one.
    /// </summary>
    internal bool CancelCore(bool sync, string caller, bool spin = false)
    {
        if (!sync)
        {
            int taken = GrabPendingWaiting();
            ReleasePending();
            return taken == 1;
        }
        // The cancel's own disable, for its wait: not one of the user's nesting levels, so not held to
        // their limit (the kernel does not refuse a cancel there either).
        Interlocked.Increment(ref DisableCount);
        try
        {
            int grabbed = GrabPendingWaiting();
            ReleasePending();
            // No run can start now (the count refuses every queue, and a pending instance was taken back).
            if (spin && RunsOutsideBh())
            {
                // The run to wait for may sleep: it is not a bh one, whatever the call was decided
                // from (a re-queue onto a normal workqueue since, or a timer armed for a bh one while
                // the item runs for a normal one). The kernel's __cancel_work_sync() decides here,
                // after the grab, from the pool the work data names, and calls might_sleep().
                MightSleep.Check(caller); // throws: the caller is atomic
            }
            var owner = Volatile.Read(ref Owner);
            if (owner is not null && !IsIdleNow())
            {
                Interlocked.Increment(ref SyncCancelers);
                try
                {
                    if (spin)
                    {
                        SpinUntil(owner, caller, static w => w.IsIdleNow());
                    }
                    else
                    {
                        owner.WaitFor(caller, this, static w => w.IsIdleNow());
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref SyncCancelers);
                }
            }
            return grabbed == 1;
        }
        finally
        {
            // enable_work() of the cancel's own disable, also when the wait throws (the runtime died).
            UndoOwnDisable(caller);
        }
    }

    /// <summary>
    /// The busy-wait of __flush_work(from_cancel) for a bh item (the kernel's cpu_relax() loop), for a
    /// canceler in atomic context. cpu/N takes pending hard IRQs meanwhile, as a CPU spinning with
    /// interrupts enabled would; Backoff naps past its bound, so a holder on the same core gets to run.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SpinUntil(WorkqueueSubsystem owner, string caller, Func<WorkStruct, bool> condition)
    {
        var ctx = ThreadContext.Current;
        var backoff = default(Backoff);
        while (!condition(this))
        {
            owner.Runtime.ThrowIfDead(caller);
            if (ctx is not null)
            {
                ctx.Cpu.PreemptionPoint(ctx);
            }
            backoff.Wait();
        }
    }

    /// <summary>
    /// Some run now is on a pool that is not bh (a run that may sleep). For a sync canceler after its grab,
    /// when its disable keeps any run from starting. Lock-free but for the rare untracked runs.
    /// </summary>
    private bool RunsOutsideBh()
    {
        if (Volatile.Read(ref CurrentWorker) is { } worker && !worker.Pool.IsBh)
        {
            return true;
        }
        if (Volatile.Read(ref Untracked) != 0 && Volatile.Read(ref _untrackedRuns) is { } runs)
        {
            lock (runs)
            {
                foreach (var run in runs)
                {
                    if (!run.Worker.Pool.IsBh)
                    {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    /// <summary>No instance is running (the latest started one completed). Lock-free.</summary>
    private bool IsIdleNow() => !IsRunning && Completed >= Volatile.Read(ref RunningSeq);

    /// <summary>Raises <paramref name="field"/> to <paramref name="value"/> unless it is already higher (an atomic max: instances on different pools finish in any order).</summary>
    internal static void RaiseTo(ref long field, long value)
    {
        long seen = Volatile.Read(ref field);
        while (seen < value)
        {
            long old = Interlocked.CompareExchange(ref field, value, seen);
            if (old == seen)
            {
                return;
            }
            seen = old;
        }
    }

    /// <summary>
    /// work_grab_pending(): grabs PENDING, retrying while its holder is between taking it and letting go
    /// (a queuer before its link, a timer callback queueing, another canceler, mod_delayed_work()): each
    /// holds it for a few instructions. Returns 1 if a pending instance was taken back, 0 if it was idle;
    /// PENDING is the caller's either way.
    /// </summary>
    internal int GrabPendingWaiting()
    {
        var backoff = default(Backoff);
        while (true)
        {
            int r = TryGrabPending();
            if (r >= 0)
            {
                return r;
            }
            backoff.Wait();
        }
    }

    /// <summary>
    /// try_to_grab_pending(): 1 = stole a pending instance (unlinked it, or stopped its timer), 0 = it
    /// was idle and PENDING is now set by us (no SEQ bump: not a queue), -1 = retry (PENDING is held by
    /// a queuer not yet linked, a firing timer, or a canceler).
    /// </summary>
    internal int TryGrabPending()
    {
        if (TryStopTimer()) // and TIMER is cleared: PENDING is ours
        {
            Volatile.Write(ref SkippedSeq, Seq);
            Volatile.Read(ref Owner)?.NotifyWaiters();
            return 1;
        }
        long s = Volatile.Read(ref State);
        if ((s & Pending) == 0)
        {
            return Interlocked.CompareExchange(ref State, s | Pending, s) == s ? 0 : -1;
        }
        var pool = Volatile.Read(ref QueuedPool);
        if (pool is null)
        {
            return -1;
        }
        return pool.TryStealQueued(this) ? 1 : -1;
    }

    /// <summary>del_timer() of a delayed item's armed timer, clearing TIMER if it stopped it (PENDING is then the caller's); plain items have none.</summary>
    internal virtual bool TryStopTimer() => false;

    /// <summary>The timer let go of the pending instance (stopped, or fired): its owner may now link it. Clear TIMER before linking.</summary>
    private protected void ClearTimerHeld() => Interlocked.And(ref State, ~TimerHeld);

    /// <summary>Clears PENDING held by its owner (a canceler, or a refused queue or arming, with TIMER); wakes waiters.</summary>
    internal void ReleasePending()
    {
        Debug.Assert(IsPending, "releasing PENDING that is not held");
        Interlocked.And(ref State, ~(Pending | TimerHeld));
        Volatile.Read(ref Owner)?.NotifyWaiters();
    }

    /// <summary>
    /// Sets PENDING for a new queue with a new SEQ; false if it was already set. PERF: one CAS in the
    /// common case, no allocation.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TrySetPendingForQueue() => TrySetPendingForQueue(timerHeld: false);

    /// <summary>
    /// As <see cref="TrySetPendingForQueue()"/>; with <paramref name="timerHeld"/> the same CAS sets TIMER,
    /// for a queue_delayed_work() that will arm the timer, so that no flush ever sees the instance pending
    /// without knowing that it is the timer's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TrySetPendingForQueue(bool timerHeld)
    {
        long add = SeqOne + Pending + (timerHeld ? TimerHeld : 0);
        long s = Volatile.Read(ref State);
        while ((s & Pending) == 0)
        {
            Debug.Assert((s & TimerHeld) == 0, "TIMER without PENDING");
            long seen = Interlocked.CompareExchange(ref State, s + add, s);
            if (seen == s)
            {
                // clear_pending_if_disabled(): read after the CAS (a full barrier), as disable_work() bumps
                // the count before it grabs PENDING, so either this queue sees the count or the disabler
                // sees this instance and takes it back.
                if (Volatile.Read(ref DisableCount) != 0)
                {
                    ReleaseAsSkipped();
                    return false;
                }
                return true;
            }
            s = seen;
        }
        return false;
    }

    /// <summary>
    /// The instance its PENDING owner numbered will not be queued (a disabled item, a refused queue or
    /// arming, a caller that failed before the link): it counts as skipped, so a flush_work() that read
    /// its SEQ does not wait for it, and PENDING (with TIMER) goes. Cold paths only.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void ReleaseAsSkipped()
    {
        Volatile.Write(ref SkippedSeq, Seq);
        ReleasePending();
    }

    /// <summary>
    /// Turns PENDING held by its owner (mod_delayed_work) into a new queued instance: a new SEQ, and TIMER
    /// in the same atomic add if the timer is to hold it (the owner has cleared it, so the add sets it).
    /// </summary>
    internal void BumpSeqOwned(bool timerHeld)
    {
        Debug.Assert(IsPending, "BumpSeqOwned without PENDING");
        Debug.Assert((Volatile.Read(ref State) & TimerHeld) == 0, "BumpSeqOwned with TIMER still set");
        Interlocked.Add(ref State, SeqOne + (timerHeld ? TimerHeld : 0));
    }

    /// <summary>flush_work/cancel_work_sync of the item from its own function would wait for itself.</summary>
    private protected void ThrowIfSelf(string caller)
    {
        if (Worker.Current is { CurrentWork: var running } worker && ReferenceEquals(running, this))
        {
            throw new InvalidOperationException(
                $"{caller} on work item '{Name}' from its own function (on {worker.Name}): it would wait for itself to finish, a deadlock.");
        }
    }

    /// <summary>
    /// From an item of an ordered workqueue (max_active 1), flushing an item queued behind it on the same
    /// workqueue can never finish: the flusher holds the only active slot.
    /// </summary>
    private void ThrowIfOrderedDeadlock(string caller)
    {
        if (Worker.Current is { CurrentPwq: { } running } && running.Wq.IsOrdered &&
            ReferenceEquals(Volatile.Read(ref Pwq)?.Wq, running.Wq) && IsPending)
        {
            throw new InvalidOperationException(
                $"{caller} on work item '{Name}' from a work item of ordered workqueue '{running.Wq.Name}', where '{Name}' is queued behind it: it can only start after the flusher returns, a deadlock.");
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"work '{Name}'";
}

/// <summary>Which list a linked work item is on (its links are valid under <see cref="WorkStruct.QueuedPool"/>'s lock).</summary>
internal enum WorkListKind : byte
{
    None,
    Incoming, // pushed onto its pool's incoming list without the lock, not yet spliced
    Worklist, // the pool's worklist: active, waiting for a worker
    Inactive, // its pwq's inactive list: over max_active, or frozen
    Scheduled, // a worker's scheduled list: assigned to the worker already running it (non-reentrancy)
}
