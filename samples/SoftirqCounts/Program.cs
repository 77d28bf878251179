// Boots a runtime, drives softirqs and tasklets from application threads and from inside the runtime,
// shuts down (which runs everything accepted), and prints /proc/softirqs-style counts with the boot
// report of what the OS granted. Until the storm tool exists, this is the README's main command.
using System.Globalization;
using DeferRuntime;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

int raisesPerThread = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 200_000;
var options = new RuntimeOptions();
Console.WriteLine($"DeferRuntime: {options.CpuCount} virtual CPUs, idle {options.IdlePolicy}, pinning {(options.Pinning ? "on" : "off")}");

long netRx = 0, taskletRuns = 0, hiRuns = 0;
var runtime = Runtime.Boot(options);
Console.WriteLine("Boot report (what the OS granted):");
Console.Write(runtime.RenderPlacements());

runtime.OpenSoftirq(SoftirqVector.NetRx, () => Interlocked.Increment(ref netRx));
var tasklet = runtime.CreateTasklet(_ => Interlocked.Increment(ref taskletRuns), "counter");
var hi = runtime.CreateTasklet(t =>
{
    Interlocked.Increment(ref hiRuns);
    // A tasklet may raise softirqs and schedule other tasklets: they run on this CPU.
    t.Runtime.RaiseSoftirq(SoftirqVector.NetRx);
}, "hi-chain");

var producers = Enumerable.Range(0, Environment.ProcessorCount).Select(_ => new Thread(() =>
{
    for (int i = 0; i < raisesPerThread; i++)
    {
        runtime.RaiseSoftirq(SoftirqVector.NetRx);
        tasklet.Schedule();
        if ((i & 15) == 0)
        {
            hi.HiSchedule();
        }
    }
})).ToList();
producers.ForEach(p => p.Start());
producers.ForEach(p => p.Join());
runtime.Dispose(); // drains: every accepted raise and schedule has run once this returns

Console.WriteLine();
Console.WriteLine("/proc/softirqs (executions per vector and CPU):");
Console.Write(runtime.RenderSoftirqs());
Console.WriteLine();
Console.WriteLine($"NET_RX handler runs: {netRx:N0} (raises coalesce while pending, as in the kernel)");
Console.WriteLine($"tasklet 'counter' runs: {taskletRuns:N0}; tasklet 'hi-chain' runs: {hiRuns:N0}");
foreach (var cpu in runtime.Cpus)
{
    Console.WriteLine($"CPU {cpu.Id}: hard-IRQ entries {cpu.HardirqEntryCount:N0}, ksoftirqd take-overs {cpu.KsoftirqdWakeupCount:N0}, parks {cpu.ParkCount:N0}");
}
Console.WriteLine($"faults: {runtime.Faults.Count}");
return runtime.Faults.Count == 0 ? 0 : 1;
