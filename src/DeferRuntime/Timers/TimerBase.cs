using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;

namespace DeferRuntime.Timers;

/// <summary>
/// struct timer_base: one CPU's timer wheel. Each CPU has two, the standard one and the deferrable one
/// (whose expiry does not wake the CPU from idle). Hierarchical and non-cascading, in the spirit of
/// kernel/time/timer.c since 4.8.
/// </summary>
/// <remarks>
/// <para>Layout: <see cref="Depth"/> levels of 64 buckets. Level L has a granularity of 8^L jiffies and
/// holds timers due between 63 * 8^(L-1) + 1 and 63 * 8^L jiffies ahead of the wheel clock: level 0 holds
/// the next 63 jiffies exactly, level 1 the next 504 in steps of 8, and so on; 9 levels reach
/// 63 * 8^8 jiffies (12 days at HZ=1000). A timer is filed once, at its expiry rounded up to its
/// level's granularity, and never moved down a level (no cascading): the rounding is the price.</para>
/// <para>Expiry accuracy: a timer never runs before its expiry (the jiffies its callback sees are
/// &gt;= <see cref="TimerList.Expires"/>). It runs late by at most its level's granularity minus one
/// jiffy, which is under 1/7 of the timeout it was armed with (a timer armed at most 63 jiffies ahead
/// runs in its exact jiffy), plus the time to deliver the clock event and run TIMER_SOFTIRQ. Timers due
/// further out than the wheel reaches are filed at its far end and filed again from there, never fired
/// early (the kernel fires them early: "force expired").</para>
/// <para>Order: timers that run in the same jiffy run higher level first, then in arming order within a
/// bucket. Timers armed at most 63 jiffies ahead therefore run in expiry order, ties in arming order;
/// further out the rounding can let a later-armed, closer timer overtake one with a slightly earlier
/// expiry, as in the kernel.</para>
/// <para>The clock <c>_clk</c> is the next jiffy to process. Processing jumps it straight to the next
/// expiry (nothing lies in between), and arming a timer first forwards a stale clock to now (bounded
/// by the next expiry), so a wheel that was idle for an hour files a 5-jiffy timer on level 0, not on a
/// coarse level.</para>
/// <para>Jiffies here are jiffies_64 since boot, which cannot wrap, so clocks and bucket times compare
/// plainly; an expiry is compared wrap-safe (as the delta to the clock), so an absurd one such as
/// long.MinValue is consistently far future, never early.</para>
/// <para>Locking legend: <c>L:</c> <see cref="BaseLock"/>; <c>B:</c> the holder of the owning CPU's bh
/// gate (the only thread that runs this wheel). The lock is never held while a callback runs, and never
/// together with another base's lock (migration releases the old base first). cpu/N may wait for it in
/// the clock event handler while another thread of its CPU holds it: unlike the gates (DESIGN §5) it is
/// held only for a few list operations that never wait, and System.Threading.Lock blocks after a short
/// spin, so a lower-priority holder on the same core gets to finish without relying on preemption.</para>
/// </remarks>
internal sealed class TimerBase : ILockedBase
{
    /// <summary>LVL_BITS: 64 buckets per level (one pending word per level).</summary>
    internal const int LevelBits = 6;
    internal const int LevelSize = 1 << LevelBits;
    internal const int LevelMask = LevelSize - 1;

    /// <summary>LVL_CLK_SHIFT: each level is 8 times coarser than the one below.</summary>
    internal const int ClockShift = 3;

    /// <summary>LVL_DEPTH: 9 levels, as the kernel has for HZ &gt; 100 (we keep 9 at every HZ).</summary>
    internal const int Depth = 9;

    internal const int WheelSize = LevelSize * Depth;

    /// <summary>No timer pending.</summary>
    internal const long NoExpiry = long.MaxValue;

    private readonly CpuTimers _owner; // I

    // L: bucket heads. Each list is doubly linked through TimerList.Next/Prev; the head's Prev is the tail
    // so arming appends in O(1). Slots [WheelSize + L] hold the timers collected from level L for the
    // expiry in progress, so that TimerDelete can still take them off (they are still pending).
    private readonly TimerList?[] _slots = new TimerList?[WheelSize + Depth];

    private readonly ulong[] _pendingMap = new ulong[Depth]; // L: bit b of word L: bucket (L, b) is not empty
    private long _clk; // L: the next jiffy to process; every queued bucket time is >= it
    private long _nextExpiry = NoExpiry; // L: earliest queued bucket time, or lower while _nextExpiryRecalc
    private bool _nextExpiryRecalc; // L: a bucket emptied; _nextExpiry may be too early until recomputed
    private int _count; // L: timers queued, collected ones included

