using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Platform;

namespace DeferRuntime.Locking;

/// <summary>
/// spinlock_t: a FIFO ticket spinlock with the kernel's variants: plain (<see cref="Lock"/>),
/// <see cref="LockIrq"/>, <see cref="LockIrqSave"/> and <see cref="LockBh"/>, each with a try form and a
/// <c>using</c> scope (<c>using var _ = l.EnterIrqSave();</c>). Holding it makes the thread atomic
/// (preempt_count, and might_sleep refuses to sleep); the Irq variants also take the CPU's irq gate and
/// Bh its bh gate, so they need a thread bound to a CPU.
/// </summary>
/// <remarks>
/// Ticket layout: <c>_next</c> is the dispenser every locker increments, <c>_owner</c> the ticket now
/// served, written only by the holder on unlock. Waiters are served strictly in arrival order. A waiter
/// spins, then yields, then naps (usleep), so a holder preempted on the same core, even at a lower
/// priority, always gets to run and release: correctness never depends on the OS preempting the spinner.
/// The kernel's own is a queued (MCS) lock; a ticket lock has the same FIFO fairness and is simpler at
/// the handful of cores a user-space runtime runs on.
/// </remarks>
public sealed class KernelSpinlock : IDisposable
{
    // Tuned on the 2-core development machine. Only the next ticket in line spins: ~10-20 µs covers the
    // critical section of a busy holder on the other core. Waiters further back, and the next one once
    // its spin budget is gone, yield: with more lockers than cores the thread whose turn comes is often
    // not running, and yielding is what lets it run. Only after many yields does a waiter nap, which is
    // what lets a holder of lower OS priority on the same core finish (a yield does not).
    private const int SpinIterations = 2048;
    private const int YieldIterations = 1024;

    private int _next;   // A: ticket dispenser (Interlocked.Increment by lockers)
    private int _owner;  // A: ticket being served; written by the holder (release) only
    private LockThreadState? _holder; // the holder's state: debug checks and freed-while-held reports
    private readonly LockdepMap _map;

