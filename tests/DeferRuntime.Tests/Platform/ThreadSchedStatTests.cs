using DeferRuntime.Platform;

namespace DeferRuntime.Tests.Platform;

public sealed class ThreadSchedStatTests
{
    [Fact]
    public void Run_delay_grows_when_two_spinning_threads_share_one_core()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the OS does not say
        }
        int core = ThreadPlacement.AllowedCores()[0];
        long[] delays = new long[2];
        string?[] pinErrors = new string?[2];
        using var bothStarted = new Barrier(2);
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() =>
        {
            // Failures are recorded and asserted on the test thread: an exception here would end the process.
            pinErrors[i] = ThreadPlacement.PinCurrentThread(core);
            using var schedstat = ThreadSchedStat.OpenForCurrentThread();
            bothStarted.SignalAndWait();
            if (schedstat is null)
            {
                delays[i] = -1;
                return;
            }
            long before = ThreadSchedStat.ReadRunDelayNs(schedstat);
            // Both spin on one core for 400 ms of wall time: the scheduler must make each wait while the
            // other runs, which is what run delay counts.
            var cpu = System.Diagnostics.Stopwatch.StartNew();
            long spun = 0;
            while (cpu.ElapsedMilliseconds < 400)
            {
                spun++;
            }
            delays[i] = before < 0 ? -1 : ThreadSchedStat.ReadRunDelayNs(schedstat) - before;
            GC.KeepAlive(spun);
        })).ToArray();
        foreach (var t in threads)
        {
            t.Start();
        }
        foreach (var t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(60)));
        }
        Assert.All(pinErrors, Assert.Null);
        Assert.All(delays, d => Assert.True(d >= 0, "schedstat could not be read"));
        Assert.True(delays.Sum() > 0, $"run delays {delays[0]} and {delays[1]} ns");
    }
}
