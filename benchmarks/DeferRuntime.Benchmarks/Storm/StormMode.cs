using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using DeferRuntime.Benchmarks.Support;
using DeferRuntime.Cpus;
using DeferRuntime.Devices;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Benchmarks.Storm;

/// <summary>
/// <c>-- storm [--rates r1,r2,...] [--lines N] [--seconds S] [--policy Poll|Hybrid|Halt] [--arrival Constant|Poisson|Bursty] [--topology shared|split]</c>:
/// storm throughput. For each total rate, a runtime, N edge lines balanced across its CPUs, one storm
/// generator thread pacing all of them. Topology <c>shared</c> (default): two CPUs, one per core, and the
/// generator thread competing with them for the two cores, as a user's device thread would.
/// <c>split</c>: one CPU on the last core and the generator pinned alone on the first, the way real
/// hardware does not take CPU time from the CPUs it interrupts. each hard-IRQ handler drains its line's FIFO and
/// records assert -> handler-entry latency per event into a pre-allocated histogram. Reported per rate:
/// events generated and handled (every one accounted: lost must be 0), the rate achieved, whether the
/// generator could pace it, latency percentiles, interrupts taken (coalescing), and GC activity.
/// </summary>
internal static class StormMode
{
    public static int Run(ReadOnlySpan<string> args)
    {
        double[] rates = [250_000, 500_000, 1_000_000, 2_000_000, 4_000_000];
        int lines = 8;
        double seconds = 3;
        var policy = IdlePolicy.Hybrid;
        var arrival = StormArrival.Poisson;
        bool split = false;
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : "";
            switch (args[i])
            {
                case "--rates": rates = value.Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray(); i++; break;
                case "--lines": lines = int.Parse(value, CultureInfo.InvariantCulture); i++; break;
                case "--seconds": seconds = double.Parse(value, CultureInfo.InvariantCulture); i++; break;
                case "--policy": policy = Enum.Parse<IdlePolicy>(value, ignoreCase: true); i++; break;
                case "--arrival": arrival = Enum.Parse<StormArrival>(value, ignoreCase: true); i++; break;
                case "--topology": split = value == "split"; i++; break;
                default:
                    Console.Error.WriteLine($"unknown option '{args[i]}'. Usage: storm [--rates r1,r2] [--lines N] [--seconds S] [--policy Poll|Hybrid|Halt] [--arrival Constant|Poisson|Bursty] [--topology shared|split]");
                    return 2;
            }
        }

        Console.WriteLine($"# storm mode: {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}, {Environment.ProcessorCount} processors");
        Console.WriteLine(split
            ? $"# split: 1 virtual CPU ({policy}) on core {ForeignTopology.ConsumerCore}, the generator thread pinned alone on core {ForeignTopology.ProducerCore}; {lines} edge lines, {arrival} arrivals, {seconds:0.#} s per rate"
            : $"# shared: 2 virtual CPUs ({policy}) one per core, the generator thread unpinned beside them; {lines} edge lines balanced across both, {arrival} arrivals, {seconds:0.#} s per rate");
        Console.WriteLine();
        Console.WriteLine("| requested/s | generated | handled | lost | handled/s | paced? | IRQ runs | events/run | p50 µs | p99 µs | p99.9 µs | max µs | GCs | GC pause |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        int failures = 0;
        foreach (double rate in rates)
        {
            failures += RunOne(rate, lines, seconds, policy, arrival, split) ? 0 : 1;
        }
        Console.WriteLine();
        Console.WriteLine("# latency: assertion timestamp (generator) -> handler entry timestamp (cpu/N), per event; 'paced?' is no when the generator fell > 1 ms behind its schedule");
        return failures == 0 ? 0 : 1;
    }

