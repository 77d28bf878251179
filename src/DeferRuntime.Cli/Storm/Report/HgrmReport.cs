using System.Globalization;
using System.Text;
using HdrHistogram;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>
/// --hgrm DIR: per path and stage, the percentile distribution HdrHistogram's outputPercentileDistribution
/// writes (the .hgrm that HdrHistogram's online plotter reads), values in µs, 5 ticks per half distance.
/// Files: <c>[label-]path-stage.hgrm</c>, stage one of top-half, bh-start, bh-end.
/// </summary>
internal static class HgrmReport
{
    /// <summary>ns recorded, µs written.</summary>
    public const double NsPerUs = 1000.0;

    /// <summary>Writes the files; returns their paths.</summary>
    public static IReadOnlyList<string> Write(string directory, StormRunResult run)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        string prefix = run.Label == "storm" ? "" : PlotReport.Sanitize(run.Label) + "-";
        foreach (var path in run.Paths)
        {
            for (int stage = 0; stage < path.Histograms.Count; stage++)
            {
                string file = Path.Combine(directory, $"{prefix}{path.Name}-{IntervalLog.StageTags[stage]}.hgrm");
                File.WriteAllText(file, Render(path.Histograms[stage]), new UTF8Encoding(false));
                written.Add(file);
            }
        }
        return written;
    }

    /// <summary>The .hgrm text of <paramref name="histogram"/> (ns) in µs, '.' decimals whatever the culture.</summary>
    public static string Render(HistogramBase histogram)
    {
        using var text = new StringWriter(CultureInfo.InvariantCulture) { NewLine = "\n" };
        if (histogram.TotalCount == 0)
        {
            // Nothing recorded (napi's top half when every frame went through a poll): the header and an empty footer.
            text.Write("{0,12} {1,14} {2,10} {3,14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
            text.Write("#[Mean    = {0,12:F3}, StdDeviation   = {1,12:F3}]\n", 0.0, 0.0);
            text.Write("#[Max     = {0,12:F3}, Total count    = {1,12}]\n", 0.0, 0);
            text.Write("#[Buckets = {0,12}, SubBuckets     = {1,12}]\n", histogram.BucketCount, histogram.SubBucketCount);
            return text.ToString();
        }
        histogram.OutputPercentileDistribution(text, percentileTicksPerHalfDistance: 5, outputValueUnitScalingRatio: NsPerUs);
        return text.ToString();
    }
}
