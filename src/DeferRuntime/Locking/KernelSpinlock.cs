using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DeferRuntime.Cpus;

namespace DeferRuntime.Locking;

/// <summary>
/// spinlock_t: a queued spinlock with bounded lock stealing, and the kernel's variants: plain
/// (<see cref="Lock"/>), <see cref="LockIrq"/>, <see cref="LockIrqSave"/> and <see cref="LockBh"/>, each
/// with a try form and a <c>using</c> scope (<c>using var _ = l.EnterIrqSave();</c>). Holding it makes
/// the thread atomic (preempt_count, and might_sleep refuses to sleep); the Irq variants also take the
/// CPU's irq gate and Bh its bh gate, so they need a thread bound to a CPU.
/// </summary>
/// <remarks>
/// <para>
/// Design: a lock word that any locker may take with one CAS while it is free (lock stealing), a FIFO
/// queue of waiters (tickets) of which only the head watches the word, and a hand-off request. The head
/// takes the word when its holder has left it (free at two looks ~0.35 µs apart with no acquisition in
/// between), not at the instant between a release and the same thread's next lock. It counts the
/// acquisitions that overtake it; after <see cref="MaxOvertakes"/> it sets <c>Handoff</c>, after which no
/// locker may steal, so the holder's next release can only be taken by the head. That is
/// kernel/locking/mutex.c's MUTEX_FLAG_HANDOFF applied to a spinlock, over a queue like qspinlock's.
/// </para>
/// <para>
/// Why not strictly FIFO any more (it was a ticket lock): under contention a FIFO lock hands every
/// acquisition to another core, and moving the lock's line between the cores costs ~0.1-0.3 µs on the
/// development VM, so the contended ticket lock ran at 0.063x <see cref="SpinLock"/>. Letting the thread
/// that just released re-take the lock while the line is still in its cache is where SpinLock's
/// throughput comes from; the hand-off request is what keeps it from starving anyone. The kernel makes
/// the same call wherever its CPUs can be descheduled, as every user-space thread can: the paravirt
/// qspinlock is a "hybrid queued/unfair lock" (kernel/locking/qspinlock_paravirt.h: arrivals steal the
/// lock until the queue head sets the pending bit), and a guest without paravirt spinlocks falls back to
/// a plain test-and-set lock (virt_spin_lock()). The difference here is that the head lets a bounded
/// number of steals through before it forbids them, which is what amortizes the hand-over.
/// </para>
/// <para>
/// The bound. A waiter first waits for the waiters queued ahead of it (each served under the same bound;
/// queued waiters never overtake each other), then, as head, is overtaken at most
/// <see cref="MaxOvertakes"/> (256) times, plus the few that complete between its last look and its
/// hand-off request reaching the holder (it aims its looks at the bound from the rate it sees), plus one
/// per thread that had already read <c>Handoff</c> clear. The count runs while the head runs: one the OS
/// has descheduled is overtaken until it runs again (a FIFO lock would stall everyone instead). If it is
/// descheduled holding a reservation, the lock does not sit idle for the milliseconds that can take
/// under load: a locker that sees it free and reserved for 200 µs (longer than a running head's slowest
/// look, a nap) lets the reservation lapse and takes the lock once; the head asks again as soon as it
/// runs. So no waiter that runs can starve, and none is overtaken more than about 256 times per turn.
/// With two threads contending, each hand-over swaps which one is the head, so their acquisition counts
/// move apart by at most about one bound per turn and come back together at the next: over any long run
/// their ratio stays near 1 on a quiet machine. What the fairness test asserts is the per-wait promise to
/// a waiter that ran throughout its wait (no context switch, by getrusage): on the 2-core VM, alongside
/// the rest of the suite, none of thousands of such waits was overtaken more than twice the bound (worst
/// ~480); with the hand-off request disabled most of them were (worst ~10,000).
/// </para>
/// <para>
/// Every waiter spins, then yields, then naps (usleep), counting only looks at which nothing moved, so a
/// holder preempted on the same core, even at a lower priority, always gets to run and release:
/// correctness never depends on the OS preempting the spinner (DESIGN §5).
/// </para>
/// <para>
/// The word is odd while held and goes up by one at every acquisition (CAS from even) and every release
/// (a plain store by the holder, which alone may change a held word), so it also counts acquisitions:
/// that is how the head counts its overtakes at no cost to lockers. Uncontended, a lock/unlock is that
/// CAS and store plus the bookkeeping every spinlock does (preempt_count, the held-lock stack that
/// might_sleep reports name, the validator's null check); the holder's identity, a GC-barriered
/// reference store, is kept only for a validator or a DEBUG build, its only readers.
/// </para>
/// </remarks>
public sealed partial class KernelSpinlock : IDisposable, ILockdepTarget
{
    private const int Locked = 1; // _lock.Word bit 0: held
    private const int CacheLine = 64;

    private LockWords _lock;          // the lock word, the hand-off request and the waiter queue (layout below)
    private LockThreadState? _holder; // written only with a validator (freed-while-held reports) or in DEBUG
    private readonly LockdepMap _map;

    string ILockdepTarget.LockdepName => _map.Name;

    LockClass? ILockdepTarget.LockdepClass => _map.Class;

    /// <summary>
    /// The lock word and the hand-off request, read by every locker, share a cache line; the waiter queue,
    /// touched only by contended lockers, is on the next one, so waiters polling for their turn do not
    /// pull the line the holder keeps re-taking.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = CacheLine + 8)]
    private struct LockWords
    {
        [FieldOffset(0)]
        public int Word;      // A: odd = held; CAS from even by lockers, +1 store by the holder on release

