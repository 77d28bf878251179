using System.Diagnostics;

namespace DeferRuntime.Locking;

/// <summary>
/// struct completion (kernel/sched/completion.c): "this has happened" for waiters that sleep. Each
/// <see cref="Complete"/> lets one wait through (done counts them, so complete-before-wait works);
/// <see cref="CompleteAll"/> lets every present and future wait through until <see cref="Reinit"/>.
/// Complete may be called from any context, hard IRQ included; the waits sleep and are refused in
/// atomic context.
/// </summary>
public sealed class Completion
{
    private const int CompletedAll = int.MaxValue; // UINT_MAX in the kernel: complete_all()

    // done is changed lock-free (CAS) so that complete() and a waiter that has not slept yet touch one
    // word each, as a ManualResetEventSlim does; the lock only guards the sleepers' list. A completer
    // changes done, then reads the sleeper count; a sleeper counts itself, then re-reads done: both
    // with full barriers, so one of them sees the other and no wake-up is lost.
    private readonly Lock _lock = new();
    private int _done; // A: completions not yet consumed, or CompletedAll
    private int _sleepers; // A: queued waiters (changed under _lock, read without it)
    private WaitList _waiters; // L: _lock
    private AsyncWaiter? _asyncHead, _asyncTail; // L: awaited waits (WaitForCompletionAsync), FIFO
    private long _arrivals; // L: tickets, so that sleepers and async waiters are served in arrival order

    /// <summary>complete(): wakes one waiter, or lets the next wait through at once.</summary>
    public void Complete()
    {
        int done = Volatile.Read(ref _done);
        while (done != CompletedAll)
        {
            int seen = Interlocked.CompareExchange(ref _done, done + 1, done);
            if (seen == done)
            {
                break;
            }
            done = seen;
        }
        if (Volatile.Read(ref _sleepers) != 0)
        {
            AsyncWaiter? granted;
            lock (_lock)
            {
                granted = PassOn();
            }
            AsyncWaiter.CompleteAll(granted);
        }
    }

    /// <summary>
    /// Under the lock, with a completion to hand over: the longest waiter gets it. A sleeper is woken and
    /// takes it itself (then breaks: one wake per completion, as swake_up_locked); an async waiter holds no
    /// thread to do that, so the completion is taken on its behalf here and it is unlinked; the next
    /// waiter is then tried with what is left. Returns the async waiters to complete, outside the lock.
    /// </summary>
    private AsyncWaiter? PassOn()
    {
        AsyncWaiter? granted = null;
        while (Volatile.Read(ref _done) != 0)
        {
            var sleeper = _waiters.First;
            var async = _asyncHead;
            if (sleeper is not null && (async is null || sleeper.Ticket < async.Ticket))
            {
                sleeper.Wake();
                break;
            }
            if (async is null || !TryConsume())
            {
                break;
            }
            UnlinkAsync(async);
            async.GrantedNext = granted;
            granted = async;
        }
        return granted;
    }

    /// <summary>complete_all(): wakes every waiter and lets every later wait through until <see cref="Reinit"/>.</summary>
    public void CompleteAll()
    {
        Interlocked.Exchange(ref _done, CompletedAll);
        AsyncWaiter? granted = null;
        lock (_lock)
        {
            for (var n = _waiters.First; n is not null; n = n.Next)
            {
                n.Wake();
            }
            while (_asyncHead is { } async)
            {
                UnlinkAsync(async);
                async.GrantedNext = granted;
                granted = async;
            }
        }
        AsyncWaiter.CompleteAll(granted);
    }

    /// <summary>reinit_completion(): back to not done. Only while no one waits.</summary>
    public void Reinit() => Interlocked.Exchange(ref _done, 0);

    /// <summary>completion_done(): true if a wait would not block now.</summary>
    public bool CompletionDone => Volatile.Read(ref _done) != 0;

    /// <summary>try_wait_for_completion(): consumes one completion without sleeping; false if none is there.</summary>
    public bool TryWaitForCompletion() => TryConsume();

    /// <summary>wait_for_completion(): sleeps until completed.</summary>
    public void WaitForCompletion() => _ = Wait("wait_for_completion()", long.MaxValue, CancellationToken.None);

