using System.Globalization;
using Spectre.Console;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>The median and range of one figure over a side's repeats.</summary>
internal readonly record struct SampleSummary(double Median, double Min, double Max, int Count);

/// <summary>--compare statistics: medians and ranges over the repeats, ratios with enough digits, the offered-load check.</summary>
internal static class CompareStats
{
    /// <summary>The sides' achieved event rates (medians) may differ by this fraction before the report warns.</summary>
    public const double OfferedLoadTolerance = 0.05;

    /// <summary>Median (the mean of the middle two for an even count), min and max; all 0 for no values.</summary>
    public static SampleSummary Summarize(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            return new SampleSummary(0, 0, 0, 0);
        }
        int mid = sorted.Length / 2;
        double median = sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
        return new SampleSummary(median, sorted[0], sorted[^1], sorted.Length);
    }

    /// <summary>A ratio to 3 significant digits, never "0.00" for a non-zero value: 0.00162x, 1.23x, 123x.</summary>
    public static string FormatRatio(double ratio)
    {
        var inv = CultureInfo.InvariantCulture;
        if (!double.IsFinite(ratio))
        {
            return ratio.ToString(inv) + "x";
        }
        if (ratio == 0)
        {
            return "0x";
        }
        double magnitude = Math.Abs(ratio);
        if (magnitude < 1e-9)
        {
            return ratio.ToString("G3", inv) + "x";
        }
        int decimals = Math.Max(0, 2 - (int)Math.Floor(Math.Log10(magnitude)));
        // Rounding may carry into a new digit (0.0009996 -> 0.001000): one decimal fewer keeps 3 significant digits.
        double rounded = Math.Round(magnitude, decimals, MidpointRounding.AwayFromZero);
        if (decimals > 0 && rounded > 0 && Math.Floor(Math.Log10(rounded)) > Math.Floor(Math.Log10(magnitude)))
        {
            decimals--;
        }
        return ratio.ToString("F" + decimals.ToString(inv), inv) + "x";
    }

    /// <summary>
    /// The warning when the sides were offered different loads: the medians of the generator's achieved rate
    /// differ by more than <see cref="OfferedLoadTolerance"/> of A's; null when they do not.
    /// </summary>
    public static string? OfferedLoadWarning(double achievedA, double achievedB)
    {
        if (achievedA == achievedB)
        {
            return null;
        }
        double diff = achievedA == 0 ? double.PositiveInfinity : Math.Abs(achievedB - achievedA) / achievedA;
        if (diff <= OfferedLoadTolerance)
        {
            return null;
        }
        var inv = CultureInfo.InvariantCulture;
        string pct = double.IsFinite(diff) ? (diff * 100).ToString("0.#", inv) + "%" : "all";
        return string.Create(inv, $"warning: the sides were offered different loads: the generator achieved {achievedA:N0} events/s under A and {achievedB:N0} under B (medians, {pct} apart, more than {OfferedLoadTolerance * 100:0}%); the latencies compare different storms");
    }
}

/// <summary>--compare: per path, the median and range of each figure under A and B over the repeats, and the ratio of the medians B / A.</summary>
internal static class CompareReport
{
    public static ComparisonResult Build(string key, StormRunResult a, StormRunResult b) => Build(key, [a], [b]);

