using DeferRuntime.Cpus;
using DeferRuntime.Timers;

namespace DeferRuntime.Tests.Timers;

/// <summary>
/// Conservation under hammering: every arm ends exactly one way, so over the whole run
/// arms == fires + (arms superseded or deleted, i.e. ModTimer/DelTimer/DelTimerSync calls that returned true).
/// Threads of no CPU and tasks bound to either CPU share one pool of timers, so timers migrate between
/// the two wheels while they are armed, deleted and expiring.
/// </summary>
public class TimerStressTests
{
    private const int Threads = 4; // two of no CPU, one bound to each CPU

    [Fact]
    public void Wheel_timers_armed_deleted_and_modded_from_many_threads_fire_exactly_once_per_surviving_arm()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        const int pool = 64;
        int opsPerThread = Stress.Scale(20_000, 400_000);
        long fires = 0;
        var firesPer = new long[pool];
        var timers = Enumerable.Range(0, pool).Select(n => rt.TimerSetup(_ =>
        {
            Interlocked.Increment(ref firesPer[n]);
            Interlocked.Increment(ref fires);
        }, (n & 3) == 0 ? TimerFlags.Deferrable : TimerFlags.None, $"s{n}")).ToArray();
        var arms = new long[Threads];
        var ended = new long[Threads];

        var workers = Enumerable.Range(0, Threads).Select(w => Guarded.Start(() =>
        {
            CpuBinding? binding = w >= 2 ? rt.Cpus[w - 2].BindCurrentThread() : null;
            try
            {
                var rng = new Random(100 + w);
                for (int i = 0; i < opsPerThread; i++)
                {
                    var t = timers[rng.Next(pool)];
                    switch (rng.Next(10))
                    {
                        case < 6:
                            arms[w]++;
                            if (t.ModTimer(rt.Jiffies + rng.Next(0, 12)))
                            {
                                ended[w]++;
                            }
                            break;
                        case < 8:
                            if (t.DelTimer())
                            {
                                ended[w]++;
                            }
                            break;
                        case 8:
                            if (t.DelTimerSync())
                            {
                                ended[w]++;
                            }
                            break;
                        default:
                            try
                            {
                                t.Expires = rt.Jiffies + rng.Next(0, 12);
                                t.AddTimerOn(rng.Next(2));
                                arms[w]++;
                            }
                            catch (InvalidOperationException)
                            {
                                // Pending (armed by another thread meanwhile): add_timer_on() refused, nothing armed.
                            }
                            break;
                    }
                }
            }
            finally
            {
                binding?.Dispose();
            }
        }, $"stress/{w}")).ToList();
        workers.ForEach(w => w.Join());

        // Deferrable timers run only on an awake CPU: a normal timer per CPU wakes both after the rest is due.
        using var wake = new CountdownEvent(2);
        var wakers = Enumerable.Range(0, 2).Select(c => rt.TimerSetup(_ => wake.Signal(), name: $"waker{c}")).ToArray();
        for (int c = 0; c < 2; c++)
        {
            wakers[c].Expires = rt.Jiffies + 20;
            wakers[c].AddTimerOn(c);
        }
        Assert.True(wake.Wait(Wait.Ceiling), "hang: the wakers never ran");
        Wait.Until(() => timers.All(t => !t.TimerPending), "every surviving arm to fire");
        foreach (var t in timers)
        {
            Assert.False(t.DelTimerSync()); // and its callback to finish
        }

        long totalArms = arms.Sum(), totalEnded = ended.Sum();
        Assert.Equal(totalArms, Interlocked.Read(ref fires) + totalEnded);
        Assert.True(Interlocked.Read(ref fires) > 0 && totalEnded > 0, $"both endings should occur: {fires} fired, {totalEnded} superseded or deleted");
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void Hrtimers_started_and_cancelled_from_many_threads_fire_exactly_once_per_surviving_start()
    {
        using var rt = TestRuntime.Boot(2, o => o.ForeignPlacement = ForeignPlacement.RoundRobin);
        const int pool = 64;
        int opsPerThread = Stress.Scale(20_000, 400_000);
        long fires = 0;
        var timers = Enumerable.Range(0, pool).Select(n => rt.HrtimerSetup(_ =>
        {
            Interlocked.Increment(ref fires);
            return HrtimerRestart.NoRestart;
        }, $"h{n}")).ToArray();
        var locks = Enumerable.Range(0, pool).Select(_ => new object()).ToArray();
        var starts = new long[Threads];
        var cancelled = new long[Threads];

        var workers = Enumerable.Range(0, Threads).Select(w => Guarded.Start(() =>
        {
            CpuBinding? binding = w >= 2 ? rt.Cpus[w - 2].BindCurrentThread() : null;
            try
            {
                var rng = new Random(200 + w);
                for (int i = 0; i < opsPerThread; i++)
                {
                    int n = rng.Next(pool);
                    var t = timers[n];
                    if (rng.Next(3) == 0)
                    {
                        if (t.TryToCancel() == 1)
                        {
                            cancelled[w]++;
                        }
                        continue;
                    }
                    // hrtimer_start() replaces a queued start without saying so: take the old one off
                    // first (and count it), with the test's own lock so no start slips in between.
                    lock (locks[n])
                    {
                        int r = t.TryToCancel();
                        if (r == -1)
                        {
                            r = t.Cancel() ? 1 : 0;
                        }
                        if (r == 1)
                        {
                            cancelled[w]++;
                        }
                        starts[w]++;
                        t.Start(rng.Next(0, 3_000_000), HrtimerMode.Rel);
                    }
                }
            }
            finally
            {
                binding?.Dispose();
            }
        }, $"hrstress/{w}")).ToList();
        workers.ForEach(w => w.Join());

        Wait.Until(() => timers.All(t => !t.IsQueued), "every surviving start to fire");
        foreach (var t in timers)
        {
            Assert.False(t.Cancel());
        }
        Assert.Equal(starts.Sum(), Interlocked.Read(ref fires) + cancelled.Sum());
        Assert.True(Interlocked.Read(ref fires) > 0 && cancelled.Sum() > 0);
        Assert.Equal(0, rt.Faults.Count);
    }
}