    /// <summary>
    /// wait_for_completion_timeout(): returns 0 if it timed out, else the jiffies (milliseconds at HZ=1000)
    /// that were left, at least 1.
    /// </summary>
    public long WaitForCompletionTimeout(TimeSpan timeout) => TimedResult(Wait("wait_for_completion_timeout()", Deadline(timeout), CancellationToken.None));

    /// <summary>wait_for_completion_interruptible(): 0 when completed, -ERESTARTSYS when <paramref name="cancellation"/> fires first.</summary>
    public int WaitForCompletionInterruptible(CancellationToken cancellation) =>
        Wait("wait_for_completion_interruptible()", long.MaxValue, cancellation).Result == WaitResult.Interrupted ? Errno.ERESTARTSYS : 0;

    /// <summary>wait_for_completion_interruptible_timeout(): -ERESTARTSYS if interrupted, 0 if timed out, else jiffies left (at least 1).</summary>
    public long WaitForCompletionInterruptibleTimeout(TimeSpan timeout, CancellationToken cancellation)
    {
        var result = Wait("wait_for_completion_interruptible_timeout()", Deadline(timeout), cancellation);
        return result.Result == WaitResult.Interrupted ? Errno.ERESTARTSYS : TimedResult(result);
    }

    internal enum WaitResult
    {
        Done,
        TimedOut,
        Interrupted,
    }

    private readonly record struct Timed(WaitResult Result, long DeadlineTicks);

    // A completion that arrives within a few microseconds is caught by spinning, which costs the
    // completer no wake-up; ManualResetEventSlim does the same. Past that the waiter sleeps.
    private const int SpinRounds = 64;

    private Timed Wait(string caller, long deadline, CancellationToken cancellation)
    {
        MightSleep.Check(caller);
        bool spin = deadline == long.MaxValue && !cancellation.CanBeCanceled; // timed and interruptible waits go straight to their checks
        for (int i = 0; i <= (spin ? SpinRounds : 0); i++)
        {
            if (TryConsume())
            {
                return new Timed(WaitResult.Done, deadline);
            }
            Thread.SpinWait(8);
        }

        var node = WaitNode.Current;
        lock (_lock)
        {
            node.Prepare(exclusive: true);
            node.Ticket = ++_arrivals;
            _waiters.AddLast(node);
            Interlocked.Increment(ref _sleepers);
        }
        try
        {
            while (true)
            {
                if (TryConsume())
                {
                    return new Timed(WaitResult.Done, deadline);
                }
                if (cancellation.IsCancellationRequested)
                {
                    return new Timed(WaitResult.Interrupted, deadline);
                }
                if (deadline != long.MaxValue && Stopwatch.GetTimestamp() >= deadline)
                {
                    return new Timed(WaitResult.TimedOut, deadline);
                }
                node.Block(deadline, cancellation);
            }
        }
        finally
        {
            AsyncWaiter? granted;
            lock (_lock)
            {
                _waiters.Remove(node);
                Interlocked.Decrement(ref _sleepers);
                // A complete() that woke us while we left is passed on to the next waiter.
                granted = PassOn();
            }
            AsyncWaiter.CompleteAll(granted);
        }
    }

