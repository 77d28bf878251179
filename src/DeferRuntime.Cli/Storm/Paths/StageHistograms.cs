using System.Diagnostics;
using System.Runtime.CompilerServices;
using HdrHistogram;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>The three latency stages of an event, each measured from its intended time (when the device was due to raise it) and from its actual assertion.</summary>
internal enum LatencyStage
{
    /// <summary>To the top half (hard-IRQ handler) taking the event: its entry, or, for an event asserted while it ran, the moment it took it.</summary>
    TopHalf,
    /// <summary>To the start of the bottom-half batch that processed it.</summary>
    BottomHalfStart,
    /// <summary>To the end of that batch: the event's work is done.</summary>
    BottomHalfEnd,
}

/// <summary>
/// Per-path latency: one HdrHistogram per stage, per view (from the intended time, from the assert) and
/// per CPU, plus one of the generator's lag (intended to assert), all allocated before the storm, so that
/// recording on the hot path is an array increment (no allocation, no lock, no atomic).
/// </summary>
/// <remarks>
/// One writer per histogram: a stage is written by one kind of context of the path (its top half, whose
/// runs on a line never overlap, or its bottom half, whose runs never overlap except a softirq on
/// different CPUs), and each CPU has its own histogram. Threads of no CPU use the extra last slot.
/// The generator-lag histogram is written where events are taken from the device (a line's top half, the
/// NIC's poll), which never runs concurrently with itself. Readers merge after the storm has drained,
/// when no writer is left.
/// <para>No sample is clamped: each stage's stamp is taken for the event it measures (a top half re-reads
/// the clock for an event asserted after its entry stamp), so a stamp at or before the event's assert is
/// a bug, counted in <see cref="Unordered"/> (and recorded as 0).</para>
/// </remarks>
internal sealed class StageHistograms
{
    /// <summary>Largest latency recorded as itself (60 s); longer ones are clamped to it and counted.</summary>
    public const long HighestNs = 60_000_000_000;

    // Stopwatch ticks to ns: exact (1) on Linux, where the Stopwatch frequency is 1 GHz.
    private static readonly double NsPerTick = 1e9 / Stopwatch.Frequency;

    private const int Stages = 3;

    private readonly LongHistogram[][] _byStage; // I: [stage, from intended; then stage, from assert][cpu or the last slot]
    private readonly LongHistogram _generatorLag; // I: intended -> assert, one writer at a time (see remarks)
    private readonly long[] _unordered = new long[Stages]; // writers only, racy increments are fine: a diagnostic
    private long _clamped; // likewise

    public StageHistograms(int cpuCount)
    {
        _byStage = new LongHistogram[Stages * 2][];
        for (int stage = 0; stage < _byStage.Length; stage++)
        {
            _byStage[stage] = new LongHistogram[cpuCount + 1];
            for (int cpu = 0; cpu <= cpuCount; cpu++)
            {
                _byStage[stage][cpu] = new LongHistogram(1, HighestNs, 3);
            }
        }
        _generatorLag = new LongHistogram(1, HighestNs, 3);
    }

    /// <summary>Latencies longer than <see cref="HighestNs"/>, recorded as it.</summary>
    public long Clamped => Volatile.Read(ref _clamped);

    /// <summary>Samples of <paramref name="stage"/> whose stamp was not after the event's assert (a stamp not taken for its event): 0 unless the clock misbehaves.</summary>
    public long Unordered(LatencyStage stage) => Volatile.Read(ref _unordered[(int)stage]);

    /// <summary>
    /// Records <paramref name="now"/> - <paramref name="intended"/> and <paramref name="now"/> - <paramref name="asserted"/>
    /// (Stopwatch ticks) for <paramref name="stage"/> on <paramref name="cpu"/> (-1: no CPU). PERF: allocation-free.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Record(LatencyStage stage, int cpu, long now, long intended, long asserted)
    {
        if (now <= asserted)
        {
            _unordered[(int)stage]++;
        }
        int slot = (uint)cpu < (uint)(_byStage[0].Length - 1) ? cpu : _byStage[0].Length - 1;
        _byStage[(int)stage][slot].RecordValue(Ns(now - intended));
        _byStage[Stages + (int)stage][slot].RecordValue(Ns(now - asserted));
    }

    /// <summary>Records the generator's lag for one event: <paramref name="asserted"/> - <paramref name="intended"/>. PERF: allocation-free.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void RecordGeneratorLag(long intended, long asserted) => _generatorLag.RecordValue(Ns(asserted - intended));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long Ns(long ticks)
    {
        long ns = (long)(ticks * NsPerTick);
        if (ns < 0)
        {
            return 0; // counted in Unordered by the caller
        }
        if (ns > HighestNs)
        {
            _clamped++;
            return HighestNs;
        }
        return ns;
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
        _generatorLag.Reset();
        Array.Clear(_unordered);
        _clamped = 0;
    }

    /// <summary>One stage over all CPUs, in ns, from the intended time (or from the assert). Call once the storm has drained.</summary>
    public LongHistogram Merge(LatencyStage stage, bool fromAssert = false)
    {
        var merged = new LongHistogram(1, HighestNs, 3);
        MergeInto(stage, merged, fromAssert);
        return merged;
    }

    /// <summary>
    /// Resets <paramref name="target"/> (of the same range) to one stage over all CPUs, without allocating.
    /// During the storm the writers still run: each bucket is read once, at some moment (counts only grow).
    /// </summary>
    public void MergeInto(LatencyStage stage, LongHistogram target, bool fromAssert = false)
    {
        target.Reset();
        foreach (var h in _byStage[(fromAssert ? Stages : 0) + (int)stage])
        {
            target.Add(h);
        }
    }

    /// <summary>The generator's lag (intended to assert), in ns. Call once the storm has drained.</summary>
    public LongHistogram MergeGeneratorLag()
    {
        var merged = new LongHistogram(1, HighestNs, 3);
        merged.Add(_generatorLag);
        return merged;
    }
}
