using DeferRuntime.Cpus;
using DeferRuntime.Devices;
using NicDriverSample;

namespace DeferRuntime.Tests.Devices;

/// <summary>
/// The loopback UDP NIC with the sample's NAPI driver: nothing lost, order kept per sender, a flood taken by
/// polling, and the device back in interrupt mode afterwards.
/// </summary>
public class LoopbackNicTests
{
    [Fact]
    public void Datagrams_from_two_senders_are_all_processed_in_order_and_the_device_returns_to_interrupt_mode()
    {
        using var rt = TestRuntime.Boot();
        using var nic = new LoopbackNic(rt, new LoopbackNicOptions { Name = "eth0" });
        using var driver = new LoopbackNicDriver(rt, nic, senders: 2);
        nic.Start();
        int perSender = Stress.Scale(3_000, 200_000);

        var senders = Enumerable.Range(0, 2).Select(id => Guarded.Start(() =>
        {
            using var sender = new LoopbackSender(nic.LocalEndPoint, id);
            sender.Send(perSender, () => driver.ProcessedFrom(id), window: 256);
        }, $"sender/{id}")).ToList();
        senders.ForEach(s => s.Join());
        Wait.Until(() => driver.Processed == 2L * perSender, "every datagram processed");
        Wait.Until(() => nic.InterruptsEnabled && !driver.Napi.IsScheduled, "NAPI to complete and unmask the device");
        nic.Stop();
        // Counts settle just after the work they count: the last poll's packets when it returns, the last
        // run when its handler returns.
        Wait.Until(() => driver.Napi.GetStats().Packets == 2L * perSender && !rt.Irqs.GetStats(nic.Irq).InProgress, "the counts to settle");

        Assert.Equal(perSender, driver.ProcessedFrom(0));
        Assert.Equal(perSender, driver.ProcessedFrom(1));
        Assert.Equal(0, driver.SequenceErrors); // in order per sender: no gap (loss), no step back (duplicate)
        Assert.Equal(0, driver.BadFrames);
        var device = nic.GetStats();
        var line = rt.Irqs.GetStats(nic.Irq);
        var napi = driver.Napi.GetStats();
        Assert.Equal(2L * perSender, device.RxPackets);
        Assert.Equal(0, device.RingCount);
        Assert.True(device.KernelDrops is null or 0, $"the kernel dropped {device.KernelDrops} datagrams");
        // Every interrupt is the device's, acknowledged once, and schedules NAPI once: the device asserts
        // only with its cause clear, and its cause is cleared only by the acknowledgement.
        Assert.Equal(device.Interrupts, line.Asserts);
        Assert.Equal(device.Interrupts, line.Runs);
        Assert.Equal(device.Interrupts, device.Acks);
        Assert.Equal(device.Acks, driver.TopHalves);
        Assert.Equal(device.Acks, napi.Schedules);
        Assert.Equal(0, device.NotMine);
        Assert.Equal(napi.Schedules, napi.CompleteDone); // each interrupt's polling session ends in one completion
        Assert.Equal(0, napi.ScheduleMissed);
        Assert.Equal(2L * perSender, napi.Packets);
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void A_burst_behind_a_held_poll_is_taken_by_polling_then_the_device_goes_back_to_interrupts()
    {
        using var rt = TestRuntime.Boot();
        using var nic = new LoopbackNic(rt, new LoopbackNicOptions { Name = "held", RingSize = 64 });
        rt.Irqs.IrqSetAffinity(nic.Irq, 0);
        using var driver = new LoopbackNicDriver(rt, nic, senders: 2);
        nic.Start();
        const int Burst = 200; // a few hundred KiB of kernel socket buffer at most, within any rmem_max
        long runsWhileHeld = -1;

        rt.Bound(0, () =>
        {
            // Softirqs of CPU 0 are held by this thread: the top half runs on cpu/0, masks the device and
            // schedules NAPI there, but no poll can run until local_bh_enable(), so the burst piles up in
            // the ring and the socket buffer.
            using (CpuContext.LocalBhDisable())
            {
                using var sender = new LoopbackSender(nic.LocalEndPoint, 0);
                sender.Send(Burst);
                // The run is counted when the handler returns, after it scheduled NAPI: wait for both.
                Wait.Until(() => driver.Napi.IsScheduled && rt.Irqs.GetStats(nic.Irq) is { InProgress: false, Runs: > 0 }, "the top half to schedule NAPI");
                runsWhileHeld = rt.Irqs.GetStats(nic.Irq).Runs;
                Assert.Equal(0, driver.Processed);
                Assert.False(nic.InterruptsEnabled);
            }
        });
        Wait.Until(() => driver.Processed == Burst, "the burst processed");
        Wait.Until(() => nic.InterruptsEnabled && !driver.Napi.IsScheduled, "NAPI to complete and unmask the device");

        Assert.Equal(1, runsWhileHeld); // masked after the first interrupt: the rest of the burst raised none
        var line = rt.Irqs.GetStats(nic.Irq);
        var napi = driver.Napi.GetStats();
        Assert.True(line.Runs < Burst / 4, $"{line.Runs} interrupts for {Burst} packets: polling should have taken the burst");
        Assert.True(napi.PacketsPerSchedule > 4, $"{napi.PacketsPerSchedule:0.0} packets per schedule");
        Assert.True(napi.CompleteDone < Burst);

        // Back in interrupt mode: one more datagram raises the line again.
        using (var late = new LoopbackSender(nic.LocalEndPoint, 1))
        {
            late.Send(1);
            Wait.Until(() => driver.Processed == Burst + 1, "the late datagram");
            Wait.Until(() => rt.Irqs.GetStats(nic.Irq) is { InProgress: false } l && l.Runs > line.Runs, "its interrupt to be counted");
            Assert.Equal(line.Runs + 1, rt.Irqs.GetStats(nic.Irq).Runs);
        }
        Assert.Equal(0, driver.SequenceErrors);
        Assert.Equal(0, driver.BadFrames);
        Assert.Equal(0, rt.Faults.Count);
    }

    [Fact]
    public void A_masked_device_notes_readiness_without_asserting_and_interrupts_at_once_when_unmasked()
    {
        using var rt = TestRuntime.Boot();
        using var nic = new LoopbackNic(rt, new LoopbackNicOptions { Name = "masked" });
        using var driver = new LoopbackNicDriver(rt, nic, senders: 1);
        nic.DisableInterrupts();
        nic.Start();

        using var sender = new LoopbackSender(nic.LocalEndPoint, 0);
        sender.Send(10);
        Wait.Until(() => nic.GetStats().ReadyWhileMasked >= 1, "the device to see data while masked");
        Assert.Equal(0, nic.GetStats().Interrupts);
        Assert.Equal(0, driver.Processed); // the data waits in the socket buffer

        nic.EnableInterrupts();
        Wait.Until(() => driver.Processed == 10, "the datagrams after unmasking");
        Assert.True(nic.GetStats().Interrupts >= 1);
        Assert.Equal(0, driver.SequenceErrors);
        Assert.Equal(0, rt.Faults.Count);
    }
}