    private static bool RunOne(double rate, int lineCount, double seconds, IdlePolicy policy, StormArrival arrival, bool split)
    {
        // split: boot one CPU under an affinity of the last core, then pin this thread to the first; the
        // generator thread inherits this thread's affinity when Start creates it.
        using var runtime = split ? ForeignTopology.BootRemoteCpu(policy) : Runtime.Boot(new RuntimeOptions { CpuCount = 2, IdlePolicy = policy });
        var irqs = runtime.Irqs;
        var lines = Enumerable.Range(0, lineCount)
            .Select(_ => new StormLine(irqs.AllocateIrq(), rate / lineCount) { Arrival = arrival })
            .ToArray();
        using var storm = new StormGenerator(runtime, new StormOptions
        {
            Lines = lines,
            Duration = TimeSpan.FromSeconds(seconds),
            RingCapacity = 1 << 16,
        });
        var histograms = Enumerable.Range(0, runtime.Cpus.Count).Select(_ => new Histogram()).ToArray();
        foreach (var source in storm.Sources)
        {
            irqs.RequestIrq(source.Irq, (_, dev) =>
            {
                var s = (StormLineSource)dev!;
                long entry = Stopwatch.GetTimestamp();
                var histogram = histograms[CpuContext.CurrentCpuId];
                while (s.TryTake(out long asserted))
                {
                    histogram.Add(entry - asserted);
                }
                return IrqReturn.Handled;
            }, IrqFlags.None, $"storm{source.Index}", source);
        }

        int gcBefore = GC.CollectionCount(0) + GC.CollectionCount(1) + GC.CollectionCount(2);
        var pauseBefore = GC.GetTotalPauseDuration();
        storm.Start();
        storm.Join(TimeSpan.FromSeconds(seconds + 60));
        var deadline = Stopwatch.GetTimestamp() + 30 * Stopwatch.Frequency;
        while (storm.Sources.Any(s => s.Handled != s.Generated) && Stopwatch.GetTimestamp() < deadline)
        {
            Thread.Sleep(1);
        }
        if (split)
        {
            ForeignTopology.Unpin();
        }
        var report = storm.GetReport();
        int gcs = GC.CollectionCount(0) + GC.CollectionCount(1) + GC.CollectionCount(2) - gcBefore;
        var pause = GC.GetTotalPauseDuration() - pauseBefore;
        long runs = storm.Sources.Sum(s => irqs.GetStats(s.Irq).Runs);
        var merged = Histogram.Merge(histograms);
        long lost = report.Generated - report.Handled;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {rate:N0} | {report.Generated:N0} | {report.Handled:N0} | {lost} | {report.Handled / report.Elapsed.TotalSeconds:N0} | {(report.FellBehind ? "no" : "yes")} | {runs:N0} | {(runs == 0 ? 0 : (double)report.Handled / runs):0.0} | {merged.Percentile(0.50):0.00} | {merged.Percentile(0.99):0.00} | {merged.Percentile(0.999):0.00} | {merged.Max:0.00} | {gcs} | {pause.TotalMilliseconds:0.00} ms |"));
        return lost == 0;
    }

    /// <summary>A log-linear latency histogram in Stopwatch ticks: 64 sub-buckets per power of two, pre-allocated, one writer (its CPU).</summary>
    private sealed class Histogram
    {
        private const int SubBits = 6;
        private readonly long[] _counts = new long[64 << SubBits];
        private long _max;

        public void Add(long ticks)
        {
            ticks = Math.Max(0, ticks);
            _counts[Index(ticks)]++;
            if (ticks > _max)
            {
                _max = ticks;
            }
        }

        public double Max => Micros(_max);

        public static Histogram Merge(Histogram[] parts)
        {
            var merged = new Histogram();
            foreach (var part in parts)
            {
                for (int i = 0; i < merged._counts.Length; i++)
                {
                    merged._counts[i] += part._counts[i];
                }
                merged._max = Math.Max(merged._max, part._max);
            }
            return merged;
        }

        public double Percentile(double p)
        {
            long total = _counts.Sum();
            if (total == 0)
            {
                return 0;
            }
            long rank = (long)Math.Ceiling(p * total);
            long seen = 0;
            for (int i = 0; i < _counts.Length; i++)
            {
                seen += _counts[i];
                if (seen >= rank)
                {
                    return Micros(UpperBound(i));
                }
            }
            return Max;
        }

        private static int Index(long ticks)
        {
            if (ticks < (1 << SubBits))
            {
                return (int)ticks;
            }
            int log = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)ticks);
            int shift = log - SubBits;
            return ((shift + 1) << SubBits) + (int)((ticks >> shift) & ((1 << SubBits) - 1));
        }

        private static long UpperBound(int index)
        {
            int block = index >> SubBits;
            long sub = index & ((1 << SubBits) - 1);
            if (block == 0)
            {
                return sub;
            }
            int shift = block - 1;
            return (((1L << SubBits) | sub) << shift) + (1L << shift) - 1;
        }

        private static double Micros(long ticks) => ticks * 1e6 / Stopwatch.Frequency;
    }
}
