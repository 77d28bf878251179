using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using DeferRuntime.Benchmarks.Support;

namespace DeferRuntime.Benchmarks.Latency;

/// <summary>
/// <c>-- latency</c>: one-way latency percentiles, which BenchmarkDotNet (means) does not give. For each
/// path of <see cref="LatencyPath.All"/>: the producer (a thread of no CPU, pinned to core P) waits a
/// random 0 to <c>--max-gap-ns</c>, reads the clock, sends one request and spins until the callback on
/// core C has reported the clock reading it took first thing; latency = callback start - send start.
/// Warm-up: at least <c>--warmup</c> samples and one second (tiered JIT promotes hot methods after a
/// quiet period), then <c>--samples</c> measured samples into a pre-allocated array.
/// </summary>
/// <remarks>
/// The random gap keeps requests from arriving in lock-step with a consumer's poll loop; its bound keeps
/// every consumer warm (below the 50 µs poll window, and the thread pool's own spinning). Allocation and
/// gen-0 collections are counted across the measured loop of each path (all threads), as proof that it
/// allocates nothing.
/// </remarks>
internal static class LatencyMode
{
    private static readonly double[] s_percentiles = [0.50, 0.90, 0.99, 0.999];

    public static int Run(ReadOnlySpan<string> args)
    {
        int samples = 200_000, warmup = 20_000, maxGapNs = 5_000;
        string[]? only = null;
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : "";
            switch (args[i])
            {
                case "--samples": samples = int.Parse(value, CultureInfo.InvariantCulture); i++; break;
                case "--warmup": warmup = int.Parse(value, CultureInfo.InvariantCulture); i++; break;
                case "--max-gap-ns": maxGapNs = int.Parse(value, CultureInfo.InvariantCulture); i++; break;
                case "--path": only = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); i++; break;
                default:
                    Console.Error.WriteLine($"unknown option '{args[i]}'. Usage: latency [--samples N] [--warmup N] [--max-gap-ns N] [--path substring[,substring...]]");
                    return 2;
            }
        }

        Console.WriteLine($"# latency mode: {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}, {Environment.ProcessorCount} processors");
        Console.WriteLine($"# producer on core {ForeignTopology.ProducerCore}, consumer on core {ForeignTopology.ConsumerCore}; {samples} samples after >= {warmup} warm-up samples and 1 s; gap 0-{maxGapNs} ns; Stopwatch {Stopwatch.Frequency} Hz");
        Console.WriteLine();
        Console.WriteLine("| path | p50 | p90 | p99 | p99.9 | max | mean | allocated | gen0 GCs |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");

        long[] buffer = new long[samples];
        foreach (var path in LatencyPath.All())
        {
            if (only is not null && !only.Any(o => path.Name.Contains(o, StringComparison.OrdinalIgnoreCase)))
            {
                path.Dispose();
                continue;
            }
            var probe = new LatencyProbe();
            path.Start(probe);
            ForeignTopology.PinProducer();
            try
            {
                var sampler = new Sampler(path, probe, maxGapNs);
                long[] samplesOf = path.Samples is { } n && n < buffer.Length ? buffer[..n] : buffer;
                long warmupEnd = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
                int warmupOf = path.Warmup ?? warmup;
                for (int i = 0; i < warmupOf || Stopwatch.GetTimestamp() < warmupEnd; i++)
                {
                    sampler.One();
                }

                int gen0 = GC.CollectionCount(0);
                long allocated = GC.GetTotalAllocatedBytes(precise: true);
                for (int i = 0; i < samplesOf.Length; i++)
                {
                    samplesOf[i] = sampler.One();
                }
                allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated;
                gen0 = GC.CollectionCount(0) - gen0;

                Console.WriteLine(Row(path.Name, samplesOf, allocated, gen0));
            }
            finally
            {
                path.Dispose();
                ForeignTopology.Unpin();
            }
        }
        Console.WriteLine();
        Console.WriteLine("# one-way: send start (producer clock) -> callback start (consumer clock), CLOCK_MONOTONIC; values in µs");
        return 0;
    }

    private static string Row(string name, long[] ticks, long allocated, int gen0)
    {
        Array.Sort(ticks);
        var cells = new List<string> { name };
        foreach (double p in s_percentiles)
        {
            int index = Math.Clamp((int)Math.Ceiling(p * ticks.Length) - 1, 0, ticks.Length - 1);
            cells.Add(Micros(ticks[index]));
        }
        cells.Add(Micros(ticks[^1]));
        cells.Add(Micros(ticks.Average()));
        cells.Add($"{allocated} B");
        cells.Add(gen0.ToString(CultureInfo.InvariantCulture));
        return "| " + string.Join(" | ", cells) + " |";
    }

    private static string Micros(double ticks) =>
        (ticks * 1e6 / Stopwatch.Frequency).ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>The producer's loop body: gap, send, wait. Allocation-free.</summary>
    private sealed class Sampler(LatencyPath path, LatencyProbe probe, int maxGapNs)
    {
        private readonly long _maxGapTicks = Math.Max(1, maxGapNs * Stopwatch.Frequency / 1_000_000_000);
        private readonly long _minGapTicks = path.MinGapNs * Stopwatch.Frequency / 1_000_000_000;
        private ulong _rng = 0x9E3779B97F4A7C15; // xorshift64: fixed seed, same gaps every run
        private long _sent;

        public long One()
        {
            _rng ^= _rng << 13;
            _rng ^= _rng >> 7;
            _rng ^= _rng << 17;
            long until = Stopwatch.GetTimestamp() + _minGapTicks + (long)(_rng % (ulong)_maxGapTicks);
            while (Stopwatch.GetTimestamp() < until)
            {
            }

            long start = Stopwatch.GetTimestamp();
            path.Send();
            Spin.Until(ref probe.Done, ++_sent);
            return probe.LastStart - start;
        }
    }
}
