using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Benchmarks.Support;

/// <summary>The measuring thread's wait for a handoff to complete.</summary>
internal static class Spin
{
    private static readonly long s_giveUpTicks = Stopwatch.Frequency * 10;

    /// <summary>
    /// Spins until <paramref name="counter"/> reaches <paramref name="target"/>. PERF: a bare load loop,
    /// no pause instruction (on this VM a pause costs about 40 ns), so the waiter sees the store one
    /// cache-line transfer after it happens. A lost handoff throws after about 10 s instead of hanging the
    /// run; the clock is read once per 2^20 polls, never on the fast path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Until(ref long counter, long target)
    {
        int polls = 0;
        long deadline = 0;
        while (Volatile.Read(ref counter) < target)
        {
            if ((++polls & 0xFFFFF) == 0)
            {
                deadline = CheckGiveUp(deadline, Volatile.Read(ref counter), target);
            }
        }
    }

    /// <summary>
    /// Waits until <paramref name="counter"/> reaches <paramref name="target"/>, looking about once a
    /// microsecond (Thread.SpinWait(32) between looks). For throughput runs whose every item bumps the
    /// counter: a bare load loop would take the counter's line back after each bump, so each item would
    /// pay a cache-line transfer to the measuring thread that no real consumer of the queue pays. The
    /// look interval adds at most about 1 µs per wait: under 1 ns per item in a batch of 1024.
    /// </summary>
    public static void UntilQuietly(ref long counter, long target)
    {
        int polls = 0;
        long deadline = 0;
        while (Volatile.Read(ref counter) < target)
        {
            Thread.SpinWait(32);
            if ((++polls & 0x3FFF) == 0)
            {
                deadline = CheckGiveUp(deadline, Volatile.Read(ref counter), target);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static long CheckGiveUp(long deadline, long seen, long target)
    {
        long now = Stopwatch.GetTimestamp();
        if (deadline == 0)
        {
            return now + s_giveUpTicks;
        }
        if (now > deadline)
        {
            throw new TimeoutException($"handoff lost: counter at {seen}, expected {target}, after more than 10 s");
        }
        return deadline;
    }
}
