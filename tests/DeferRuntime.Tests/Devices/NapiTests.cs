using DeferRuntime.Cpus;
using DeferRuntime.Devices;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Tests.Devices;

/// <summary>NAPI and net_rx_action with synthetic instances: the state machine, the budgets, disable, and NET_RX ownership.</summary>
public class NapiTests
{
    [Fact]
    public void Napi_schedule_while_scheduled_queues_nothing_and_the_missed_schedule_costs_exactly_one_more_poll()
    {
        using var rt = TestRuntime.Boot();
        int polls = 0, inside = 0, overlaps = 0;
        var napi = rt.NetRx.NapiAdd((n, budget) =>
        {
            if (Interlocked.Increment(ref inside) != 1)
            {
                Interlocked.Increment(ref overlaps);
            }
            Interlocked.Increment(ref polls);
            n.CompleteDone(0);
            Interlocked.Decrement(ref inside);
            return 0;
        }, "missed");

        Assert.False(napi.Schedule()); // netif_napi_add() leaves it disabled until napi_enable()
        napi.Enable();
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalBhDisable())
            {
                Assert.True(napi.Schedule());
                Assert.False(napi.Schedule());
                Assert.False(napi.Schedule());
                Assert.True(napi.IsScheduled);
                Assert.Equal(0, Volatile.Read(ref polls)); // NET_RX of CPU 0 waits for our local_bh_enable()
            }
        });
        // Counts are updated just after the state word changes: wait for the completion's count too.
        Wait.Until(() => napi.GetStats() is { Scheduled: false, CompleteDone: 1 }, "the instance to complete");

        var s = napi.GetStats();
        Assert.Equal(1, s.Schedules);
        Assert.Equal(2, s.ScheduleMissed);
        Assert.Equal(1, s.ScheduleRefused);
        Assert.Equal(2, s.Polls); // queued once; the missed schedules made one completion poll once more
        Assert.Equal(1, s.MissedRepolls);
        Assert.Equal(1, s.CompleteDone);
        Assert.False(s.Missed);
        Assert.Equal(0, overlaps);
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void Net_rx_spends_its_budget_across_instances_counts_time_squeeze_and_finishes_after_reraising()
    {
        using var rt = TestRuntime.Boot();
        const int Instances = 8;
        const int PacketsEach = 100; // 64 in a full-weight poll, then 36 and complete
        var remaining = Enumerable.Repeat(PacketsEach, Instances).ToArray();
        var napis = new NapiStruct[Instances];
        for (int i = 0; i < Instances; i++)
        {
            int k = i;
            napis[i] = rt.NetRx.NapiAdd((n, budget) =>
            {
                int work = Math.Min(budget, remaining[k]);
                remaining[k] -= work;
                if (work < budget)
                {
                    n.CompleteDone(work);
                }
                return work;
            }, $"rx{i}");
            napis[i].Enable();
        }

        // One hard IRQ on CPU 0 schedules all eight: 800 packets, more than netdev_budget (300) per run.
        rt.OnCpu(0, () => Assert.All(napis, n => Assert.True(n.Schedule())));
        // A poll's work is counted when it returns, after its completion cleared Sched: wait for the counts.
        Wait.Until(() => napis.All(n => n.GetStats() is { Scheduled: false, Packets: PacketsEach, CompleteDone: 1 })
            && rt.NetRx.GetSoftnetStats(0).Processed == Instances * PacketsEach, "every instance to complete");

        Assert.All(remaining, r => Assert.Equal(0, r));
        var cpu0 = rt.NetRx.GetSoftnetStats(0);
        Assert.Equal(Instances * PacketsEach, cpu0.Processed);
        Assert.Equal(2 * Instances, cpu0.Polls);
        Assert.Equal(Instances, cpu0.Repolls);
        Assert.True(cpu0.TimeSqueeze >= 1, "a run with work left out of budget counts a time_squeeze");
        Assert.True(cpu0.Reraises >= 1, "and re-raises NET_RX for the rest");
        Assert.Equal(cpu0.TimeSqueeze, cpu0.BudgetExhausted + cpu0.TimeLimitHit);
        if (cpu0.TimeLimitHit == 0)
        {
            // Budget alone: run 1 polls five (320 >= 300), run 2 three full and three short (300), run 3 the rest.
            Assert.Equal(2, cpu0.BudgetExhausted);
            Assert.Equal(3, cpu0.NetRxRuns);
        }
        Assert.Equal(0, rt.NetRx.GetSoftnetStats(1).Polls); // polled where scheduled
        foreach (var napi in napis)
        {
            var s = napi.GetStats();
            Assert.Equal(2, s.Polls);
            Assert.Equal(1, s.FullWeightPolls);
            Assert.Equal(1, s.CompleteDone);
            Assert.Equal(PacketsEach, s.Packets);
        }
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void Napi_disable_waits_for_the_running_poll_and_holds_off_schedule_until_enable()
    {
        using var rt = TestRuntime.Boot();
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int polls = 0;
        int disableReturned = 0;
        int disableReturnedDuringPoll = -1;
        NapiStruct? napi = null;
        napi = rt.NetRx.NapiAdd((n, budget) =>
        {
            if (Interlocked.Increment(ref polls) == 1)
            {
                entered.Set();
                release.Wait(Wait.Ceiling);
                disableReturnedDuringPoll = Volatile.Read(ref disableReturned);
            }
            n.CompleteDone(0);
            return 0;
        }, "disabled");
        napi.Enable();

        Assert.True(napi.Schedule()); // from a thread of no CPU: placed on a CPU and kicked
        Wait.For(entered, "the first poll");
        var disabler = Guarded.Start(() =>
        {
            napi.Disable();
            Volatile.Write(ref disableReturned, 1);
        }, "disabler");
        Wait.Until(() => napi.IsDisabled, "napi_disable() to be pending");
        Assert.False(napi.Schedule()); // refused while disabling
        release.Set();
        disabler.Join();

        Assert.Equal(0, disableReturnedDuringPoll); // it waited for the poll
        Assert.True(napi.IsScheduled && napi.IsDisabled); // and holds Sched
        Assert.False(napi.Schedule());
        Assert.Throws<InvalidOperationException>(napi.Disable); // napi_disable() does not nest

        napi.Enable();
        Assert.True(napi.Schedule());
        Wait.Until(() => Volatile.Read(ref polls) == 2 && !napi.IsScheduled, "a poll after napi_enable()");
        Assert.Equal(2, napi.GetStats().ScheduleRefused);

        napi.Dispose(); // netif_napi_del(): disables, then leaves the engine
        Assert.DoesNotContain(napi, rt.NetRx.Instances);
        napi.Dispose();
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void Nothing_is_lost_when_a_poll_throws_or_breaks_the_weight_contract()
    {
        using var rt = TestRuntime.Boot();
        int polls = 0;
        var napi = rt.NetRx.NapiAdd((n, budget) =>
        {
            switch (Interlocked.Increment(ref polls))
            {
                case 1:
                    throw new InvalidOperationException("driver bug");
                case 2:
                    return 1_000; // more than the weight
                case 3:
                    return 3; // less than the weight, but forgot napi_complete_done()
                default:
                    n.CompleteDone(0);
                    return 0;
            }
        }, "buggy");
        napi.Enable();

        Assert.True(napi.Schedule());
        Wait.Until(() => napi.GetStats() is { Scheduled: false, CompleteDone: 1 }, "the instance to complete in the end");

        Assert.Equal(4, Volatile.Read(ref polls)); // each broken poll was polled again, not dropped
        Assert.Equal(1, rt.Faults.Recent.Count(f => f.Exception is InvalidOperationException { Message: "driver bug" }));
        Assert.Single(rt.Faults.Recent, f => f.Exception is Diagnostics.KernelWarningException); // WARN_ONCE per instance
        Assert.Equal(NapiStruct.DefaultWeight + NapiStruct.DefaultWeight + 3, napi.GetStats().Packets);
    }

    [Fact]
    public void Napi_refuses_a_net_rx_the_application_opened_and_owns_the_vector_once_added()
    {
        using (var rt = TestRuntime.Boot(1))
        {
            rt.OpenSoftirq(SoftirqVector.NetRx, () => { });
            var e = Assert.Throws<InvalidOperationException>(() => rt.NetRx.NapiAdd((_, _) => 0, "late"));
            Assert.Contains("NET_RX", e.Message, StringComparison.Ordinal);
        }
        using (var rt = TestRuntime.Boot(1))
        {
            using var napi = rt.NetRx.NapiAdd((_, _) => 0, "first");
            Assert.Throws<InvalidOperationException>(() => rt.OpenSoftirq(SoftirqVector.NetRx, () => { }));
            using var second = rt.NetRx.NapiAdd((_, _) => 0, "second"); // NET_RX is opened once
            Assert.Equal(2, rt.NetRx.Instances.Count);
        }
    }
}
