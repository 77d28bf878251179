using System.Diagnostics;
using System.Runtime.CompilerServices;
using HdrHistogram;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>The three latency stages of an event, each measured from the device's assertion.</summary>
internal enum LatencyStage
{
    /// <summary>Assert to the first instruction of the top half (hard-IRQ handler) that took the event.</summary>
    TopHalf,
    /// <summary>Assert to the start of the bottom-half batch that processed it.</summary>
    BottomHalfStart,
    /// <summary>Assert to the end of that batch: the event's work is done.</summary>
    BottomHalfEnd,
}

/// <summary>
/// Per-path latency: one HdrHistogram per stage and per CPU, all allocated before the storm, so that
/// recording on the hot path is an array increment (no allocation, no lock, no atomic).
/// </summary>
/// <remarks>
/// One writer per histogram: a stage is written by one kind of context of the path (its top half, whose
/// runs on a line never overlap, or its bottom half, whose runs never overlap except a softirq on
/// different CPUs), and each CPU has its own histogram. Threads of no CPU use the extra last slot.
/// Readers merge after the storm has drained, when no writer is left.
/// </remarks>
internal sealed class StageHistograms
{
    /// <summary>Largest latency recorded as itself (60 s); longer ones are clamped to it and counted.</summary>
    public const long HighestNs = 60_000_000_000;

    // Stopwatch ticks to ns: exact (1) on Linux, where the Stopwatch frequency is 1 GHz.
    private static readonly double NsPerTick = 1e9 / Stopwatch.Frequency;

    private readonly LongHistogram[][] _byStage; // I: [stage][cpu or the last slot]
    private long _clamped; // writers only, racy increments are fine: a diagnostic

    public StageHistograms(int cpuCount)
    {
        _byStage = new LongHistogram[3][];
        for (int stage = 0; stage < _byStage.Length; stage++)
        {
            _byStage[stage] = new LongHistogram[cpuCount + 1];
            for (int cpu = 0; cpu <= cpuCount; cpu++)
            {
                _byStage[stage][cpu] = new LongHistogram(1, HighestNs, 3);
            }
        }
    }

    /// <summary>Latencies longer than <see cref="HighestNs"/>, recorded as it.</summary>
    public long Clamped => Volatile.Read(ref _clamped);

    /// <summary>Records <paramref name="now"/> - <paramref name="asserted"/> (Stopwatch ticks) for <paramref name="stage"/> on <paramref name="cpu"/> (-1: no CPU). PERF: allocation-free.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Record(LatencyStage stage, int cpu, long now, long asserted)
    {
        var row = _byStage[(int)stage];
        long ns = (long)((now - asserted) * NsPerTick);
        if (ns < 1)
        {
            ns = 1; // same clock read twice, or a stamp taken an instant after ours on another core
        }
        else if (ns > HighestNs)
        {
            ns = HighestNs;
            _clamped++;
        }
        row[(uint)cpu < (uint)(row.Length - 1) ? cpu : row.Length - 1].RecordValue(ns);
    }

    /// <summary>Clears every histogram (after the warm-up), with no writer running.</summary>
    public void Reset()
    {
        foreach (var row in _byStage)
        {
            foreach (var h in row)
            {
                h.Reset();
            }
        }
        _clamped = 0;
    }

    /// <summary>One stage over all CPUs, in ns. Call once the storm has drained.</summary>
    public LongHistogram Merge(LatencyStage stage)
    {
        var merged = new LongHistogram(1, HighestNs, 3);
        MergeInto(stage, merged);
        return merged;
    }

    /// <summary>
    /// Resets <paramref name="target"/> (of the same range) to one stage over all CPUs, without allocating.
    /// During the storm the writers still run: each bucket is read once, at some moment (counts only grow).
    /// </summary>
    public void MergeInto(LatencyStage stage, LongHistogram target)
    {
        target.Reset();
        foreach (var h in _byStage[(int)stage])
        {
            target.Add(h);
        }
    }
}
