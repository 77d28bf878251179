using System.Diagnostics;

namespace DeferRuntime.Locking;

/// <summary>
/// struct semaphore (kernel/locking/semaphore.c): a counting semaphore whose <see cref="Up"/> hands the
/// count directly to the first sleeper (FIFO, no barging). Down sleeps and is refused in atomic
/// context; Up may be called from any context and by any thread.
/// </summary>
public sealed class KernelSemaphore
{
    private readonly Lock _lock = new();
    private int _count; // L: _lock
    private WaitList _waiters; // L: _lock

    /// <summary>sema_init(): a semaphore with <paramref name="count"/> units.</summary>
    public KernelSemaphore(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _count = count;
    }

    /// <summary>Units available now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    /// <summary>down(): takes a unit, sleeping until one is free.</summary>
    public void Down() => _ = DownCommon("down()", long.MaxValue, CancellationToken.None);

    /// <summary>down_interruptible(): 0 when a unit was taken, -EINTR when <paramref name="cancellation"/> fired first.</summary>
    public int DownInterruptible(CancellationToken cancellation) => DownCommon("down_interruptible()", long.MaxValue, cancellation);

    /// <summary>down_timeout(): 0 when a unit was taken, -ETIME when <paramref name="timeout"/> passed first.</summary>
    public int DownTimeout(TimeSpan timeout) => DownCommon("down_timeout()", Completion.Deadline(timeout), CancellationToken.None);

    /// <summary>down_trylock(): takes a unit only if one is free now. Returns true on success (the kernel returns 0 then).</summary>
    public bool DownTrylock()
    {
        lock (_lock)
        {
            if (_count > 0)
            {
                _count--;
                return true;
            }
            return false;
        }
    }

    /// <summary>up(): gives a unit back, to the first sleeper if there is one.</summary>
    public void Up()
    {
        lock (_lock)
        {
            if (_waiters.First is { } first)
            {
                _waiters.Remove(first);
                first.Granted = true;
                first.Wake();
                return;
            }
            if (_count == int.MaxValue)
            {
                throw new InvalidOperationException("up() on a semaphore whose count is at int.MaxValue: more ups than downs.");
            }
            _count++;
        }
    }

    private int DownCommon(string caller, long deadline, CancellationToken cancellation)
    {
        MightSleep.Check(caller);
        var node = WaitNode.Current;
        lock (_lock)
        {
            if (_count > 0)
            {
                _count--;
                return 0;
            }
            node.Prepare(exclusive: true);
            _waiters.AddLast(node);
        }
        while (true)
        {
            if (node.Granted)
            {
                return 0;
            }
            bool interrupted = cancellation.IsCancellationRequested;
            bool timedOut = deadline != long.MaxValue && Stopwatch.GetTimestamp() >= deadline;
            if (interrupted || timedOut)
            {
                lock (_lock)
                {
                    if (node.Granted)
                    {
                        return 0; // handed over as we gave up: keep it, as __down_common does
                    }
                    _waiters.Remove(node);
                }
                return interrupted ? Errno.EINTR : Errno.ETIME;
            }
            node.Block(deadline, cancellation);
        }
    }
}
