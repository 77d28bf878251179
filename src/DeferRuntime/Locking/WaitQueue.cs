using System.Diagnostics;

namespace DeferRuntime.Locking;

/// <summary>
/// wait_queue_head_t (kernel/sched/wait.c): threads sleep until a condition they name holds, and wakers
/// make the condition true, then call <see cref="WakeUp"/>. Non-exclusive waiters are all woken;
/// exclusive ones (the <c>exclusive</c> flag, prepare_to_wait_exclusive) one per wake-up, which avoids a
/// thundering herd. Wake-ups may come from any context; the waits sleep and are refused in atomic context.
/// </summary>
/// <remarks>
/// The condition is evaluated outside the queue's lock, after the waiter is queued, so a wake-up
/// between the check and the sleep is never lost (the waiter's signal persists). Woken entries are
/// removed by the waker (autoremove_wake_function) and re-queued by the waiter if it must sleep again.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "wait_queue_head_t: the kernel's own name is the discoverable one")]
public sealed class WaitQueue
{
    private readonly Lock _lock = new();
    private WaitList _waiters; // L: _lock

    /// <summary>Threads queued right now (waitqueue_active counts them).</summary>
    public int WaiterCount
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count;
            }
        }
    }

    /// <summary>wait_event(): sleeps until <paramref name="condition"/> is true.</summary>
    public void WaitEvent(Func<bool> condition, bool exclusive = false) =>
        _ = Wait("wait_event()", condition, exclusive, long.MaxValue, CancellationToken.None);

    /// <summary>
    /// wait_event_timeout(): 0 if the condition was still false when the timeout elapsed, 1 if it was true
    /// when the timeout elapsed, else the jiffies (ms at HZ=1000) left, at least 1.
    /// </summary>
    public long WaitEventTimeout(Func<bool> condition, TimeSpan timeout, bool exclusive = false)
    {
        long deadline = Completion.Deadline(timeout);
        return Wait("wait_event_timeout()", condition, exclusive, deadline, CancellationToken.None) switch
        {
            Outcome.TimedOut => 0,
            _ => Completion.JiffiesLeft(deadline),
        };
    }

    /// <summary>wait_event_interruptible(): 0 once the condition is true, -ERESTARTSYS if <paramref name="cancellation"/> fires first.</summary>
    public int WaitEventInterruptible(Func<bool> condition, CancellationToken cancellation, bool exclusive = false) =>
        Wait("wait_event_interruptible()", condition, exclusive, long.MaxValue, cancellation) == Outcome.Interrupted ? Errno.ERESTARTSYS : 0;

    /// <summary>wait_event_interruptible_timeout(): -ERESTARTSYS if interrupted, 0 if timed out with the condition false, else jiffies left (at least 1).</summary>
    public long WaitEventInterruptibleTimeout(Func<bool> condition, TimeSpan timeout, CancellationToken cancellation, bool exclusive = false)
    {
        long deadline = Completion.Deadline(timeout);
        return Wait("wait_event_interruptible_timeout()", condition, exclusive, deadline, cancellation) switch
        {
            Outcome.Interrupted => Errno.ERESTARTSYS,
            Outcome.TimedOut => 0,
            _ => Completion.JiffiesLeft(deadline),
        };
    }

    /// <summary>wake_up(): wakes every non-exclusive waiter and one exclusive waiter. Returns how many were woken.</summary>
    public int WakeUp() => Wake(1);

    /// <summary>wake_up_all(): wakes every waiter. Returns how many were woken.</summary>
    public int WakeUpAll() => Wake(int.MaxValue);

    /// <summary>
    /// wake_up_nr(): wakes every non-exclusive waiter and up to <paramref name="exclusive"/> exclusive ones;
    /// 0 wakes them all, as in the kernel (its countdown never reaches the limit).
    /// </summary>
    public int WakeUpNr(int exclusive)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(exclusive);
        return Wake(exclusive == 0 ? int.MaxValue : exclusive);
    }

    private int Wake(int exclusive)
    {
        int woken = 0;
        lock (_lock)
        {
            // Non-exclusive waiters are queued ahead of exclusive ones, so this wakes them all first.
            for (var node = _waiters.First; node is not null && exclusive > 0;)
            {
                var next = node.Next;
                _waiters.Remove(node);
                node.Wake();
                woken++;
                if (node.Exclusive)
                {
                    exclusive--;
                }
                node = next;
            }
        }
        return woken;
    }

    private enum Outcome
    {
        Condition,
        TimedOut,
        Interrupted,
    }

    private Outcome Wait(string caller, Func<bool> condition, bool exclusive, long deadline, CancellationToken cancellation)
    {
        ArgumentNullException.ThrowIfNull(condition);
        if (condition())
        {
            return Outcome.Condition;
        }
        MightSleep.Check(caller);
        var node = WaitNode.Current;
        node.Prepare(exclusive);
        var outcome = Outcome.Condition;
        try
        {
            while (true)
            {
                lock (_lock)
                {
                    if (!node.Queued)
                    {
                        if (exclusive)
                        {
                            _waiters.AddLast(node);
                        }
                        else
                        {
                            _waiters.AddNonExclusive(node);
                        }
                    }
                }
                if (condition())
                {
                    return outcome = Outcome.Condition;
                }
                if (cancellation.IsCancellationRequested)
                {
                    return outcome = Outcome.Interrupted;
                }
                if (deadline != long.MaxValue && Stopwatch.GetTimestamp() >= deadline)
                {
                    return outcome = Outcome.TimedOut;
                }
                node.Block(deadline, cancellation);
            }
        }
        finally
        {
            bool passOn;
            lock (_lock)
            {
                // A woken exclusive waiter that leaves without its condition passes the wake-up on
                // (abort_exclusive_wait), so the wake-one is not swallowed.
                passOn = exclusive && !node.Queued && node.Woken && outcome != Outcome.Condition;
                _waiters.Remove(node);
            }
            if (passOn)
            {
                Wake(1);
            }
        }
    }
}
