using System.Globalization;
using Spectre.Console;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>--compare: the ratio table of run B against run A, per path, for throughput and the latency percentiles that matter.</summary>
internal static class CompareReport
{
    public static ComparisonResult Build(string key, StormRunResult a, StormRunResult b)
    {
        var rows = new List<RatioRow>();
        foreach (var pa in a.Paths)
        {
            var pb = b.Paths.FirstOrDefault(p => p.Name == pa.Name);
            if (pb is null)
            {
                continue;
            }
            void Add(string metric, double x, double y) => rows.Add(new RatioRow(pa.Name, metric, x, y, x == 0 ? null : y / x));
            Add("handled/s", pa.ThroughputPerSecond, pb.ThroughputPerSecond);
            Add("top p50 µs", pa.TopHalf.P50Us, pb.TopHalf.P50Us);
            Add("top p99 µs", pa.TopHalf.P99Us, pb.TopHalf.P99Us);
            Add("end p50 µs", pa.BottomHalfEnd.P50Us, pb.BottomHalfEnd.P50Us);
            Add("end p99 µs", pa.BottomHalfEnd.P99Us, pb.BottomHalfEnd.P99Us);
            Add("end p99.9 µs", pa.BottomHalfEnd.P999Us, pb.BottomHalfEnd.P999Us);
            Add("end max µs", pa.BottomHalfEnd.MaxUs, pb.BottomHalfEnd.MaxUs);
            // The rows above are from the intended time; the same without the device's lag, and that lag.
            if (pa.BottomHalfEndFromAssert is { } ea && pb.BottomHalfEndFromAssert is { } eb)
            {
                Add("end p99 µs (assert)", ea.P99Us, eb.P99Us);
            }
            if (pa.GeneratorLag is { } ga && pb.GeneratorLag is { } gb)
            {
                Add("gen lag p99 µs", ga.P99Us, gb.P99Us);
            }
        }
        static double Sum(StormRunResult r, Func<CpuTimeInfo, double?> part) => r.Cpus.Sum(c => part(c.Time) ?? 0);
        void AddCpu(string metric, Func<CpuTimeInfo, double?> part)
        {
            double x = Sum(a, part), y = Sum(b, part);
            rows.Add(new RatioRow("all CPUs", metric, x, y, x == 0 ? null : y / x));
        }
        AddCpu("cpu/N thread CPU ms", t => t.CpuThreadMs);
        AddCpu("hard-IRQ ms", t => t.HardIrqMs);
        AddCpu("softirq ms", t => t.SoftirqMs);
        AddCpu("ksoftirqd CPU ms", t => t.KsoftirqdMs);
        AddCpu("kworkers CPU ms", t => t.WorkersMs);
        return new ComparisonResult(key, a.Label, b.Label, rows);
    }

    public static void Render(IAnsiConsole console, ComparisonResult comparison)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().Border(TableBorder.Simple).Title(Markup.Escape($"compare {comparison.Key}: B / A (A = {comparison.A}, B = {comparison.B})"));
        table.AddColumn("path");
        table.AddColumn("metric");
        table.AddColumn(new TableColumn(Markup.Escape($"A: {comparison.A}")).RightAligned());
        table.AddColumn(new TableColumn(Markup.Escape($"B: {comparison.B}")).RightAligned());
        table.AddColumn(new TableColumn("B / A").RightAligned());
        string last = "";
        foreach (var row in comparison.Rows)
        {
            table.AddRow(row.Path == last ? "" : row.Path, Markup.Escape(row.Metric), row.A.ToString("N1", inv), row.B.ToString("N1", inv),
                row.Ratio is { } r ? r.ToString("0.00", inv) : "-");
            last = row.Path;
        }
        console.Write(table);
    }
}
