using System.Diagnostics;
using DeferRuntime.Devices;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// Paces one event stream at a mean rate with the storm generator's arrival processes (constant,
/// Poisson, bursty), for a device the <see cref="StormGenerator"/> does not drive: the NIC's sender.
/// Deadlines are doubles in Stopwatch ticks so fractional intervals do not drift.
/// </summary>
internal sealed class ArrivalPacer
{
    // Waiting further than this sleeps (Thread.Sleep(1) lasts 1-2 ms); closer, it yields; closest, it spins.
    private static readonly long SleepTicks = Stopwatch.Frequency * 2 / 1000;
    private static readonly long YieldTicks = Stopwatch.Frequency / 50_000;

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

    /// <summary>Arrivals more than the allowed lag late (each restarted the schedule from now).</summary>
    public long LateArrivals { get; private set; }

    public void Begin(long now) => _due = now + NextGap();

    /// <summary>Waits for the next arrival; returns how many events arrive at once (a burst), or 0 when <paramref name="end"/> comes first.</summary>
    public int WaitNext(long end, Func<bool> stop)
    {
        long due = (long)_due;
        if (due >= end)
        {
            WaitUntil(end, stop);
            return 0;
        }
        long now = WaitUntil(due, stop);
        if (now - due > _maxLag)
        {
            LateArrivals++;
            _due = now; // re-anchor: never burst to catch up
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
            if (left > SleepTicks)
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
