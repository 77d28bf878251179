using System.Globalization;

namespace DeferRuntime.Torture;

/// <summary>
/// struct lock_stress_stats summed over one side of a lock (writers or readers), as locktorture's
/// __torture_print_stats() prints it: total acquisitions, the most and fewest of any one thread, and the
/// exclusion violations seen.
/// </summary>
public sealed class AcquisitionStats
{
    /// <summary>Acquisitions of every thread of this side.</summary>
    public long Total { get; init; }

    /// <summary>The most acquisitions of any one thread.</summary>
    public long Max { get; init; }

    /// <summary>The fewest acquisitions of any one thread.</summary>
    public long Min { get; init; }

    /// <summary>n_lock_fail summed: exclusion violations the threads of this side saw.</summary>
    public long Fail { get; init; }

    /// <summary>Acquisitions per thread, by thread number.</summary>
    public IReadOnlyList<long> PerThread { get; init; } = [];

    /// <summary>
    /// locktorture's "???": max/2 &gt; min, some thread got less than half the acquisitions of the luckiest.
    /// A flag in the output, not a failure, as in locktorture: fairness depends on the machine's load.
    /// </summary>
    public bool Unfair => Max / 2 > Min;

    internal static AcquisitionStats From(long[] acquired, long[] fails) => new()
    {
        Total = acquired.Sum(),
        Max = acquired.Length == 0 ? 0 : acquired.Max(),
        Min = acquired.Length == 0 ? 0 : acquired.Min(),
        Fail = fails.Sum(),
        PerThread = acquired,
    };

    /// <summary>"Writes:  Total: 93746064  Max/Min: 23456789/23000000   Fail: 0", as locktorture prints it.</summary>
    internal string Render(bool write) => string.Create(CultureInfo.InvariantCulture,
        $"{(write ? "Writes" : "Reads ")}:  Total: {Total}  Max/Min: {Max}/{Min} {(Unfair ? "???" : "")}  Fail: {Fail} {(Fail != 0 ? "!!!" : "")}").TrimEnd();
}