    /// <summary>spin_lock_init(): a named lock (the validator's class), or unnamed (classed by its declaration site).</summary>
    public KernelSpinlock(string? name = null, LockValidator? validator = null, [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        _map = new LockdepMap(name, file, line, validator);
    }

    /// <summary>The lock's name (its class name for the validator).</summary>
    public string Name => _map.Name;

    /// <summary>spin_is_locked().</summary>
    public bool IsLocked => Volatile.Read(ref _owner) != Volatile.Read(ref _next);

    /// <summary>spin_lock(): waits for the lock, FIFO; the thread is atomic until <see cref="Unlock"/>.</summary>
    public void Lock() => Acquire(LockThreadState.Current, ThreadContext.Current);

    /// <summary>spin_unlock().</summary>
    public void Unlock() => Release(LockThreadState.Current, ThreadContext.Current, "spin_unlock()");

    /// <summary>spin_trylock(): takes the lock only if it is free now.</summary>
    public bool TryLock() => TryAcquire(LockThreadState.Current, ThreadContext.Current);

    /// <summary>spin_lock_irq(): disables local interrupts, then locks. Needs a thread bound to a CPU.</summary>
    public void LockIrq()
    {
        CpuContext.LocalIrqDisable();
        try
        {
            Lock();
        }
        catch
        {
            CpuContext.LocalIrqEnable();
            throw;
        }
    }

    /// <summary>spin_unlock_irq(): unlocks, then enables local interrupts unconditionally.</summary>
    public void UnlockIrq()
    {
        Unlock();
        CpuContext.LocalIrqEnable();
    }

    /// <summary>spin_trylock_irq().</summary>
    public bool TryLockIrq()
    {
        CpuContext.LocalIrqDisable();
        if (TryLock())
        {
            return true;
        }
        CpuContext.LocalIrqEnable();
        return false;
    }

    /// <summary>spin_lock_irqsave(): saves and disables local interrupts, then locks. Needs a thread bound to a CPU.</summary>
    public LocalIrqFlags LockIrqSave()
    {
        var flags = CpuContext.LocalIrqSave();
        try
        {
            Lock();
        }
        catch
        {
            CpuContext.LocalIrqRestore(flags);
            throw;
        }
        return flags;
    }

    /// <summary>spin_unlock_irqrestore(): unlocks, then restores the saved interrupt state.</summary>
    public void UnlockIrqRestore(LocalIrqFlags flags)
    {
        Unlock();
        CpuContext.LocalIrqRestore(flags);
    }

    /// <summary>spin_trylock_irqsave().</summary>
    public bool TryLockIrqSave(out LocalIrqFlags flags)
    {
        flags = CpuContext.LocalIrqSave();
        if (TryLock())
        {
            return true;
        }
        CpuContext.LocalIrqRestore(flags);
        return false;
    }

    /// <summary>spin_lock_bh(): disables softirqs on this CPU, then locks. Needs a thread bound to a CPU.</summary>
    public void LockBh()
    {
        CpuContext.LocalBhDisable();
        try
        {
            Lock();
        }
        catch
        {
            CpuContext.LocalBhEnable();
            throw;
        }
    }

    /// <summary>spin_unlock_bh(): unlocks, then enables softirqs (running any that are pending).</summary>
    public void UnlockBh()
    {
        Unlock();
        CpuContext.LocalBhEnable();
    }

    /// <summary>spin_trylock_bh().</summary>
    public bool TryLockBh()
    {
        CpuContext.LocalBhDisable();
        if (TryLock())
        {
            return true;
        }
        CpuContext.LocalBhEnable();
        return false;
    }

    /// <summary><c>using var _ = lock.Enter();</c>: spin_lock ... spin_unlock.</summary>
    public SpinlockScope Enter()
    {
        Lock();
        return new SpinlockScope(this, SpinlockScope.Variant.Plain, default);
    }

    /// <summary><c>using var _ = lock.EnterIrq();</c>: spin_lock_irq ... spin_unlock_irq.</summary>
    public SpinlockScope EnterIrq()
    {
        LockIrq();
        return new SpinlockScope(this, SpinlockScope.Variant.Irq, default);
    }

    /// <summary><c>using var _ = lock.EnterIrqSave();</c>: spin_lock_irqsave ... spin_unlock_irqrestore.</summary>
    public SpinlockScope EnterIrqSave() => new(this, SpinlockScope.Variant.IrqSave, LockIrqSave());

    /// <summary><c>using var _ = lock.EnterBh();</c>: spin_lock_bh ... spin_unlock_bh.</summary>
    public SpinlockScope EnterBh()
    {
        LockBh();
        return new SpinlockScope(this, SpinlockScope.Variant.Bh, default);
    }

    /// <summary>Reports to the validator if the lock is disposed while held (debug_check_no_locks_freed).</summary>
    public void Dispose() => _map.Freed(Volatile.Read(ref _holder));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Acquire(LockThreadState state, ThreadContext? ctx)
    {
        _map.Acquire(this, state); // before waiting: a report must come before the deadlock
        int ticket = Interlocked.Increment(ref _next) - 1;
        if (Volatile.Read(ref _owner) != ticket)
        {
            WaitForTurn(ticket);
        }
        Held(state, ctx);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryAcquire(LockThreadState state, ThreadContext? ctx)
    {
        int owner = Volatile.Read(ref _owner);
        // Free means nobody holds a ticket past the one being served; taking exactly that ticket makes us
        // the holder at once (_owner cannot pass _next).
        if (Volatile.Read(ref _next) != owner || Interlocked.CompareExchange(ref _next, owner + 1, owner) != owner)
        {
            return false;
        }
        _map.Acquire(this, state, trylock: true);
        Held(state, ctx);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Held(LockThreadState state, ThreadContext? ctx)
    {
        _holder = state;
        state.SpinDepth++;
        if (ctx is not null)
        {
            ctx.PreemptCount += PreemptCount.PreemptOffset; // preempt_disable(): the thread is atomic
        }
        state.Push(this, _map.Name, _map.Class);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Release(LockThreadState state, ThreadContext? ctx, string caller)
    {
        _map.Release(this, state, caller);
        VerifyHolder(state);
        _holder = null;
        if (ctx is not null)
        {
            ctx.PreemptCount -= PreemptCount.PreemptOffset;
        }
        state.SpinDepth--;
        Volatile.Write(ref _owner, _owner + 1); // release: the critical section is visible to the next ticket
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForTurn(int ticket)
    {
        int spins = 0, yields = 0;
        int owner;
        while ((owner = Volatile.Read(ref _owner)) != ticket)
        {
            if (ticket - owner == 1 && spins < SpinIterations)
            {
                Thread.SpinWait(4);
                spins++;
            }
            else if (yields < YieldIterations)
            {
                Thread.Yield();
                yields++;
            }
            else
            {
                Nap.Short();
            }
        }
    }

    [Conditional("DEBUG")]
    private void VerifyHolder(LockThreadState state) =>
        Debug.Assert(ReferenceEquals(_holder, state), $"'{Name}' is on this thread's held stack but another thread is its holder");
}

/// <summary>A held <see cref="KernelSpinlock"/>; Dispose releases it with the matching variant.</summary>
public readonly ref struct SpinlockScope
{
    internal enum Variant
    {
        Plain,
        Irq,
        IrqSave,
        Bh,
    }

    private readonly KernelSpinlock? _lock;
    private readonly Variant _variant;
    private readonly LocalIrqFlags _flags;

    internal SpinlockScope(KernelSpinlock spinlock, Variant variant, LocalIrqFlags flags)
    {
        _lock = spinlock;
        _variant = variant;
        _flags = flags;
    }

    /// <summary>Releases the lock (spin_unlock, _irq, _irqrestore or _bh).</summary>
    public void Dispose()
    {
        switch (_variant)
        {
            case Variant.Plain:
                _lock?.Unlock();
                break;
            case Variant.Irq:
                _lock?.UnlockIrq();
                break;
            case Variant.IrqSave:
                _lock?.UnlockIrqRestore(_flags);
                break;
            case Variant.Bh:
                _lock?.UnlockBh();
                break;
        }
    }
}
