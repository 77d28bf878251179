using DeferRuntime.Cli;
using DeferRuntime.Cli.Storm;
using DeferRuntime.Cli.Storm.Report;

namespace DeferRuntime.Tests.Cli;

/// <summary>--compare --repeat: the run plan, the statistics, the ratio format and the offered-load warning, on known inputs.</summary>
public sealed class StormCompareTests
{
    [Fact]
    public void Plan_alternates_the_sides_repeat_times_each()
    {
        var settings = new StormSettings
        {
            Preset = "gentle", Cpus = 2, Duration = TimeSpan.FromSeconds(1), Warmup = TimeSpan.Zero,
            Rates = StormPathKinds.All.ToDictionary(k => k, _ => 2_000.0),
            Arrival = DeferRuntime.Devices.StormArrival.Constant, BurstLength = 16,
            Paths = [StormPathKind.HardIrq], IdlePolicy = IdlePolicy.Hybrid, Pin = true, Priorities = PriorityPolicy.None,
            CpuNice = 0, KsoftirqdNice = 19, LetKsoftirqdDoItsJob = true, Work = TimeSpan.Zero, WatchdogThreshold = TimeSpan.FromSeconds(30),
            Faults = DeferRuntime.Cli.Storm.Faults.FaultPlan.Parse([]), Seed = 1, DrainTimeout = TimeSpan.FromSeconds(30), DeviceCores = "none",
        };
        var plan = StormCommand.Plan(settings, ("idle", "poll", "halt"), 3);
        Assert.Equal(["A1", "B1", "A2", "B2", "A3", "B3"], plan.Select(p => $"{p.Side}{p.Repeat}"));
        Assert.Equal(["idle=poll#1", "idle=halt#1", "idle=poll#2", "idle=halt#2", "idle=poll#3", "idle=halt#3"], plan.Select(p => p.Label));
        Assert.All(plan.Where(p => p.Side == "A"), p => Assert.Equal(IdlePolicy.Poll, p.Settings.IdlePolicy));
        Assert.All(plan.Where(p => p.Side == "B"), p => Assert.Equal(IdlePolicy.Halt, p.Settings.IdlePolicy));

        var single = Assert.Single(StormCommand.Plan(settings, null, 1));
        Assert.Equal("storm", single.Label);
        Assert.Null(single.Side);
    }

    [Theory]
    [InlineData(new double[] { 5 }, 5, 5, 5)]
    [InlineData(new double[] { 3, 1, 2 }, 2, 1, 3)]
    [InlineData(new double[] { 4, 1, 3, 2 }, 2.5, 1, 4)]
    [InlineData(new double[] { 10, 1000, 10, 12, 11 }, 11, 10, 1000)]
    public void Summary_is_the_median_and_the_range(double[] values, double median, double min, double max)
    {
        var s = CompareStats.Summarize(values);
        Assert.Equal(median, s.Median);
        Assert.Equal(min, s.Min);
        Assert.Equal(max, s.Max);
        Assert.Equal(values.Length, s.Count);
    }

    [Theory]
    [InlineData(43.8 / 27_017, "0.00162x")]
    [InlineData(1.2345, "1.23x")]
    [InlineData(1, "1.00x")]
    [InlineData(0.5, "0.500x")]
    [InlineData(12.34, "12.3x")]
    [InlineData(123.4, "123x")]
    [InlineData(4567.8, "4568x")]
    [InlineData(0.0009996, "0.00100x")]
    [InlineData(0.000001234, "0.00000123x")]
    [InlineData(0, "0x")]
    public void Ratios_keep_three_significant_digits(double ratio, string expected) =>
        Assert.Equal(expected, CompareStats.FormatRatio(ratio));

