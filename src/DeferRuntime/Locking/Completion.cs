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
            lock (_lock)
            {
                _waiters.First?.Wake();
            }
        }
    }

    /// <summary>complete_all(): wakes every waiter and lets every later wait through until <see cref="Reinit"/>.</summary>
    public void CompleteAll()
    {
        Interlocked.Exchange(ref _done, CompletedAll);
        lock (_lock)
        {
            for (var n = _waiters.First; n is not null; n = n.Next)
            {
                n.Wake();
            }
        }
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
            lock (_lock)
            {
                _waiters.Remove(node);
                Interlocked.Decrement(ref _sleepers);
                // A complete() that woke us while we left is passed on to the next sleeper.
                if (Volatile.Read(ref _done) != 0)
                {
                    _waiters.First?.Wake();
                }
            }
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
