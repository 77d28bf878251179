namespace DeferRuntime.Workqueues;

// Awaited waits (issue 16): flush_workqueue(), drain_workqueue(), flush_work(), cancel_work_sync() as
// tasks that hold no thread while they wait.
//
// A sync waiter sleeps in _waiters and re-evaluates its condition each time a completion, a steal or a
// color retirement calls NotifyWaiters. An async waiter is the same thing without the thread: an object
// that carries its condition and a TaskCompletionSource, linked on _asyncHead under _asyncLock where the
// sync one would park. It counts in _waiting too, so the completers' side of the asymmetric Dekker is
// unchanged: while nobody waits a completion still pays one plain read and nothing else.
//
// Conditions are not evaluated by the completer: NotifyWaiters runs under pool locks, in softirq (bh
// pools) and in hard IRQ (cancel_work()), so it only schedules one scan on the .NET thread pool (a
// pre-allocated work item, coalesced by a flag), and the scan evaluates the conditions, which are
// lock-free reads (the untracked-runs list's lock at most), and completes the tasks whose condition
// holds. Continuations run asynchronously, never inside the scan or a completer.
//
// Shutdown: the sync waiters give up with Runtime.ThrowIfDead every 100 ms; the async ones are failed by
// a scan once the runtime is dead (a panic schedules one) and, at the end of Stop, when the workers are
// told to exit, every waiter whose condition still does not hold is failed with ObjectDisposedException:
// nothing will ever make it true. A waiter that registers after that fails at once.
internal sealed partial class WorkqueueSubsystem
{
    private readonly Lock _asyncLock = new();
    private AsyncWaiter? _asyncHead; // _asyncLock: FIFO of async waiters
    private AsyncWaiter? _asyncTail; // _asyncLock
    private int _asyncWaiting; // A: async waiters linked now (written under _asyncLock)
    private int _asyncScanQueued; // A: 1 while a scan is queued and has not started yet
    private bool _asyncClosed; // _asyncLock: Stop failed the waiters; new ones fail at once
    private AsyncScan? _asyncScan; // A: the thread-pool work item, made on the first async wait

    /// <summary>Async waiters linked right now (tests: an await that has reached its wait).</summary>
    public int AsyncWaiterCount => Volatile.Read(ref _asyncWaiting);