    [Theory]
    [InlineData(1e-3)]
    [InlineData(4.9e-3)]
    [InlineData(1e-5)]
    [InlineData(1e-12)]
    public void A_non_zero_ratio_never_prints_as_zero(double ratio)
    {
        string text = CompareStats.FormatRatio(ratio);
        Assert.DoesNotContain("0.00x", text, StringComparison.Ordinal);
        Assert.NotEqual(0, double.Parse(text.TrimEnd('x'), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Build_reports_medians_ranges_and_the_ratio_of_medians()
    {
        var a = new[] { Run("A", 1, 2000, 27_000), Run("A", 2, 2000, 27_017), Run("A", 3, 2000, 30_000) };
        var b = new[] { Run("B", 1, 2000, 40), Run("B", 2, 2000, 43.8), Run("B", 3, 2000, 50) };
        var c = CompareReport.Build("idle", a, b);
        var row = c.Rows.Single(r => r.Path == "tasklet" && r.Metric == "end p99 µs");
        Assert.Equal(27_017, row.A);
        Assert.Equal(27_000, row.AMin);
        Assert.Equal(30_000, row.AMax);
        Assert.Equal(43.8, row.B);
        Assert.Equal(40, row.BMin);
        Assert.Equal(50, row.BMax);
        Assert.Equal(43.8 / 27_017, row.Ratio!.Value, 12);
        Assert.Equal("idle=poll", c.A);
        Assert.Equal("idle=halt", c.B);
        Assert.Equal(3, c.RepeatsA);
        Assert.Null(c.OfferedLoadWarning);

        string output = Render(c);
        Assert.Contains("0.00162x", output, StringComparison.Ordinal);
        Assert.DoesNotContain(" 0.00 ", output, StringComparison.Ordinal);
        Assert.Contains("27,000.0-30,000.0", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Different_offered_loads_give_a_warning()
    {
        // Medians 2,000 against 1,800 events/s: 10% apart.
        var a = new[] { Run("A", 1, 2000, 10), Run("A", 2, 1990, 10), Run("A", 3, 2010, 10) };
        var b = new[] { Run("B", 1, 1800, 10), Run("B", 2, 2050, 10), Run("B", 3, 1700, 10) };
        var c = CompareReport.Build("idle", a, b);
        Assert.Equal(2000, c.AchievedRateA);
        Assert.Equal(1800, c.AchievedRateB);
        Assert.NotNull(c.OfferedLoadWarning);
        Assert.Contains("different loads", c.OfferedLoadWarning, StringComparison.Ordinal);

        Assert.Contains("different loads", Render(c), StringComparison.Ordinal);

        // Within 5%: no warning.
        Assert.Null(CompareStats.OfferedLoadWarning(2000, 2090));
        Assert.Null(CompareStats.OfferedLoadWarning(2000, 1910));
        Assert.NotNull(CompareStats.OfferedLoadWarning(2000, 2110));
        Assert.NotNull(CompareStats.OfferedLoadWarning(0, 10));
        Assert.Null(CompareStats.OfferedLoadWarning(0, 0));
    }

    private static string Render(ComparisonResult c)
    {
        var output = new StringWriter();
        var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Ansi = Spectre.Console.AnsiSupport.No,
            ColorSystem = Spectre.Console.ColorSystemSupport.NoColors,
            Out = new Spectre.Console.AnsiConsoleOutput(output),
        });
        console.Profile.Width = 200;
        CompareReport.Render(console, c);
        return output.ToString();
    }

    private static StormRunResult Run(string side, int repeat, double achievedRate, double endP99Us)
    {
        var stats = new LatencyStats(100, 1, 2, endP99Us, endP99Us, endP99Us, endP99Us, 1);
        var path = new PathResult("tasklet", "tasklet", 10, 2000, 100, 100, 0, 0, 100, 0, 100, 0, 10, 10, 2000, 0, stats, stats, stats);
        var generator = new GeneratorInfo(2000, achievedRate, 1, false, 0, 0, 0, null, 0, 0, 0, "normal");
        string label = (side == "A" ? "idle=poll" : "idle=halt") + "#" + repeat;
        return new StormRunResult(label, true, [], null!, null!, [], generator, [path], new TotalsInfo(100, 100, 0, 0), [], [], null, null, null!, null!, null!)
        {
            Side = side,
            Repeat = repeat,
        };
    }
}