    /// <summary>
    /// wait_for_completion(), awaited: the task completes when this wait has consumed one completion, as
    /// <see cref="WaitForCompletion"/> returns (each <see cref="Complete"/> lets exactly one wait through,
    /// sleeping or awaited, in arrival order; after <see cref="CompleteAll"/> every wait does, until
    /// <see cref="Reinit"/>), but holds no thread meanwhile: the completer hands the completion to the
    /// waiter and completes its task, whose continuation runs asynchronously (never inside Complete, which
    /// may be in hard IRQ). Already done: a completed task, consumed at the call. Refused in atomic context
    /// at the call, as the sync wait is (might_sleep()).
    /// </summary>
    /// <remarks>
    /// <para><paramref name="cancellationToken"/> is wait_for_completion_interruptible()'s signal: the task
    /// becomes Canceled and has consumed nothing (a completion that arrives later goes to the next waiter,
    /// or stays for the next wait). A completion handed over just before the cancellation wins: the task
    /// then completes normally, having consumed it.</para>
    /// <para>A completion belongs to no runtime, and neither does this wait: like
    /// <see cref="WaitForCompletion"/> it ends only by a completion or the token, so pass a token that
    /// fires at shutdown if the completer may never run. (If the completer is accepted work of a runtime,
    /// shutdown's drain runs it and the task completes.)</para>
    /// </remarks>
    public Task WaitForCompletionAsync(CancellationToken cancellationToken = default)
    {
        MightSleep.Check("wait_for_completion()");
        if (TryConsume())
        {
            return Task.CompletedTask;
        }
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken);
        }
        var waiter = new AsyncWaiter(this);
        lock (_lock)
        {
            // Counted, with a full barrier, before done is read again: a complete() whose CAS came first
            // is seen here, one that comes later sees the count and takes the lock (after us) to pass on.
            waiter.Ticket = ++_arrivals;
            LinkAsync(waiter);
            Interlocked.Increment(ref _sleepers);
            if (TryConsume())
            {
                UnlinkAsync(waiter);
                return Task.CompletedTask;
            }
        }
        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.UnsafeRegister(static (w, token) => ((AsyncWaiter)w!).Cancel(token), waiter);
            bool linked;
            lock (_lock)
            {
                // Whoever unlinks it later takes the lock after this read, so sees the registration.
                linked = waiter.Linked;
            }
            if (!linked)
            {
                waiter.Registration.Unregister();
            }
        }
        return waiter.Task;
    }

    private void LinkAsync(AsyncWaiter w)
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
    }

    /// <summary>Unlinks an async waiter and uncounts it from the sleepers. Under the lock.</summary>
    private void UnlinkAsync(AsyncWaiter w)
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
        Interlocked.Decrement(ref _sleepers);
    }

    /// <summary>One awaited wait_for_completion(): a task, and its links on the completion's list (under its lock).</summary>
    private sealed class AsyncWaiter(Completion owner) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public AsyncWaiter? Prev, Next, GrantedNext; // L
        public bool Linked; // L
        public long Ticket; // L
        public CancellationTokenRegistration Registration;

        /// <summary>Cancelled: leaves the list unless a completion was handed to it first (that one wins).</summary>
        public void Cancel(CancellationToken token)
        {
            AsyncWaiter? granted;
            lock (owner._lock)
            {
                if (!Linked)
                {
                    return; // granted: completing normally
                }
                owner.UnlinkAsync(this);
                // Nothing was consumed for us; a completion waiting behind us goes on to the next waiter.
                granted = owner.PassOn();
            }
            CompleteAll(granted);
            TrySetCanceled(token);
        }

        /// <summary>Completes a chain of granted waiters, outside the lock.</summary>
        public static void CompleteAll(AsyncWaiter? granted)
        {
            while (granted is not null)
            {
                var w = granted;
                granted = w.TakeGrantedNext();
                w.Registration.Unregister();
                w.TrySetResult();
            }
        }

        private AsyncWaiter? TakeGrantedNext()
        {
            var next = GrantedNext;
            GrantedNext = null;
            return next;
        }
    }

    /// <summary>Takes one completion (CAS), or sees complete_all(); false if there is none.</summary>
    private bool TryConsume()
    {
        int done = Volatile.Read(ref _done);
        while (true)
        {
            if (done == 0)
            {
                return false;
            }
            if (done == CompletedAll)
            {
                return true;
            }
            int seen = Interlocked.CompareExchange(ref _done, done - 1, done);
            if (seen == done)
            {
                return true;
            }
            done = seen;
        }
    }

    internal static long Deadline(TimeSpan timeout)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "a timeout is zero or positive (or Timeout.InfiniteTimeSpan, MAX_SCHEDULE_TIMEOUT)");
        }
        return timeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
    }

    /// <summary>The kernel's timeout return: 0 on timeout, else the jiffies left, at least 1.</summary>
    private static long TimedResult(Timed timed) => timed.Result switch
    {
        WaitResult.TimedOut => 0,
        _ => JiffiesLeft(timed.DeadlineTicks),
    };

    internal static long JiffiesLeft(long deadline)
    {
        if (deadline == long.MaxValue)
        {
            return long.MaxValue;
        }
        long leftMs = (deadline - Stopwatch.GetTimestamp()) * 1000 / Stopwatch.Frequency;
        return Math.Max(1, leftMs);
    }
}