        [FieldOffset(4)]
        public int Handoff;   // A: 1 = nobody may steal, the next release is the head waiter's; set and cleared by the head

        [FieldOffset(CacheLine)]
        public int QueueTail; // A: next ticket (Interlocked.Increment by contended lockers)

        [FieldOffset(CacheLine + 4)]
        public int QueueHead; // A: ticket of the head waiter; advanced by the head once it holds the lock
    }

    /// <summary>spin_lock_init(): a named lock (the validator's class), or unnamed (classed by its declaration site).</summary>
    public KernelSpinlock(string? name = null, LockValidator? validator = null, [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        _map = new LockdepMap(name, file, line, validator);
    }

    /// <summary>The lock's name (its class name for the validator).</summary>
    public string Name => _map.Name;

    /// <summary>spin_is_locked().</summary>
    public bool IsLocked => (Volatile.Read(ref _lock.Word) & Locked) != 0;

    /// <summary>Threads queued for the lock (the head waiter included); for tests.</summary>
    internal int QueuedWaiters => Volatile.Read(ref _lock.QueueTail) - Volatile.Read(ref _lock.QueueHead);

    /// <summary>True while the head waiter has asked for hand-off (no locker may steal); for tests.</summary>
    internal bool HandOffPending => Volatile.Read(ref _lock.Handoff) != 0;

    /// <summary>spin_lock(): waits for the lock (see the remarks for the order); the thread is atomic until <see cref="Unlock"/>.</summary>
    public void Lock()
    {
        var ctx = ThreadContext.Current; // PERF: one thread-static lookup on a thread of a CPU (its context keeps its lock state)
        Acquire(ctx?.LockState ?? LockThreadState.Current, ctx);
    }

    /// <summary>spin_unlock().</summary>
    public void Unlock()
    {
        var ctx = ThreadContext.Current;
        Release(ctx?.LockState ?? LockThreadState.Current, ctx, "spin_unlock()");
    }

    /// <summary>spin_trylock(): takes the lock only if it is free now.</summary>
    public bool TryLock()
    {
        var ctx = ThreadContext.Current;
        return TryAcquire(ctx?.LockState ?? LockThreadState.Current, ctx);
    }

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
        // preempt_disable() comes first, as in spin_lock(): a task of a CPU waits for the CPU (its task
        // gate) before it waits for the lock, never while holding the lock's word.
        ctx?.EnterNonPreemptible();
        _map.Acquire(this, state); // before waiting: a report must come before the deadlock
        if (!TryTake())
        {
            LockContended(ctx);
        }
        Held(state, ctx);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryAcquire(LockThreadState state, ThreadContext? ctx)
    {
        ctx?.EnterNonPreemptible();
        if (!TryTake())
        {
            ctx?.LeaveIfPreemptible();
            return false;
        }
        _map.Acquire(this, state, trylock: true);
        Held(state, ctx);
        return true;
    }

    /// <summary>The contended wait; a wait that gives up (the runtime died) leaves the task gate it took first.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void LockContended(ThreadContext? ctx)
    {
        try
        {
            LockContended();
        }
        catch
        {
            ctx?.LeaveIfPreemptible();
            throw;
        }
    }

    /// <summary>
    /// One CAS on a free word, unless the head waiter has asked for hand-off. PERF: this is the whole
    /// uncontended cost of the lock itself; a thread that just released takes the lock back here with the
    /// line still in its cache, which is what makes contended throughput.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryTake()
    {
        int word = Volatile.Read(ref _lock.Word);
        return (word & Locked) == 0
            && Volatile.Read(ref _lock.Handoff) == 0
            && Interlocked.CompareExchange(ref _lock.Word, word + 1, word) == word;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Held(LockThreadState state, ThreadContext? ctx)
    {
        // PERF: a reference store costs a GC write barrier; the holder is only read by the validator's
        // freed-while-held report and the DEBUG owner check.
        if (TrackHolder || _map.Class is not null)
        {
            _holder = state;
        }
        state.SpinDepth++;
        if (ctx is not null)
        {
            ctx.PreemptCount += PreemptCount.PreemptOffset; // preempt_disable(): the thread is atomic
        }
        state.Push(this);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Release(LockThreadState state, ThreadContext? ctx, string caller)
    {
        _map.Release(this, state, caller);
        VerifyHolder(state);
        if (TrackHolder || _map.Class is not null)
        {
            _holder = null;
        }
        state.SpinDepth--;
        int word = _lock.Word; // only the holder changes a held word: no other thread writes it now
        Debug.Assert((word & Locked) != 0, "released a spinlock whose word says it is free");
        Volatile.Write(ref _lock.Word, word + 1); // release: the critical section is visible to the next holder
        if (ctx is not null)
        {
            // preempt_enable() after the release, as spin_unlock() does.
            ctx.PreemptCount -= PreemptCount.PreemptOffset;
            ctx.LeaveIfPreemptible();
        }
    }

    [Conditional("DEBUG")]
    private void VerifyHolder(LockThreadState state) =>
        Debug.Assert(ReferenceEquals(_holder, state), $"'{Name}' is on this thread's held stack but another thread is its holder");

#if DEBUG
    private const bool TrackHolder = true;
#else
    private const bool TrackHolder = false;
#endif
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
