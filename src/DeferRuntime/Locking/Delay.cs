using System.Diagnostics;

namespace DeferRuntime.Locking;

/// <summary>
/// include/linux/delay.h: sleeping delays (<see cref="Msleep"/>, which might_sleep and tell the worker
/// pool) and busy-waiting ones (<see cref="Udelay"/>, <see cref="Mdelay"/>, allowed in atomic context).
/// </summary>
public static class Delay
{
    /// <summary>msleep(): sleeps at least <paramref name="milliseconds"/>. Refused in atomic context.</summary>
    public static void Msleep(int milliseconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(milliseconds);
        MightSleep.Check("msleep()");
        SleepFor(milliseconds, CancellationToken.None);
    }

    /// <summary>msleep_interruptible(): as <see cref="Msleep"/>, ends early on cancellation; returns the milliseconds left (0 if it slept through).</summary>
    public static long MsleepInterruptible(int milliseconds, CancellationToken cancellation)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(milliseconds);
        MightSleep.Check("msleep_interruptible()");
        long deadline = SleepFor(milliseconds, cancellation);
        long left = (deadline - Stopwatch.GetTimestamp()) * 1000 / Stopwatch.Frequency;
        return Math.Max(0, left);
    }

    /// <summary>udelay(): busy-waits <paramref name="microseconds"/>; fine in any context, burns the CPU.</summary>
    public static void Udelay(int microseconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(microseconds);
        long end = Stopwatch.GetTimestamp() + (microseconds * Stopwatch.Frequency / 1_000_000);
        while (Stopwatch.GetTimestamp() < end)
        {
            Thread.SpinWait(8);
        }
    }

    /// <summary>mdelay(): busy-waits <paramref name="milliseconds"/>.</summary>
    public static void Mdelay(int milliseconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(milliseconds);
        Udelay(checked(milliseconds * 1000));
    }

    private static long SleepFor(int milliseconds, CancellationToken cancellation)
    {
        long deadline = Stopwatch.GetTimestamp() + (milliseconds * Stopwatch.Frequency / 1000);
        var node = WaitNode.Current;
        while (Stopwatch.GetTimestamp() < deadline && !cancellation.IsCancellationRequested)
        {
            node.Block(deadline, cancellation); // schedule_timeout(): nobody wakes us but time or cancellation
        }
        return deadline;
    }
}
