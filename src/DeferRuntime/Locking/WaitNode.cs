using System.Diagnostics;
using DeferRuntime.Cpus;

namespace DeferRuntime.Locking;

/// <summary>
/// wait_queue_entry: one waiting thread, on at most one wait list at a time. Each thread owns one and
/// reuses it, so a contended wait allocates nothing. <see cref="Granted"/> is set by a waker that hands
/// the resource over directly (mutex hand-off, semaphore up, rwsem grant).
/// </summary>
internal sealed class WaitNode
{
    [ThreadStatic]
    private static WaitNode? t_current;

    private readonly Parker _parker = new();

    public WaitNode? Prev; // L: the list owner's lock
    public WaitNode? Next; // L
    public bool Queued; // L
    public bool Exclusive; // L: wake-one waiter (prepare_to_wait_exclusive)
    public bool Reader; // L: rwsem read waiter
    public volatile bool Granted; // set by the waker under the list lock, read by the waiter
    public volatile bool Woken; // set by the waker: at least one wake since the node was queued
    public long Ticket; // L: arrival order on a list that also holds async waiters (Completion), else unused

    private WaitNode(LockThreadState owner) => Owner = owner;

    public LockThreadState Owner { get; }

    public static WaitNode Current => t_current ??= new WaitNode(LockThreadState.Current);

    /// <summary>Resets the per-wait fields before queueing.</summary>
    public void Prepare(bool exclusive, bool reader = false)
    {
        Debug.Assert(!Queued, "a thread waits on one list at a time");
        Exclusive = exclusive;
        Reader = reader;
        Granted = false;
        Woken = false;
    }

    /// <summary>Wakes the waiting thread (try_to_wake_up). Call after setting what it waits for.</summary>
    public void Wake()
    {
        Woken = true;
        _parker.Unpark();
    }

    /// <summary>
    /// schedule() / schedule_timeout(): blocks once until woken, the deadline passes or the token is
    /// cancelled; may return early, so callers loop on their condition. Tells the worker pool.
    /// </summary>
    public void Block(long deadlineTicks, CancellationToken cancellation)
    {
        long timeoutNs = -1;
        if (deadlineTicks != long.MaxValue)
        {
            long left = deadlineTicks - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                return;
            }
            timeoutNs = (long)(left * (1_000_000_000.0 / Stopwatch.Frequency));
        }

        var notifier = ThreadContext.Current?.SleepNotifier;
        Owner.Blocked = true;
        notifier?.Sleeping();
        try
        {
            if (cancellation.CanBeCanceled)
            {
                using var registration = cancellation.UnsafeRegister(static p => ((Parker)p!).Unpark(), _parker);
                if (!cancellation.IsCancellationRequested)
                {
                    _parker.Park(timeoutNs);
                }
            }
            else
            {
                _parker.Park(timeoutNs);
            }
        }
        finally
        {
            Owner.Blocked = false;
            notifier?.Running();
        }
    }
}

/// <summary>
/// An intrusive FIFO list of <see cref="WaitNode"/>s; every member is called with the owner's lock held.
/// </summary>
internal struct WaitList
{
    private WaitNode? _head;
    private WaitNode? _tail;

    public readonly bool IsEmpty => _head is null;

    public readonly WaitNode? First => _head;

    public int Count { readonly get; private set; }

    public void AddLast(WaitNode node)
    {
        node.Prev = _tail;
        node.Next = null;
        if (_tail is null)
        {
            _head = node;
        }
        else
        {
            _tail.Next = node;
        }
        _tail = node;
        node.Queued = true;
        Count++;
    }

    /// <summary>Adds before the first exclusive waiter: non-exclusive waiters go first, as __add_wait_queue does.</summary>
    public void AddNonExclusive(WaitNode node)
    {
        var at = _head;
        while (at is not null && !at.Exclusive)
        {
            at = at.Next;
        }
        if (at is null)
        {
            AddLast(node);
            return;
        }
        node.Next = at;
        node.Prev = at.Prev;
        if (at.Prev is null)
        {
            _head = node;
        }
        else
        {
            at.Prev.Next = node;
        }
        at.Prev = node;
        node.Queued = true;
        Count++;
    }

    public void Remove(WaitNode node)
    {
        if (!node.Queued)
        {
            return;
        }
        if (node.Prev is null)
        {
            _head = node.Next;
        }
        else
        {
            node.Prev.Next = node.Next;
        }
        if (node.Next is null)
        {
            _tail = node.Prev;
        }
        else
        {
            node.Next.Prev = node.Prev;
        }
        node.Prev = node.Next = null;
        node.Queued = false;
        Count--;
    }
}
