using DeferRuntime.Timers;

namespace DeferRuntime.Tests.Timers;

public class JiffiesTests
{
    [Fact]
    public void Hz_is_validated_with_the_kernel_rule()
    {
        foreach (int hz in new[] { 0, 99, 10_001 })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.Boot(new RuntimeOptions { CpuCount = 1, Hz = hz }));
            Assert.Contains("Hz must be 100 to 10000", e.Message, StringComparison.Ordinal);
        }
        using var rt = TestRuntime.Boot(1, o => o.Hz = 250);
        Assert.Equal(250, rt.Hz);
    }

    [Theory]
    [InlineData(1000, 1, 1, 1, 1000)]
    [InlineData(1000, 20, 20, 20, 20_000)]
    [InlineData(250, 1, 1, 4, 4000)] // 1 ms is a quarter jiffy: rounds up to 1
    [InlineData(250, 10, 3, 12, 12_000)]
    [InlineData(300, 10, 3, 10, 10_000)] // 3 jiffies are 10 ms at HZ=300
    [InlineData(100, 15, 2, 20, 20_000)]
    [InlineData(2000, 1, 2, 1, 1000)]
    [InlineData(10_000, 3, 30, 3, 3000)]
    public void Conversions_round_timeouts_up_as_jiffies_h_does(int hz, long msecs, long expectedJiffies, long backToMsecs, long backToUsecs)
    {
        using var rt = TestRuntime.Boot(1, o => o.Hz = hz);
        long j = rt.MsecsToJiffies(msecs);
        Assert.Equal(expectedJiffies, j);
        Assert.Equal(expectedJiffies, rt.UsecsToJiffies(msecs * 1000));
        Assert.Equal(backToMsecs, rt.JiffiesToMsecs(j));
        Assert.Equal(backToUsecs, rt.JiffiesToUsecs(j));
        Assert.Equal(1, rt.UsecsToJiffies(1));
        Assert.Equal(0, rt.MsecsToJiffies(0));
        var huge = (((Int128)long.MaxValue * hz) + 999) / 1000;
        Assert.Equal(huge > Jiffies.MaxJiffyOffset ? Jiffies.MaxJiffyOffset : (long)huge, rt.MsecsToJiffies(long.MaxValue)); // clamped like MAX_JIFFY_OFFSET
        Assert.Throws<ArgumentOutOfRangeException>(() => rt.MsecsToJiffies(-1));
    }

    [Fact]
    public void Comparisons_are_wrap_safe()
    {
        long before = long.MaxValue - 5;
        long after = unchecked(before + 10); // wrapped to a large negative value
        Assert.True(Jiffies.TimeAfter(after, before));
        Assert.True(Jiffies.TimeBefore(before, after));
        Assert.True(Jiffies.TimeAfterEq(after, after));
        Assert.True(Jiffies.TimeBeforeEq(before, before));
        Assert.False(Jiffies.TimeAfter(before, after));
        Assert.True(Jiffies.TimeInRange(unchecked(before + 7), before, after));
        Assert.False(Jiffies.TimeInRangeOpen(after, before, after));
    }

    [Fact]
    public void Jiffies_follow_the_clock_even_when_every_cpu_is_idle()
    {
        using var rt = TestRuntime.Boot(2, o => o.IdlePolicy = IdlePolicy.Halt);
        // Nothing armed: no CPU takes a clock event, yet jiffies are exact at every read.
        long loc = rt.Cpus.Sum(c => c.LocalTimerInterruptCount);
        for (int i = 0; i < 1000; i++)
        {
            long ns0 = rt.KtimeGetNs();
            long j = rt.Jiffies;
            long ns1 = rt.KtimeGetNs();
            Assert.InRange(j, ns0 * rt.Hz / 1_000_000_000, ns1 * rt.Hz / 1_000_000_000);
        }
        long start = rt.Jiffies;
        Wait.Until(() => rt.Jiffies >= start + 3, "three jiffies to pass");
        Assert.Equal(loc, rt.Cpus.Sum(c => c.LocalTimerInterruptCount));
    }
}