    internal TimerBase(CpuTimers owner, bool deferrable)
    {
        _owner = owner;
        IsDeferrable = deferrable;
    }

    /// <summary>The base lock (timer_base.lock).</summary>
    public Lock BaseLock { get; } = new();

    internal bool IsDeferrable { get; }

    public VirtualCpu Cpu => _owner.Cpu;

    internal int Count
    {
        get
        {
            lock (BaseLock)
            {
                return _count;
            }
        }
    }

    // ---- arming (L) ----

    /// <summary>
    /// enqueue_timer() after forward_timer_base(): files <paramref name="timer"/> (not queued) for
    /// <paramref name="expires"/> and returns the jiffy of its bucket. Caller holds <see cref="BaseLock"/>.
    /// </summary>
    internal long Enqueue(TimerList timer, long expires, long now)
    {
        Debug.Assert(BaseLock.IsHeldByCurrentThread, "enqueue without the base lock");
        Debug.Assert(timer.Slot < 0, "enqueue of a queued timer");
        ForwardClock(now);

        long clk = _clk;
        long delta = expires - clk;
        int level = 0;
        long bucketTime;
        if (delta <= LevelMask)
        {
            // Level 0 is exact; an expiry already past goes to the next jiffy to process.
            bucketTime = delta < 0 ? clk : expires;
        }
        else
        {
            level = 1;
            while (level < Depth - 1 && delta > (long)LevelMask << (level * ClockShift))
            {
                level++;
            }
            int shift = level * ClockShift;
            long reach = (long)LevelMask << shift;
            // Beyond the last level: file it at the far end; expiry files it again (never early).
            long filed = delta > reach ? clk + reach : expires;
            // Round up to the level's grid. With delta <= 63 * 8^L this is at most 63 buckets past the
            // level's first unprocessed one, so no two live bucket times share a slot.
            bucketTime = ((filed + (1L << shift) - 1) >> shift) << shift;
        }

        int slot = (level << LevelBits) | (int)((bucketTime >> (level * ClockShift)) & LevelMask);
        Link(timer, slot);
        _pendingMap[level] |= 1UL << (slot & LevelMask);
        _count++;
        if (bucketTime < _nextExpiry)
        {
            // Earlier than even a possibly stale (too early) cached value: it is the new minimum.
            _nextExpiry = bucketTime;
            _nextExpiryRecalc = false;
        }
        return bucketTime;
    }

    /// <summary>detach_if_pending(): takes <paramref name="timer"/> off this base if queued here. Caller holds <see cref="BaseLock"/>.</summary>
    internal bool DetachIfPending(TimerList timer)
    {
        Debug.Assert(BaseLock.IsHeldByCurrentThread, "detach without the base lock");
        if (timer.Slot < 0)
        {
            return false;
        }
        Unlink(timer);
        return true;
    }

    /// <summary>
    /// forward_timer_base(): a wheel nobody processed for a while (idle CPU) has a clock far behind
    /// jiffies; move it up to now, but not past the next queued expiry (the buckets in between are
    /// empty), so new timers are filed relative to now.
    /// </summary>
    private void ForwardClock(long now)
    {
        if (now > _clk)
        {
            _clk = Math.Min(now, NextExpiryLocked());
        }
    }

    /// <summary>The earliest bucket time queued (a jiffy), or <see cref="NoExpiry"/>. Caller holds <see cref="BaseLock"/>.</summary>
    internal long NextExpiryLocked()
    {
        if (_nextExpiryRecalc)
        {
            _nextExpiry = ComputeNextExpiry();
            _nextExpiryRecalc = false;
        }
        return _nextExpiry;
    }

    internal long NextExpiry()
    {
        lock (BaseLock)
        {
            return NextExpiryLocked();
        }
    }

    /// <summary>
    /// For each level, the first non-empty bucket at or after the level's first unprocessed one
    /// (a rotate and a count of trailing zeros), and the earliest of those.
    /// </summary>
    private long ComputeNextExpiry()
    {
        long best = NoExpiry;
        for (int level = 0; level < Depth; level++)
        {
            ulong map = _pendingMap[level];
            if (map == 0)
            {
                continue;
            }
            int shift = level * ClockShift;
            long first = (_clk + (1L << shift) - 1) >> shift;
            int offset = BitOperations.TrailingZeroCount(BitOperations.RotateRight(map, (int)(first & LevelMask)));
            long time = (first + offset) << shift;
            if (time < best)
            {
                best = time;
            }
        }
        return best;
    }

    // ---- expiry (B) ----