    /// <summary>The comparison of A's runs against B's (each side its own repeats, in any order).</summary>
    public static ComparisonResult Build(string key, IReadOnlyList<StormRunResult> aRuns, IReadOnlyList<StormRunResult> bRuns)
    {
        if (aRuns.Count == 0 || bRuns.Count == 0)
        {
            throw new ArgumentException("--compare needs at least one run per side");
        }
        var rows = new List<RatioRow>();
        void Add(string path, string metric, Func<StormRunResult, double?> figure)
        {
            var xs = aRuns.Select(figure).ToArray();
            var ys = bRuns.Select(figure).ToArray();
            if (xs.Any(v => v is null) || ys.Any(v => v is null))
            {
                return;
            }
            var sa = CompareStats.Summarize(xs.Select(v => v!.Value));
            var sb = CompareStats.Summarize(ys.Select(v => v!.Value));
            rows.Add(new RatioRow(path, metric, sa.Median, sb.Median, sa.Median == 0 ? null : sb.Median / sa.Median)
            {
                AMin = sa.Min, AMax = sa.Max, BMin = sb.Min, BMax = sb.Max,
            });
        }
        var first = aRuns[0];
        foreach (var pa in first.Paths)
        {
            string name = pa.Name;
            if (bRuns.Any(r => r.Paths.All(p => p.Name != name)) || aRuns.Any(r => r.Paths.All(p => p.Name != name)))
            {
                continue;
            }
            PathResult P(StormRunResult r) => r.Paths.First(p => p.Name == name);
            Add(name, "handled/s", r => P(r).ThroughputPerSecond);
            Add(name, "top p50 µs", r => P(r).TopHalf.P50Us);
            Add(name, "top p99 µs", r => P(r).TopHalf.P99Us);
            Add(name, "start p50 µs", r => P(r).BottomHalfStart.P50Us);
            Add(name, "start p99 µs", r => P(r).BottomHalfStart.P99Us);
            Add(name, "end p50 µs", r => P(r).BottomHalfEnd.P50Us);
            Add(name, "end p99 µs", r => P(r).BottomHalfEnd.P99Us);
            Add(name, "end p99.9 µs", r => P(r).BottomHalfEnd.P999Us);
            Add(name, "end max µs", r => P(r).BottomHalfEnd.MaxUs);
            // The rows above are from the intended time; the same without the device's lag, and that lag.
            Add(name, "end p99 µs (assert)", r => P(r).BottomHalfEndFromAssert?.P99Us);
            Add(name, "gen lag p99 µs", r => P(r).GeneratorLag?.P99Us);
        }
        static double Sum(StormRunResult r, Func<CpuTimeInfo, double?> part) => r.Cpus.Sum(c => part(c.Time) ?? 0);
        Add("all CPUs", "cpu/N thread CPU ms", r => Sum(r, t => t.CpuThreadMs));
        Add("all CPUs", "hard-IRQ ms", r => Sum(r, t => t.HardIrqMs));
        Add("all CPUs", "softirq ms", r => Sum(r, t => t.SoftirqMs));
        Add("all CPUs", "ksoftirqd CPU ms", r => Sum(r, t => t.KsoftirqdMs));
        Add("all CPUs", "kworkers CPU ms", r => Sum(r, t => t.WorkersMs));

        var rateA = CompareStats.Summarize(aRuns.Select(r => r.Generator.AchievedRate));
        var rateB = CompareStats.Summarize(bRuns.Select(r => r.Generator.AchievedRate));
        // The side's label without the repeat ("idle=poll#2" -> "idle=poll").
        static string Value(StormRunResult r) => r.Repeat is not null && r.Label.LastIndexOf('#') is > 0 and var i ? r.Label[..i] : r.Label;
        return new ComparisonResult(key, Value(aRuns[0]), Value(bRuns[0]), rows)
        {
            RepeatsA = aRuns.Count,
            RepeatsB = bRuns.Count,
            AchievedRateA = rateA.Median,
            AchievedRateB = rateB.Median,
            OfferedLoadWarning = CompareStats.OfferedLoadWarning(rateA.Median, rateB.Median),
        };
    }

    public static void Render(IAnsiConsole console, ComparisonResult comparison)
    {
        var inv = CultureInfo.InvariantCulture;
        bool ranges = comparison.RepeatsA > 1 || comparison.RepeatsB > 1;
        string of = ranges ? $" (medians of {comparison.RepeatsA} and {comparison.RepeatsB} runs, alternating A, B)" : "";
        var table = new Table().Border(TableBorder.Simple).Title(Markup.Escape($"compare {comparison.Key}: B / A (A = {comparison.A}, B = {comparison.B}){of}"));
        table.AddColumn("path");
        table.AddColumn("metric");
        table.AddColumn(new TableColumn(Markup.Escape(ranges ? $"A: {comparison.A} median" : $"A: {comparison.A}")).RightAligned());
        if (ranges)
        {
            table.AddColumn(new TableColumn("A min-max").RightAligned());
        }
        table.AddColumn(new TableColumn(Markup.Escape(ranges ? $"B: {comparison.B} median" : $"B: {comparison.B}")).RightAligned());
        if (ranges)
        {
            table.AddColumn(new TableColumn("B min-max").RightAligned());
        }
        table.AddColumn(new TableColumn("B / A").RightAligned());
        string last = "";
        foreach (var row in comparison.Rows)
        {
            var cells = new List<string> { row.Path == last ? "" : row.Path, Markup.Escape(row.Metric), row.A.ToString("N1", inv) };
            if (ranges)
            {
                cells.Add(Range(row.AMin ?? row.A, row.AMax ?? row.A));
            }
            cells.Add(row.B.ToString("N1", inv));
            if (ranges)
            {
                cells.Add(Range(row.BMin ?? row.B, row.BMax ?? row.B));
            }
            cells.Add(row.Ratio is { } r ? CompareStats.FormatRatio(r) : "-");
            table.AddRow(cells.ToArray());
            last = row.Path;
        }
        console.Write(table);
        if (comparison.OfferedLoadWarning is { } warning)
        {
            console.MarkupLine("[yellow]" + Markup.Escape(warning) + "[/]");
        }

        static string Range(double min, double max) => string.Create(CultureInfo.InvariantCulture, $"{min:N1}-{max:N1}");
    }
}
