using DeferRuntime.Cpus;
using DeferRuntime.Locking;

namespace DeferRuntime.Timers;

/// <summary>What a timer wheel and an hrtimer queue have in common for locking: one lock per base.</summary>
internal interface ILockedBase
{
    /// <summary>The base lock; never held while a callback runs, never together with another base's.</summary>
    Lock BaseLock { get; }

    /// <summary>The CPU whose softirq expires this base.</summary>
    VirtualCpu Cpu { get; }
}

/// <summary>
/// The locking protocol shared by <see cref="TimerList"/> and <see cref="Hrtimer"/>: a timer points to
/// the base it belongs to (its "home"); the pointer is null while the timer migrates between two bases,
/// the kernel's TIMER_MIGRATING, so migration never holds two base locks at once.
/// </summary>
internal static class BaseLocking
{
    /// <summary>lock_timer_base(): locks the base <paramref name="home"/> points to, waiting out a migration.</summary>
    public static TBase LockHome<TBase>(ref TBase? home)
        where TBase : class, ILockedBase
    {
        var backoff = default(Backoff);
        while (true)
        {
            var current = Volatile.Read(ref home);
            if (current is not null)
            {
                current.BaseLock.Enter();
                // Re-check under the lock: a migration may have moved it between the read and the lock.
                if (ReferenceEquals(Volatile.Read(ref home), current))
                {
                    return current;
                }
                current.BaseLock.Exit();
            }
            backoff.Wait();
        }
    }

    /// <summary>
    /// Moves the timer whose home is <paramref name="from"/> (locked by the caller) to <paramref name="to"/>:
    /// marks it migrating, lets go of the old base, takes the new one. Lockers that see the mark wait;
    /// lockers that got the old lock first re-check the home and retry. Returns with <paramref name="to"/> locked.
    /// </summary>
    public static TBase Migrate<TBase>(ref TBase? home, TBase from, TBase to)
        where TBase : class, ILockedBase
    {
        Volatile.Write(ref home, null);
        from.BaseLock.Exit();
        to.BaseLock.Enter();
        Volatile.Write(ref home, to);
        return to;
    }

    /// <summary>
    /// The rules of every wait for a running callback (timer_delete_sync, timer_shutdown_sync,
    /// hrtimer_cancel): not from the callback itself, which would wait for itself, and not in atomic context.
    /// </summary>
    public static void CheckMayWaitForCallback(ILockedBase? runningOn, string caller, string what, string advice)
    {
        var ctx = ThreadContext.Current;
        // The callback runs on whichever thread holds its CPU's bh gate: if that is us, we are inside it.
        if (ctx is not null && runningOn is not null && ReferenceEquals(runningOn.Cpu.BhGate.Owner, ctx))
        {
            throw new InvalidOperationException(
                $"{caller} on {what} from its own callback: it waits for the callback to finish, i.e. for itself, forever (a deadlock in the kernel too); {advice}.");
        }
        if (MightSleep.IsAtomic(ctx))
        {
            throw new InvalidOperationException(
                $"{caller} on {what} from atomic context ({ctx?.Describe() ?? "a spinlock held"}): it waits for a running callback, which the kernel forbids in interrupt context (the callback may need this CPU); {advice}.");
        }
    }

    /// <summary>
    /// Runs one expiring timer's callback the way both softirqs do: base unlocked, guarded (a throw is an
    /// oops, not a dead CPU), then pending hard IRQs (the next clock event included) between two callbacks,
    /// as tasklets do; the lock is held again on return.
    /// </summary>
    public static void RunUnlocked<T>(Lock baseLock, ThreadContext ctx, T timer, Action<T> body, Func<T, string> describe)
    {
        var cpu = ctx.Cpu;
        baseLock.Exit();
        try
        {
            cpu.RunCallback(ctx, timer, body, describe);
            cpu.PreemptionPoint(ctx);
        }
        finally
        {
            baseLock.Enter();
        }
    }
}
