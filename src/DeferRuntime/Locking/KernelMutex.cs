using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;

namespace DeferRuntime.Locking;

/// <summary>
/// struct mutex: a sleeping lock. Only its owner unlocks it; recursion is an error; it may not be taken
/// in atomic context (hard IRQ, softirq, spinlock held, irqs or bh disabled). A contender first spins
/// while the owner is running (optimistic spinning), then sleeps in FIFO order; a sleeper that was woken
/// and still lost the race to a spinner asks for hand-off, and the next unlock gives the mutex directly
/// to it, so waiters cannot starve (kernel/locking/mutex.c's MUTEX_FLAG_HANDOFF).
/// </summary>
/// <remarks>
/// <c>_owner</c> is the owning thread's state (null = unlocked), changed by CAS; <c>_waiters</c> and
/// <c>_handoff</c> are protected by <c>_wait</c>; <c>_waiterCount</c> mirrors the list length for the
/// unlock fast path (Interlocked, read without the lock). Sleeping waiters block on their thread's
/// reusable <see cref="WaitNode"/>, so a contended lock allocates nothing.
/// </remarks>
public sealed class KernelMutex : IDisposable, ILockdepTarget
{
    // Optimistic spinning: how long a contender spins while the owner runs before it sleeps. Kernel
    // mutexes spin as long as the owner is on a CPU; a bound keeps a preempted owner from burning ours.
    private const int SpinIterations = 256;

    private LockThreadState? _owner; // A: CAS null -> owner
    private readonly Lock _wait = new();
    private WaitList _waiters; // L: _wait
    private WaitNode? _handoff; // L: _wait; the starving waiter the next unlock hands the mutex to
    private int _waiterCount; // A: mirror of _waiters.Count for the unlock fast path
    private readonly LockdepMap _map;

    string ILockdepTarget.LockdepName => _map.Name;

    LockClass? ILockdepTarget.LockdepClass => _map.Class;

