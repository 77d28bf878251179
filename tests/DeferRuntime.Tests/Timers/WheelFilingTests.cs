using DeferRuntime.Timers;

namespace DeferRuntime.Tests.Timers;

/// <summary>
/// The wheel's filing arithmetic, driven directly on a base nobody expires (no event is ever programmed,
/// so its CPU never runs it): the documented accuracy bound, and next-expiry tracking after deletions.
/// </summary>
public class WheelFilingTests
{
    [Fact]
    public void A_timer_is_filed_never_early_exact_within_63_jiffies_and_at_most_a_seventh_late_beyond()
    {
        using var rt = TestRuntime.Boot(1);
        var wheel = rt.Cpus[0].Timers.Standard;
        var t = rt.TimerSetup(_ => { }, name: "filed");
        var rng = new Random(17);
        long clk = 1_000;
        lock (wheel.BaseLock)
        {
            for (int i = 0; i < 60_000; i++)
            {
                clk += rng.Next(0, 3) == 0 ? rng.Next(0, 100_000) : 0; // the clock only moves forward
                long delta = i % 3 switch
                {
                    0 => rng.Next(0, 64),
                    1 => rng.Next(64, 5_000),
                    _ => rng.NextInt64(5_000, 63L << 24),
                };
                long expires = clk + delta;
                long bucket = wheel.Enqueue(t, expires, clk);
                Assert.True(bucket >= expires, $"filed at {bucket}, before its expiry {expires}");
                long late = bucket - expires;
                if (delta <= 63)
                {
                    Assert.Equal(0, late);
                }
                else
                {
                    Assert.True(late * 7 < delta, $"{late} jiffies late for a timeout of {delta}");
                }
                Assert.Equal(bucket, wheel.NextExpiryLocked());
                Assert.True(wheel.DetachIfPending(t));
            }

            // Past the last level: filed at the far end, to be filed again from there.
            long far = wheel.Enqueue(t, long.MaxValue - 1, clk);
            Assert.InRange(far - clk, 63L << 24, (63L << 24) + (1L << 24));
            Assert.True(wheel.DetachIfPending(t));
            Assert.Equal(TimerBase.NoExpiry, wheel.NextExpiryLocked());
        }
    }

    [Fact]
    public void Next_expiry_is_the_earliest_bucket_left_after_deletions_on_every_level()
    {
        using var rt = TestRuntime.Boot(1);
        var wheel = rt.Cpus[0].Timers.Standard;
        var timers = Enumerable.Range(0, 300).Select(n => rt.TimerSetup(_ => { }, name: $"n{n}")).ToArray();
        var buckets = new long[timers.Length];
        var rng = new Random(23);
        long clk = 5_000_003; // not on any level's grid
        lock (wheel.BaseLock)
        {
            for (int round = 0; round < 50; round++)
            {
                clk += rng.Next(0, 2_000);
                for (int i = 0; i < timers.Length; i++)
                {
                    long delta = (long)Math.Pow(8, rng.NextDouble() * 8.5);
                    buckets[i] = wheel.Enqueue(timers[i], clk + delta, clk);
                }
                var alive = Enumerable.Range(0, timers.Length).ToHashSet();
                while (alive.Count > 0)
                {
                    Assert.Equal(alive.Min(i => buckets[i]), wheel.NextExpiryLocked());
                    int victim = alive.ElementAt(rng.Next(alive.Count));
                    Assert.True(wheel.DetachIfPending(timers[victim]));
                    Assert.False(timers[victim].TimerPending);
                    alive.Remove(victim);
                }
                Assert.Equal(TimerBase.NoExpiry, wheel.NextExpiryLocked());
                Assert.Equal(0, wheel.Count);
            }
        }
    }
}
