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

    private readonly Lock _lock = new();
    private int _done; // L: _lock (read without it only as a hint while spinning)
    private WaitList _waiters; // L: _lock

    /// <summary>complete(): wakes one waiter, or lets the next wait through at once.</summary>
    public void Complete()
    {
        lock (_lock)
        {
            if (_done != CompletedAll)
            {
                _done++;
            }
            _waiters.First?.Wake();
        }
    }

    /// <summary>complete_all(): wakes every waiter and lets every later wait through until <see cref="Reinit"/>.</summary>
    public void CompleteAll()
    {
        lock (_lock)
        {
            _done = CompletedAll;
            for (var n = _waiters.First; n is not null; n = n.Next)
            {
                n.Wake();
            }
        }
    }

    /// <summary>reinit_completion(): back to not done. Only while no one waits.</summary>
    public void Reinit()
    {
        lock (_lock)
        {
            _done = 0;
        }
    }

    /// <summary>completion_done(): true if a wait would not block now.</summary>
    public bool CompletionDone
    {
        get
        {
            lock (_lock)
            {
                return _done != 0;
            }
        }
    }

    /// <summary>try_wait_for_completion(): consumes one completion without sleeping; false if none is there.</summary>
    public bool TryWaitForCompletion()
    {
        lock (_lock)
        {
            return TryConsume();
        }
    }

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
        for (int i = 0; i <= SpinRounds; i++)
        {
            if (Volatile.Read(ref _done) != 0)
            {
                lock (_lock)
                {
                    if (TryConsume())
                    {
                        return new Timed(WaitResult.Done, deadline);
                    }
                }
            }
            if (deadline != long.MaxValue || cancellation.CanBeCanceled)
            {
                break; // timed and interruptible waits go straight to the checks below
            }
            Thread.SpinWait(8);
        }
        var node = WaitNode.Current;
        lock (_lock)
        {
            node.Prepare(exclusive: true);
            _waiters.AddLast(node);
        }
        try
        {
            while (true)
            {
                lock (_lock)
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
                }
                node.Block(deadline, cancellation);
            }
        }
        finally
        {
            lock (_lock)
            {
                _waiters.Remove(node);
                // A complete() meant for us while we left: pass it on to the next waiter.
                if (_done != 0)
                {
                    _waiters.First?.Wake();
                }
            }
        }
    }

    private bool TryConsume()
    {
        if (_done == 0)
        {
            return false;
        }
        if (_done != CompletedAll)
        {
            _done--;
        }
        return true;
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
