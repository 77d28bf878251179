// A NIC driver with NAPI on a loopback UDP "NIC": boots the runtime, probes the driver, then
//   1. trickle: datagrams one at a time — interrupt mode, one interrupt per packet;
//   2. flood:   several senders as fast as the driver keeps up — the top half masks the device and NAPI
//               polls it: many packets per interrupt, time_squeeze when a poll round runs out of budget;
//   3. after:   a trickle again — the device is back in interrupt mode.
// Prints /proc/interrupts, /proc/softirqs, /proc/net/softnet_stat and the NAPI counts, and exits non-zero
// unless every datagram sent was processed, in order per sender, with a good checksum, and none dropped.
//
//   dotnet run -c Release --project samples/NicDriver [-- packets [senders]]
using System.Diagnostics;
using System.Globalization;
using DeferRuntime;
using DeferRuntime.Devices;
using NicDriverSample;

long floodPackets = args.Length > 0 ? long.Parse(args[0], CultureInfo.InvariantCulture) : 200_000;
int floodSenders = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 2;
const int Trickle = 20;
int trickleId = 0, afterId = floodSenders + 1; // sender ids: 0 trickle, 1..N flood, N+1 after

var runtime = Runtime.Boot(new RuntimeOptions());
var nic = new LoopbackNic(runtime, new LoopbackNicOptions { Name = "lo-nic0" });
var driver = new LoopbackNicDriver(runtime, nic, floodSenders + 2);
nic.Start();
Console.WriteLine($"DeferRuntime {runtime.Cpus.Count} CPUs; NIC '{nic.Name}' on IRQ {nic.Irq} at {nic.LocalEndPoint}, " +
    $"{nic.Rx.Capacity} RX descriptors, socket buffer {nic.SocketReceiveBufferBytes / 1024} KiB; NAPI weight {driver.Napi.Weight}, " +
    $"netdev_budget {runtime.NetRx.NetdevBudget}, netdev_budget_usecs {runtime.NetRx.NetdevBudgetUsecs}");

long sent = 0;
var phases = new List<string>();
int exitCode = 0;
string interrupts, softirqs, softnet;
NapiStats napiStats;
LoopbackNicStats nicStats;
try
{
    Phase("trickle", () => sent += SendTrickle(trickleId));

    // The window keeps each flood sender within what the kernel socket buffer holds (assume 2 KiB of
    // kernel accounting per small datagram), so the kernel never drops: UDP has no flow control.
    int window = Math.Max(64, nic.SocketReceiveBufferBytes / 2048 / floodSenders);
    Phase("flood", () =>
    {
        var threads = Enumerable.Range(1, floodSenders).Select(id => new Thread(() =>
        {
            using var sender = new LoopbackSender(nic.LocalEndPoint, id);
            sender.Send(floodPackets / floodSenders, () => driver.ProcessedFrom(id), window);
        }) { Name = $"sender/{id}" }).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        sent += floodPackets / floodSenders * floodSenders;
        WaitFor(() => driver.Processed == sent, "the flood to be processed");
    });

    WaitFor(() => nic.InterruptsEnabled && !driver.Napi.IsScheduled, "NAPI to complete and unmask the device");
    Phase("after", () => sent += SendTrickle(afterId));

    // What the kernel's files would show now, with the driver still loaded.
    interrupts = runtime.Irqs.RenderInterrupts();
    softirqs = runtime.RenderSoftirqs();
    softnet = runtime.NetRx.RenderSoftnetStat();
    napiStats = driver.Napi.GetStats();
    nicStats = nic.GetStats();
}
finally
{
    nic.Stop(); // devices first: the runtime refuses their assertions once its shutdown begins
    driver.Dispose();
    nic.Dispose();
    runtime.Dispose();
}

Console.WriteLine();
Console.WriteLine("phase        packets  interrupts    pkts/irq  napi polls  full-weight  complete_done  time_squeeze       ms");
phases.ForEach(Console.WriteLine);
Console.WriteLine();
Console.WriteLine("/proc/interrupts:");
Console.Write(interrupts);
Console.WriteLine();
Console.WriteLine("/proc/softirqs:");
Console.Write(softirqs);
Console.WriteLine();
Console.WriteLine("/proc/net/softnet_stat:");
Console.Write(softnet);
Console.WriteLine();
Console.WriteLine($"NAPI: {napiStats}");
Console.WriteLine($"NIC:  {nicStats}");
Console.WriteLine();

Check(driver.Processed == sent, $"sent {sent:N0}, processed {driver.Processed:N0}");
Check(!napiStats.Scheduled && nicStats.InterruptsEnabled, "back in interrupt mode after the flood (NAPI not scheduled, device interrupt enabled)");
Check(driver.SequenceErrors == 0, $"{driver.SequenceErrors} frames out of sequence");
Check(driver.BadFrames == 0, $"{driver.BadFrames} bad frames");
Check(nicStats.KernelDrops is null or 0, nicStats.KernelDrops is null ? "kernel socket drops not visible here (no /proc/net/udp)" : $"the kernel dropped {nicStats.KernelDrops} datagrams at the socket");
Check(runtime.Faults.Count == 0, runtime.Faults.Count == 0 ? "no faults" : $"{runtime.Faults.Count} faults: {string.Join("; ", runtime.Faults.Recent.Select(f => f.Exception.Message))}");
return exitCode;

long SendTrickle(int id)
{
    using var sender = new LoopbackSender(nic.LocalEndPoint, id);
    for (int i = 0; i < Trickle; i++)
    {
        long before = driver.ProcessedFrom(id);
        sender.Send(1);
        WaitFor(() => driver.ProcessedFrom(id) > before, "a trickle datagram");
    }
    return Trickle;
}

void Phase(string name, Action body)
{
    long packets0 = driver.Processed, irqs0 = runtime.Irqs.GetStats(nic.Irq).Runs, squeeze0 = Squeeze();
    var napi0 = driver.Napi.GetStats();
    var clock = Stopwatch.StartNew();
    body();
    long packets = driver.Processed - packets0, irqs = runtime.Irqs.GetStats(nic.Irq).Runs - irqs0;
    var napi = driver.Napi.GetStats();
    phases.Add(string.Create(CultureInfo.InvariantCulture,
        $"{name,-8} {packets,11:N0} {irqs,11:N0} {(irqs == 0 ? 0 : (double)packets / irqs),11:N1} {napi.Polls - napi0.Polls,11:N0} " +
        $"{napi.FullWeightPolls - napi0.FullWeightPolls,12:N0} {napi.CompleteDone - napi0.CompleteDone,14:N0} {Squeeze() - squeeze0,13:N0} {clock.ElapsedMilliseconds,8:N0}"));
}

long Squeeze() => Enumerable.Range(0, runtime.Cpus.Count).Sum(c => runtime.NetRx.GetSoftnetStats(c).TimeSqueeze);

static void WaitFor(Func<bool> condition, string what)
{
    var clock = Stopwatch.StartNew();
    while (!condition())
    {
        if (clock.Elapsed > TimeSpan.FromSeconds(60))
        {
            throw new TimeoutException($"still waiting after 60 s for {what}");
        }
        Thread.Yield();
    }
}

void Check(bool ok, string what)
{
    Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}");
    if (!ok)
    {
        exitCode = 1;
    }
}
