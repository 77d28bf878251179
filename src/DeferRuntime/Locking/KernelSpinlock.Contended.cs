using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;

namespace DeferRuntime.Locking;

// The contended path: the waiter queue, the head waiter's watch on the lock word, hand-off, and the
// lapse of a hand-off whose head is not running.
public sealed partial class KernelSpinlock
{
    // Tuning, established on the 2-core development VM, where one Thread.SpinWait(1) is ~43 ns and moving
    // a cache line between the cores ~0.1-0.3 µs.

    /// <summary>
    /// Acquisitions by others the head waiter lets through before it asks for hand-off: the
    /// throughput/fairness knob. Each hand-over moves the lock's line to the other core and costs ~0.5 µs
    /// here, so a holder that re-takes the lock N times pays that once per N acquisitions. Measured with
    /// two threads each on its own core: 64 gave 0.7-0.8x System.Threading.SpinLock (whose holder re-takes
    /// it ~40 times per hand-over there, by accident of timing), 1024 gave 1.5-2x; 256 is ~4 µs of tiny
    /// critical sections, and keeps the bound short.
    /// </summary>
    internal const int MaxOvertakes = 256;

    // Cap of the head waiter's pause (in SpinWait(1)s, ~2.7 µs) while the holder keeps re-taking the lock.
    // Overtakes are counted from the word, not by watching, so looking less often loses none; the pause
    // is aimed at the bound from the rate just seen, so little gets past it before the hand-off request.
    private const int MaxHeadPause = 64;

    // How long (SpinWait(1)s, ~0.35 µs) a lock seen free must stay free, untouched, before the head takes
    // it without hand-off. Longer than a line's round trip between the cores: a holder about to re-take
    // the lock must be seen doing so, or the head would win that race and force a hand-over.
    private const int FreeGap = 8;

    // How long a lock may sit free and reserved for a head that does not take it before a locker lets the
    // reservation lapse: longer than a running head's slowest look (a nap, ~50-150 µs with timer slack),
    // so only a head the OS has descheduled (for milliseconds under load) loses it.
    private static readonly long LapseTicks = Stopwatch.Frequency / 5000; // 200 µs

    // Looks at which nothing moved (~22 µs of SpinWait(1)s) before a waiter starts yielding. Any change
    // of what it watches restarts the count: a holder that keeps making progress is running.
    private const int SpinLooks = 512;

    // Yields before a waiter naps. A yield lets a holder of the same OS priority on our core run; only a
    // nap (Nap.Short, ~50 µs) lets a lower-priority one run, which DESIGN §5 requires.
    private const int YieldLooks = 256;

    /// <summary>
    /// queued_spin_lock_slowpath(), with mutex-style hand-off: wait out a pending hand-off, take a queue
    /// ticket, wait to be the head, then watch the word: take it when its holder has left it, and once
    /// overtaken <see cref="MaxOvertakes"/> times set <c>Handoff</c>, so the next release is ours.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void LockContended()
    {
        if (Volatile.Read(ref _lock.Handoff) != 0 && WaitOutHandoff())
        {
            return;
        }
        int ticket = Interlocked.Increment(ref _lock.QueueTail) - 1;
        if (Volatile.Read(ref _lock.QueueHead) != ticket)
        {
            WaitForHead(ticket);
        }

        // We are the head: the only queued thread that looks at the word.
        int start = Volatile.Read(ref _lock.Word); // overtakes are counted from here
        int seen = start;                          // the word at our last look
        bool handoff = false;
        int overtaken = 0, overtakenBeforePause = 0;
        int pause = 1;
        var backoff = new Backoff();
        while (true)
        {
            int word = Volatile.Read(ref _lock.Word);
            if ((word & Locked) == 0 && (handoff || word == seen))
            {
                // Reserved for us, or free at two looks in a row with no acquisition in between (the
                // word counts them): its holder has left it. Take it. A lock seen free once is left to
                // a holder about to re-take it: winning that race would move the line here for one
                // acquisition, and hand-overs are what contention costs.
                if (Interlocked.CompareExchange(ref _lock.Word, word + 1, word) == word)
                {
                    break;
                }
                continue;
            }
            if (handoff && Volatile.Read(ref _lock.Handoff) == 0)
            {
                // Our reservation lapsed (WaitOutHandoff): we were not running when it fell due, and one
                // locker took the lock instead. Ask again at once: we have been overtaken enough.
                Volatile.Write(ref _lock.Handoff, 1);
            }
            bool moved = word != seen;
            if (moved)
            {
                seen = word;
                backoff.Progress();
                overtaken = Overtakes(start, word);
                if (!handoff && overtaken >= MaxOvertakes)
                {
                    // A locker that had already read Handoff == 0 may still get in: at most once per
                    // thread racing this store, because its next attempt reads 1.
                    handoff = true;
                    Volatile.Write(ref _lock.Handoff, 1);
                }
                if ((word & Locked) == 0)
                {
                    Thread.SpinWait(FreeGap); // seen free: does its holder re-take it?
                    continue;
                }
            }
            if (handoff || !backoff.Spinning)
            {
                // The next release is ours (look often), or nothing moves (yield, then nap).
                if (!backoff.Wait())
                {
                    GiveUpAsHead(ticket, handoff);
                }
            }
            else
            {
                // PERF: each look pulls the line from a holder that keeps re-taking the lock, so look less
                // often while it does (the word counts what we do not watch). A holder inside one critical
                // section does not write the line: look often, to take the lock soon after it leaves.
                Thread.SpinWait(pause);
                backoff.Count(pause);
                int next = pause << 1;
                int gained = overtaken - overtakenBeforePause;
                if (gained > 0)
                {
                    // Aim the next look at the bound: at the rate of the last pause, that many SpinWaits.
                    next = (int)Math.Clamp((long)(MaxOvertakes - overtaken) * pause / gained, 1, next);
                }
                overtakenBeforePause = overtaken;
                pause = Math.Min(next, MaxHeadPause);
            }
        }

        if (handoff)
        {
            Volatile.Write(ref _lock.Handoff, 0);
        }
        // Release order: the next waiter becomes head only after Handoff is clear.
        Volatile.Write(ref _lock.QueueHead, ticket + 1);
    }