    /// <summary>mutex_init(): a named mutex (the validator's class), or unnamed (classed by its declaration site).</summary>
    public KernelMutex(string? name = null, LockValidator? validator = null, [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        _map = new LockdepMap(name, file, line, validator);
    }

    /// <summary>The mutex's name.</summary>
    public string Name => _map.Name;

    /// <summary>mutex_is_locked().</summary>
    public bool IsLocked => Volatile.Read(ref _owner) is not null;

    /// <summary>True if the calling thread owns it (lockdep_is_held).</summary>
    public bool IsOwnedByCurrentThread => ReferenceEquals(Volatile.Read(ref _owner), LockThreadState.Current);

    /// <summary>mutex_lock(): sleeps until the mutex is ours. Refused in atomic context and on recursion.</summary>
    public void Lock()
    {
        var state = Prepare("mutex_lock()");
        if (Interlocked.CompareExchange(ref _owner, state, null) is not null)
        {
            LockSlow(state, CancellationToken.None);
        }
        state.Push(this);
    }

    /// <summary>
    /// mutex_lock_interruptible(): as <see cref="Lock"/>, but gives up when <paramref name="cancellation"/>
    /// is cancelled. Returns 0 when the mutex is held, -EINTR (<see cref="Errno.EINTR"/>) when interrupted.
    /// </summary>
    public int LockInterruptible(CancellationToken cancellation)
    {
        var state = Prepare("mutex_lock_interruptible()");
        if (Interlocked.CompareExchange(ref _owner, state, null) is not null && !LockSlow(state, cancellation))
        {
            return Errno.EINTR;
        }
        state.Push(this);
        return 0;
    }

    /// <summary>mutex_trylock(): takes it only if it is free now; never sleeps.</summary>
    public bool TryLock()
    {
        var state = LockThreadState.Current;
        if (Interlocked.CompareExchange(ref _owner, state, null) is not null)
        {
            return false;
        }
        _map.Acquire(this, state, trylock: true);
        state.Push(this);
        return true;
    }

    /// <summary>mutex_unlock(): only the owner may; wakes the first sleeper, or hands the mutex to a starving one.</summary>
    public void Unlock()
    {
        var state = LockThreadState.Current;
        if (!ReferenceEquals(Volatile.Read(ref _owner), state))
        {
            ThrowNotOwner(state);
        }
        _map.Release(this, state, "mutex_unlock()");
        if (Volatile.Read(ref _waiterCount) == 0)
        {
            Interlocked.Exchange(ref _owner, null); // full barrier, then re-check for a waiter that just queued
            if (Volatile.Read(ref _waiterCount) == 0)
            {
                return;
            }
            WakeFirst(handOff: false);
            return;
        }
        WakeFirst(handOff: true);
    }

    /// <summary><c>using var _ = mutex.Enter();</c>: mutex_lock ... mutex_unlock.</summary>
    public MutexScope Enter()
    {
        Lock();
        return new MutexScope(this);
    }

    /// <summary>Reports to the validator if the mutex is disposed while held (mutex_destroy).</summary>
    public void Dispose() => _map.Freed(Volatile.Read(ref _owner));

    private LockThreadState Prepare(string caller)
    {
        MightSleep.Check(caller);
        var state = LockThreadState.Current;
        if (ReferenceEquals(Volatile.Read(ref _owner), state))
        {
            _map.Report(this, state); // tells the validator first, when one is on
            throw new InvalidOperationException($"{caller} of '{Name}' by thread '{Thread.CurrentThread.Name}', which already owns it: kernel mutexes are not recursive and this would deadlock.");
        }
        _map.Acquire(this, state);
        return state;
    }

    /// <summary>Optimistic spin, then sleep in FIFO order. False if cancelled.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool LockSlow(LockThreadState state, CancellationToken cancellation)
    {
        // mutex_optimistic_spin(): worth it only while the owner is running and nobody sleeps ahead of us.
        // Exponential backoff between looks: every CAS that fails pulls the owner's line away from it,
        // so a spinner that looks less often lets a running owner finish (and re-take) sooner.
        int pause = 1;
        for (int i = 0; i < SpinIterations; i++)
        {
            var owner = Volatile.Read(ref _owner);
            if (owner is null)
            {
                // Spinners may barge ahead of sleepers, as in the kernel; a sleeper that keeps losing asks
                // for hand-off, which no barging CAS can beat (the mutex is never free in between).
                if (Interlocked.CompareExchange(ref _owner, state, null) is null)
                {
                    return true;
                }
            }
            else if (owner.Blocked)
            {
                break; // the owner sleeps: spinning cannot win soon
            }
            Thread.SpinWait(pause);
            if (pause < 64)
            {
                pause <<= 1;
            }
        }

        var node = WaitNode.Current;
        lock (_wait)
        {
            node.Prepare(exclusive: true);
            _waiters.AddLast(node);
            Interlocked.Increment(ref _waiterCount);
        }

        bool woken = false;
        while (true)
        {
            if (node.Granted)
            {
                return true; // handed over: the unlocker made us the owner and dequeued us
            }
            lock (_wait)
            {
                if (node.Granted)
                {
                    return true;
                }
                if ((_handoff is null || _handoff == node) && Interlocked.CompareExchange(ref _owner, state, null) is null)
                {
                    Dequeue(node);
                    return true;
                }
                if (woken && _handoff is null)
                {
                    _handoff = node; // woken and still beaten by a spinner: the next unlock gives it to us
                }
                if (cancellation.IsCancellationRequested)
                {
                    Dequeue(node);
                    // We may have been the one the last unlock woke: pass the wake-up on.
                    if (Volatile.Read(ref _owner) is null && _waiters.First is { } next)
                    {
                        next.Wake();
                    }
                    return false;
                }
            }
            node.Block(long.MaxValue, cancellation);
            woken = node.Woken;
        }
    }

    private void Dequeue(WaitNode node)
    {
        _waiters.Remove(node);
        Interlocked.Decrement(ref _waiterCount);
        if (_handoff == node)
        {
            _handoff = null;
        }
    }

    /// <summary>__mutex_unlock_slowpath(): hand off to a starving waiter, or release and wake the first.</summary>
    private void WakeFirst(bool handOff)
    {
        lock (_wait)
        {
            if (handOff && _handoff is { } starving)
            {
                // Direct hand-off: ownership moves without ever being free, so no spinner can barge.
                Volatile.Write(ref _owner, starving.Owner);
                Dequeue(starving);
                starving.Granted = true;
                starving.Wake();
                return;
            }
            if (handOff)
            {
                Interlocked.Exchange(ref _owner, null);
            }
            _waiters.First?.Wake();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowNotOwner(LockThreadState state)
    {
        var owner = Volatile.Read(ref _owner);
        if (_map.Class is { } cls)
        {
            cls.Validator.BadUnlock(Name, state);
        }
        throw new InvalidOperationException(owner is null
            ? $"mutex_unlock() of '{Name}', which is not locked: unlock without a matching lock."
            : $"mutex_unlock() of '{Name}' by thread '{Thread.CurrentThread.Name}', but it is owned by '{owner.Thread.Name}': only the owner may unlock a mutex.");
    }
}

/// <summary>A held <see cref="KernelMutex"/>; Dispose unlocks it.</summary>
public readonly ref struct MutexScope
{
    private readonly KernelMutex? _mutex;

    internal MutexScope(KernelMutex mutex) => _mutex = mutex;

    /// <summary>mutex_unlock().</summary>
    public void Dispose() => _mutex?.Unlock();
}

/// <summary>The kernel error numbers the sleeping primitives return, negated as the kernel returns them.</summary>
public static class Errno
{
    /// <summary>-EINTR: interrupted (a cancelled <see cref="CancellationToken"/>).</summary>
    public const int EINTR = -4;

    /// <summary>-ETIME: timed out (down_timeout).</summary>
    public const int ETIME = -62;

    /// <summary>-ERESTARTSYS: interrupted by a signal (a cancelled token) in a wait_event/completion wait.</summary>
    public const int ERESTARTSYS = -512;
}