    /// <summary>
    /// The awaited <see cref="WaitFor"/>: a task that completes once <paramref name="condition"/> holds,
    /// is Canceled when <paramref name="cancellation"/> fires first (the waiter unlinked), and faults with
    /// the runtime's death (<see cref="ObjectDisposedException"/>, or <c>KernelPanicException</c>) if what it
    /// waits for can no longer happen. Already true: a completed task, no allocation. Never blocks.
    /// </summary>
    public Task WaitForAsync<T>(string caller, T state, Func<T, bool> condition, CancellationToken cancellation)
    {
        if (condition(state))
        {
            return Task.CompletedTask;
        }
        if (cancellation.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellation);
        }
        if (Volatile.Read(ref _asyncScan) is null)
        {
            Interlocked.CompareExchange(ref _asyncScan, new AsyncScan(this), null);
        }
        var waiter = new AsyncWaiter<T>(this, caller, state, condition);
        bool closed;
        lock (_asyncLock)
        {
            closed = _asyncClosed;
            if (!closed)
            {
                Link(waiter);
            }
        }
        if (closed)
        {
            // Stop has failed the waiters already: re-check (what ran before the stop may have made it
            // true), else nothing will.
            return condition(state) ? Task.CompletedTask : Task.FromException(StoppedException(caller));
        }
        // The waiters' half of the asymmetric Dekker, as in WaitFor (Link counted us in _waiting): a
        // completer that read _waiting before the increment had its change drained by this barrier, so
        // the check below sees it; one that reads after it sees us and schedules a scan.
        Interlocked.MemoryBarrierProcessWide();
        if (waiter.Check())
        {
            Finish(waiter, null, CancellationToken.None);
            return waiter.Task;
        }
        if (Runtime.IsDead)
        {
            Finish(waiter, Runtime.DeadException(caller), CancellationToken.None);
            return waiter.Task;
        }
        if (cancellation.CanBeCanceled)
        {
            waiter.Registration = cancellation.UnsafeRegister(static (w, token) => ((AsyncWaiter)w!).Cancel(token), waiter);
            bool linked;
            lock (_asyncLock)
            {
                // Whoever unlinks it later takes this lock first, so it sees the registration and
                // unregisters it; if it was unlinked before, the registration must not outlive it.
                linked = waiter.Linked;
            }
            if (!linked)
            {
                waiter.Registration.Unregister();
            }
        }
        return waiter.Task;
    }

    /// <summary>NotifyWaiters' slow path when async waiters exist: one scan on the thread pool, coalesced.</summary>
    private void ScheduleAsyncScan()
    {
        if (Volatile.Read(ref _asyncScanQueued) == 0 && Interlocked.Exchange(ref _asyncScanQueued, 1) == 0 && Volatile.Read(ref _asyncScan) is { } scan)
        {
            ThreadPool.UnsafeQueueUserWorkItem(scan, preferLocal: false);
        }
    }

    /// <summary>The runtime panicked: fail the async waiters whose condition does not hold (the sync ones give up within 100 ms).</summary>
    public void WakeAsyncWaitersOnDeath()
    {
        if (Volatile.Read(ref _asyncWaiting) != 0)
        {
            ScheduleAsyncScan();
        }
    }

    /// <summary>
    /// Evaluates every async waiter's condition and completes those that hold. With <paramref name="close"/>
    /// (end of Stop) or once the runtime is dead, the others fail: nothing will make them true any more.
    /// </summary>
    private void ScanAsyncWaiters(bool close)
    {
        AsyncWaiter? done = null;
        lock (_asyncLock)
        {
            if (close)
            {
                _asyncClosed = true;
            }
            bool giveUp = close || Runtime.IsDead;
            for (var w = _asyncHead; w is not null;)
            {
                var next = w.Next;
                bool holds = w.Check();
                if (holds || giveUp)
                {
                    Unlink(w);
                    w.DoneNext = done;
                    w.Failure = holds ? null : Runtime.IsDead ? Runtime.DeadException(w.Caller) : StoppedException(w.Caller);
                    done = w;
                }
                w = next;
            }
        }
        // Outside the lock: the tasks' continuations are asynchronous, but a synchronous waiter on a task
        // (Task.Wait) is signalled inline, and cancellation registrations are unregistered here.
        while (done is not null)
        {
            var w = done;
            done = w.DoneNext;
            w.DoneNext = null;
            w.Complete();
        }
    }

    /// <summary>End of Stop: every waiter whose condition does not hold now never will (the workers are told to exit).</summary>
    private void CloseAsyncWaiters() => ScanAsyncWaiters(close: true);

    private ObjectDisposedException StoppedException(string caller) =>
        new(nameof(Runtime), $"{caller}: the runtime has stopped its workqueues; what this waits for will never run.");

    /// <summary>Unlinks <paramref name="waiter"/> if it is still linked and completes its task (null: ran to completion). False if someone else finished it.</summary>
    private bool Finish(AsyncWaiter waiter, Exception? failure, CancellationToken canceled)
    {
        lock (_asyncLock)
        {
            if (!waiter.Linked)
            {
                return false;
            }
            Unlink(waiter);
        }
        waiter.Failure = failure;
        waiter.Complete(canceled);
        return true;
    }

    private void Link(AsyncWaiter w)
    {
        w.Prev = _asyncTail;
        w.Next = null;
        if (_asyncTail is null)
        {
            _asyncHead = w;
        }
        else
        {
            _asyncTail.Next = w;
        }
        _asyncTail = w;
        w.Linked = true;
        Volatile.Write(ref _asyncWaiting, _asyncWaiting + 1);
        // Counted with the sleeping waiters, so NotifyWaiters' one read covers both kinds.
        Interlocked.Increment(ref _waiting);
    }

    private void Unlink(AsyncWaiter w)
    {
        if (w.Prev is null)
        {
            _asyncHead = w.Next;
        }
        else
        {
            w.Prev.Next = w.Next;
        }
        if (w.Next is null)
        {
            _asyncTail = w.Prev;
        }
        else
        {
            w.Next.Prev = w.Prev;
        }
        w.Prev = w.Next = null;
        w.Linked = false;
        Volatile.Write(ref _asyncWaiting, _asyncWaiting - 1);
        Interlocked.Decrement(ref _waiting);
    }

    /// <summary>The scan as a pre-allocated thread-pool work item.</summary>
    private sealed class AsyncScan(WorkqueueSubsystem sub) : IThreadPoolWorkItem
    {
        public void Execute()
        {
            // Cleared before the scan (a full barrier): a notify from now on queues another scan, so a
            // change made while this one reads is never missed.
            Interlocked.Exchange(ref sub._asyncScanQueued, 0);
            sub.ScanAsyncWaiters(close: false);
        }
    }

    /// <summary>One awaited wait: its condition, its task, its links (under the subsystem's async lock).</summary>
    private abstract class AsyncWaiter(WorkqueueSubsystem sub, string caller) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public readonly WorkqueueSubsystem Sub = sub;
        public readonly string Caller = caller;
        public AsyncWaiter? Prev, Next, DoneNext; // _asyncLock
        public bool Linked; // _asyncLock
        public Exception? Failure; // written by whoever unlinked it, before Complete
        public CancellationTokenRegistration Registration;

        public abstract bool Check();

        public void Cancel(CancellationToken token) => Sub.Finish(this, null, token);

        public void Complete(CancellationToken canceled = default)
        {
            Registration.Unregister();
            if (canceled.IsCancellationRequested)
            {
                TrySetCanceled(canceled);
            }
            else if (Failure is { } failure)
            {
                TrySetException(failure);
            }
            else
            {
                TrySetResult();
            }
        }
    }

    private sealed class AsyncWaiter<T>(WorkqueueSubsystem sub, string caller, T state, Func<T, bool> condition) : AsyncWaiter(sub, caller)
    {
        public override bool Check() => condition(state);
    }
}
