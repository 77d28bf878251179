using System.Runtime.CompilerServices;

namespace DeferRuntime.Timers;

/// <summary>
/// include/linux/jiffies.h: wrap-safe comparisons of jiffies values. Conversions between jiffies and
/// time depend on a runtime's HZ, so they live on <see cref="Runtime"/> (<see cref="Runtime.MsecsToJiffies"/>
/// and friends), as the kernel's depend on its compile-time HZ.
/// </summary>
/// <remarks>
/// Our jiffies are 64-bit (jiffies_64) and start at 0 at boot, so they do not wrap in practice; the
/// comparisons still subtract and test the sign, as the kernel's do, so code written against them is
/// also right for a counter that wraps.
/// </remarks>
public static class Jiffies
{
    /// <summary>MAX_JIFFY_OFFSET: the largest timeout in jiffies the conversions return ((LONG_MAX &gt;&gt; 1) - 1).</summary>
    public const long MaxJiffyOffset = (long.MaxValue >> 1) - 1;

    /// <summary>time_after(a, b): true if <paramref name="a"/> is after <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TimeAfter(long a, long b) => unchecked(b - a) < 0;

    /// <summary>time_before(a, b): true if <paramref name="a"/> is before <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TimeBefore(long a, long b) => TimeAfter(b, a);

    /// <summary>time_after_eq(a, b): true if <paramref name="a"/> is after or equal to <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TimeAfterEq(long a, long b) => unchecked(a - b) >= 0;

    /// <summary>time_before_eq(a, b): true if <paramref name="a"/> is before or equal to <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TimeBeforeEq(long a, long b) => TimeAfterEq(b, a);

    /// <summary>time_in_range(a, b, c): true if <paramref name="a"/> is in [<paramref name="b"/>, <paramref name="c"/>].</summary>
    public static bool TimeInRange(long a, long b, long c) => TimeAfterEq(a, b) && TimeBeforeEq(a, c);

    /// <summary>time_in_range_open(a, b, c): true if <paramref name="a"/> is in [<paramref name="b"/>, <paramref name="c"/>).</summary>
    public static bool TimeInRangeOpen(long a, long b, long c) => TimeAfterEq(a, b) && TimeBefore(a, c);
}