    /// <summary>
    /// A locker that finds a hand-off pending waits, before it queues, for the head to take the lock. If
    /// the lock sits free and reserved for <see cref="LapseTicks"/>, the head is not running (the OS
    /// descheduled it): rather than leave the lock idle until it runs again, the reservation lapses and
    /// this locker may take the lock (the head asks again as soon as it runs). True if it did.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool WaitOutHandoff()
    {
        var backoff = new Backoff();
        int seen = Volatile.Read(ref _lock.Word);
        long freeSince = 0; // when the word was first seen free at its current value, or 0
        while (Volatile.Read(ref _lock.Handoff) != 0)
        {
            int word = Volatile.Read(ref _lock.Word);
            if (word != seen)
            {
                seen = word;
                freeSince = 0;
                backoff.Progress();
            }
            else if ((word & Locked) == 0)
            {
                long now = Stopwatch.GetTimestamp();
                if (freeSince == 0)
                {
                    freeSince = now;
                }
                else if (now - freeSince >= LapseTicks)
                {
                    Interlocked.CompareExchange(ref _lock.Handoff, 0, 1);
                    break;
                }
            }
            if (!backoff.Wait())
            {
                ThreadContext.Current!.Cpu.Runtime.ThrowIfDead("spin_lock()"); // not queued yet: nothing to undo
            }
        }
        return TryTake();
    }

    /// <summary>
    /// The head waiter's runtime is dead (its shutdown gave up, or it panicked), and the holder may be a
    /// handler that never returns: leave the queue as a taker would (withdraw our hand-off request, make
    /// the next waiter head), then throw what <see cref="Runtime.ThrowIfDead"/> throws.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [DoesNotReturn]
    private void GiveUpAsHead(int ticket, bool handoff)
    {
        if (handoff)
        {
            Volatile.Write(ref _lock.Handoff, 0);
        }
        Volatile.Write(ref _lock.QueueHead, ticket + 1);
        ThreadContext.Current!.Cpu.Runtime.ThrowIfDead("spin_lock()");
        throw new UnreachableException("a runtime found dead is dead for good"); // its states only go up
    }

    /// <summary>Waits, spinning then yielding then napping, until <paramref name="ticket"/> is the queue head.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForHead(int ticket)
    {
        var backoff = new Backoff();
        int head = Volatile.Read(ref _lock.QueueHead);
        while (head != ticket)
        {
            // Queued: a waiter whose runtime is dead keeps its place until it is head (leaving now
            // would strand those behind it), where it gives up at its next nap (GiveUpAsHead).
            _ = backoff.Wait();
            int now = Volatile.Read(ref _lock.QueueHead);
            if (now != head)
            {
                head = now;
                backoff.Progress();
            }
        }
    }

    /// <summary>
    /// Acquisitions between two readings of the word. The word goes up by one at every acquisition (even
    /// to odd) and every release, so from a free start they are the odd values passed, from a held start
    /// the even ones after it. Wraps as the word does.
    /// </summary>
    private static int Overtakes(int start, int now)
    {
        uint steps = unchecked((uint)(now - start));
        return (int)((steps + (uint)((start & Locked) ^ Locked)) >> 1);
    }

    /// <summary>DESIGN §5: spin, then yield, then nap, counting only looks at which nothing moved.</summary>
    private struct Backoff
    {
        private int _idle; // SpinWait(1)s and yields since the watched state last moved

        /// <summary>Still in the spinning phase: the caller may pause its own way, then <see cref="Count"/>.</summary>
        public readonly bool Spinning => _idle < SpinLooks;

        /// <summary>What we watch moved: whoever we wait for is running; spin again.</summary>
        public void Progress() => _idle = 0;

        /// <summary>Counts a pause of <paramref name="spins"/> SpinWait(1)s the caller made itself.</summary>
        public void Count(int spins) => _idle += spins;

        /// <summary>
        /// One pause: a pause instruction while spinning, then a yield, then a nap. False after a yield or
        /// a nap if the waiting thread's runtime is dead (<see cref="Runtime.IsDead"/>: its shutdown gave
        /// up, or it panicked): the holder may be a handler that never returns, so the caller should give
        /// up. Threads of no CPU have no runtime and always wait.
        /// </summary>
        /// <remarks>
        /// PERF: spinning asks nothing, so the spinning phase costs what it did. Yields ask as well as naps,
        /// although a yield is usually over in a microsecond: when another thread is runnable on the core
        /// (a loaded machine, a spinning handler), each can cost a scheduler slice, and the 256 of them took
        /// ~0.3 s in a shutdown test, far past the bound shutdown keeps.
        /// </remarks>
        public bool Wait()
        {
            if (_idle < SpinLooks)
            {
                Thread.SpinWait(1);
                _idle++;
                return true;
            }
            if (_idle < SpinLooks + YieldLooks)
            {
                Thread.Yield();
                _idle++;
            }
            else
            {
                ThreadContext.NapInSpinWait();
            }
            return ThreadContext.Current is not { Cpu.Runtime.IsDead: true };
        }
    }
}

