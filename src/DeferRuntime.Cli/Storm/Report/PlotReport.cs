using HdrHistogram;
using ScottPlot;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>
/// --plot DIR: per path, a latency CDF and a histogram of the three stages as PNG (ScottPlot on
/// SkiaSharp). Latencies span decades, so both use a log10 µs axis labelled in µs.
/// </summary>
internal static class PlotReport
{
    private static readonly string[] StageNames = ["assert -> top half", "assert -> bottom-half start", "assert -> bottom-half end"];

    /// <summary>Writes the PNGs; returns their paths.</summary>
    public static IReadOnlyList<string> Write(string directory, StormRunResult run)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        string prefix = run.Label == "storm" ? "" : Sanitize(run.Label) + "-";
        foreach (var path in run.Paths)
        {
            string cdf = Path.Combine(directory, $"{prefix}{path.Name}-cdf.png");
            string hist = Path.Combine(directory, $"{prefix}{path.Name}-histogram.png");
            WriteCdf(cdf, path);
            WriteHistogram(hist, path);
            written.Add(cdf);
            written.Add(hist);
        }
        return written;
    }

    private static void WriteCdf(string file, PathResult path)
    {
        var plot = new Plot();
        for (int stage = 0; stage < path.Histograms.Count; stage++)
        {
            var h = path.Histograms[stage];
            if (h.TotalCount == 0)
            {
                continue;
            }
            var xs = new List<double>();
            var ys = new List<double>();
            long seen = 0;
            foreach (var v in h.RecordedValues())
            {
                seen += v.CountAtValueIteratedTo;
                xs.Add(Math.Log10(Math.Max(h.HighestEquivalentValue(v.ValueIteratedTo), 1) / 1000.0));
                ys.Add(100.0 * seen / h.TotalCount);
            }
            var line = plot.Add.ScatterLine(xs.ToArray(), ys.ToArray());
            line.LegendText = StageNames[stage];
            line.LineWidth = 2;
        }
        plot.Title($"{path.Name}: latency CDF ({path.BottomHalf})");
        plot.XLabel("latency, µs (log scale)");
        plot.YLabel("% of events at or below");
        LogAxis(plot);
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(file, 900, 560);
    }

    private static void WriteHistogram(string file, PathResult path)
    {
        var plot = new Plot();
        for (int stage = 0; stage < path.Histograms.Count; stage++)
        {
            var h = path.Histograms[stage];
            if (h.TotalCount == 0)
            {
                continue;
            }
            // 20 bins per decade over the recorded range, counts as a share of events.
            const double PerDecade = 20;
            var bins = new SortedDictionary<double, long>();
            foreach (var v in h.RecordedValues())
            {
                double x = Math.Log10(Math.Max(1, v.ValueIteratedTo) / 1000.0);
                double bin = Math.Floor(x * PerDecade) / PerDecade;
                bins[bin] = bins.GetValueOrDefault(bin) + v.CountAtValueIteratedTo;
            }
            var xs = bins.Keys.Select(k => k + (0.5 / PerDecade)).ToArray();
            var ys = bins.Values.Select(c => 100.0 * c / h.TotalCount).ToArray();
            var line = plot.Add.ScatterLine(xs, ys);
            line.LegendText = StageNames[stage];
            line.LineWidth = 2;
            line.MarkerSize = 4;
        }
        plot.Title($"{path.Name}: latency histogram ({path.BottomHalf})");
        plot.XLabel("latency, µs (log scale, 20 bins per decade)");
        plot.YLabel("% of events");
        LogAxis(plot);
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(file, 900, 560);
    }

    /// <summary>Data are log10(µs): tick at each decade, labelled in µs.</summary>
    private static void LogAxis(Plot plot)
    {
        var ticks = new ScottPlot.TickGenerators.NumericAutomatic
        {
            LabelFormatter = x => FormatUs(Math.Pow(10, x)),
            IntegerTicksOnly = true,
        };
        plot.Axes.Bottom.TickGenerator = ticks;
    }

    private static string FormatUs(double us) => us switch
    {
        >= 1_000_000 => $"{us / 1_000_000:G3} s",
        >= 1_000 => $"{us / 1_000:G3} ms",
        _ => $"{us:G3} µs",
    };

    internal static string Sanitize(string label) => string.Concat(label.Select(c => char.IsLetterOrDigit(c) || c == '-' ? c : '_'));
}