    /// <summary>
    /// run_timer_base() / __run_timers(): runs every timer due by now, then reprograms the CPU's clock
    /// event for the next one. Runs in TIMER_SOFTIRQ on the owning CPU; callbacks run without the lock.
    /// </summary>
    internal void Run(ThreadContext ctx)
    {
        var cpu = Cpu;
        var runtime = cpu.Runtime;
        long next;
        BaseLock.Enter();
        try
        {
            long now = runtime.Jiffies;
            while (true)
            {
                long due = NextExpiryLocked();
                if (due == NoExpiry || now < due || now < _clk)
                {
                    break;
                }
                int levels = Collect(due);
                // One past the jiffy processed, so a callback that re-arms for "now" waits for the next
                // jiffy instead of running again in this loop.
                _clk = due + 1;
                _nextExpiryRecalc = true;
                for (int level = levels - 1; level >= 0 && !runtime.IsPanicked; level--)
                {
                    ExpireCollected(ctx, cpu, WheelSize + level, due);
                }
            }
            next = NextExpiryLocked();
        }
        finally
        {
            BaseLock.Exit();
        }
        if (next != NoExpiry)
        {
            _owner.Program(runtime.JiffyStartNs(next), IsDeferrable);
        }
    }

    /// <summary>collect_expired_timers(): moves the buckets due at <paramref name="clk"/> to the collected slots; returns how many levels were looked at.</summary>
    private int Collect(long clk)
    {
        int level = 0;
        while (true)
        {
            int slot = (level << LevelBits) | (int)((clk >> (level * ClockShift)) & LevelMask);
            ulong bit = 1UL << (slot & LevelMask);
            if ((_pendingMap[level] & bit) != 0)
            {
                _pendingMap[level] &= ~bit;
                var head = _slots[slot];
                _slots[slot] = null;
                Debug.Assert(_slots[WheelSize + level] is null, "the previous expiry left collected timers behind");
                _slots[WheelSize + level] = head;
                for (var t = head; t is not null; t = t.Next)
                {
                    t.Slot = WheelSize + level;
                }
            }
            level++;
            // The next level's buckets lie on its coarser grid: only reached when clk is on it too.
            if (level == Depth || ((clk >> ((level - 1) * ClockShift)) & ((1 << ClockShift) - 1)) != 0)
            {
                return level;
            }
        }
    }

    /// <summary>expire_timers(): runs one collected list, re-taking the head under the lock each time (a delete may have taken timers off it meanwhile).</summary>
    private void ExpireCollected(ThreadContext ctx, VirtualCpu cpu, int slot, long clk)
    {
        while (_slots[slot] is { } timer)
        {
            Unlink(timer);
            // Wrap-safe, like the delta Enqueue computed: an expiry "after" clk modulo 2^64 is far future.
            if (Jiffies.TimeAfter(timer.ExpiresValue, clk) || timer.RunningOn is not null)
            {
                // Filed at the wheel's far end and not yet due; or its callback is still running on the
                // CPU it was moved away from by add_timer_on(): file it again rather than run it early or
                // twice at once (the next jiffy, for the latter).
                Enqueue(timer, timer.ExpiresValue, clk);
                continue;
            }
            Volatile.Write(ref timer.RunningOn, this);
            BaseLocking.RunUnlocked(BaseLock, ctx, timer, static t => t.Invoke(), static t => $"timer '{t.Name}'");
            Volatile.Write(ref timer.RunningOn, null);
            if (cpu.Runtime.IsPanicked)
            {
                return;
            }
        }
    }

    // ---- lists (L) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Link(TimerList timer, int slot)
    {
        var head = _slots[slot];
        timer.Next = null;
        if (head is null)
        {
            timer.Prev = timer;
            _slots[slot] = timer;
        }
        else
        {
            var tail = head.Prev!;
            tail.Next = timer;
            timer.Prev = tail;
            head.Prev = timer;
        }
        Volatile.Write(ref timer.Slot, slot);
    }

    private void Unlink(TimerList timer)
    {
        int slot = timer.Slot;
        var head = _slots[slot]!;
        var next = timer.Next;
        var prev = timer.Prev!;
        if (ReferenceEquals(head, timer))
        {
            _slots[slot] = next;
            if (next is not null)
            {
                next.Prev = prev; // the tail
            }
            else if (slot < WheelSize)
            {
                _pendingMap[slot >> LevelBits] &= ~(1UL << (slot & LevelMask));
                _nextExpiryRecalc = true;
            }
        }
        else
        {
            prev.Next = next;
            if (next is not null)
            {
                next.Prev = prev;
            }
            else
            {
                head.Prev = prev;
            }
        }
        timer.Next = null;
        timer.Prev = null;
        Volatile.Write(ref timer.Slot, -1);
        _count--;
    }
}
