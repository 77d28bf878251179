using System.Diagnostics;
using DeferRuntime.Platform;
using DeferRuntime.Devices;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// Paces one event stream at a mean rate with the storm generator's arrival processes (constant,
/// Poisson, bursty), for a device the <see cref="StormGenerator"/> does not drive: the NIC's sender.
/// Deadlines are doubles in Stopwatch ticks so fractional intervals do not drift. The schedule never
/// restarts: a late sender gets each arrival's intended time and sends the backlog as fast as it can, so
/// its lag shows as latency from the intended time.
/// </summary>
internal sealed class ArrivalPacer
{
    // Without PacingSleep: waiting further than this sleeps (Thread.Sleep(1) lasts 1-2 ms); closer, it
    // yields; closest, it spins.
    private static readonly long SleepTicks = Stopwatch.Frequency * 2 / 1000;
    private static readonly long YieldTicks = Stopwatch.Frequency / 50_000;
    // With PacingSleep (Linux): sleep to this long before the deadline, then spin the rest, as the storm
    // generator does. Sleeping between events instead of yielding leaves the sender's core to that core's
    // kworkers: a nice -10 thread yielding in a loop held them off for milliseconds.
    private static readonly long WakeMarginTicks = Stopwatch.Frequency / 50_000;
    // At most this long in one sleep, so a stop request is seen within a millisecond.
    private static readonly long LongestSleepTicks = Stopwatch.Frequency / 1000;

    private readonly StormArrival _arrival;
    private readonly int _burst;
    private readonly double _interval; // mean ticks between arrivals (between bursts under Bursty)
    private readonly long _maxLag;
    private readonly Random _random;
    private double _due;

    public ArrivalPacer(double ratePerSecond, StormArrival arrival, int burstLength, int seed, TimeSpan maxLag)
    {
        _arrival = arrival;
        _burst = arrival == StormArrival.Bursty ? burstLength : 1;
        _interval = Stopwatch.Frequency * _burst / ratePerSecond;
        _maxLag = (long)(maxLag.TotalSeconds * Stopwatch.Frequency);
        _random = new Random(seed);
    }

    /// <summary>Arrivals the sender got to more than the allowed lag after their intended time.</summary>
    public long LateArrivals { get; private set; }

    /// <summary>Starts the schedule; call it on the thread that waits (it sets that thread's timer slack).</summary>
    public void Begin(long now)
    {
        _ = Nap.UsePreciseTimerSlack(); // best effort: a late wake-up is absorbed by the spin margin or counted as lag
        _due = now + NextGap();
    }

    /// <summary>Waits for the next arrival; returns how many events arrive at once (a burst), or 0 when <paramref name="end"/> comes first; <paramref name="due"/> is their intended time.</summary>
    public int WaitNext(long end, Func<bool> stop, out long due)
    {
        due = (long)_due;
        if (due >= end)
        {
            WaitUntil(end, stop);
            return 0;
        }
        long now = WaitUntil(due, stop);
        if (now - due > _maxLag)
        {
            LateArrivals++; // no re-anchoring: the arrivals due meanwhile follow at once, each at its intended time
        }
        _due += NextGap();
        return _burst;
    }

    private double NextGap() => _arrival == StormArrival.Poisson ? -Math.Log(1 - _random.NextDouble()) * _interval : _interval;

    private static long WaitUntil(long deadline, Func<bool> stop)
    {
        while (true)
        {
            long now = Stopwatch.GetTimestamp();
            long left = deadline - now;
            if (left <= 0 || stop())
            {
                return now;
            }
            if (Nap.CanSleepUntil)
            {
                if (left > WakeMarginTicks)
                {
                    Nap.Until(now + Math.Min(left - WakeMarginTicks, LongestSleepTicks));
                }
                else
                {
                    Thread.SpinWait(16);
                }
            }
            else if (left > SleepTicks)
            {
                Thread.Sleep(1);
            }
            else if (left > YieldTicks)
            {
                Thread.Yield();
            }
            else
            {
                Thread.SpinWait(16);
            }
        }
    }
}
