using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DeferRuntime.Cli;
using HdrHistogram;

namespace DeferRuntime.Tests.Cli;

/// <summary>
/// deferrt's command-line conventions: errors on stderr with exit 2 and no stack trace or .NET type name,
/// output paths checked before the storm starts, exit 3 when an output cannot be written after the run,
/// usage for no command and for `help`; the HdrHistogram outputs (.hgrm, interval log) and the report in
/// 80 columns. Every verdict is a count, a text or an exit code.
/// </summary>
public sealed class CliHygieneTests : IDisposable
{
    private static readonly string[] Small =
        ["storm", "--cpus", "2", "--duration", "0.3", "--warmup", "0.05", "--rate", "400", "--priorities", "none", "--no-progress"];

    private readonly string _dir = Directory.CreateTempSubdirectory("deferrt-cli-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The small storm, less the options <paramref name="extra"/> sets itself, then <paramref name="extra"/>.</summary>
    private static string[] Storm(params string[] extra)
    {
        var args = new List<string> { Small[0] };
        for (int i = 1; i < Small.Length; i++)
        {
            bool hasValue = i + 1 < Small.Length && !Small[i + 1].StartsWith("--", StringComparison.Ordinal);
            if (!extra.Contains(Small[i]))
            {
                args.Add(Small[i]);
                if (hasValue)
                {
                    args.Add(Small[i + 1]);
                }
            }
            i += hasValue ? 1 : 0;
        }
        return [.. args, .. extra];
    }

    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = CliApp.Run(args, output, error);
        return (exit, output.ToString(), error.ToString());
    }

    private static void AssertCleanError(string err)
    {
        Assert.StartsWith("error: ", err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal); // a stack trace
        Assert.DoesNotContain("System.", err, StringComparison.Ordinal); // a .NET type name
        Assert.DoesNotContain("Exception", err, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> BadOutputPaths() => new()
    {
        { "--json", "{file}/sub/report.json" },
        { "--json", "{dir}" },
        { "--csv", "{file}/report.csv" },
        { "--plot", "{file}" },
        { "--plot", "{file}/plots" },
        { "--hgrm", "{file}/hgrm" },
        { "--histogram-log", "{file}/x/latency.hlog" },
    };

    [Theory]
    [MemberData(nameof(BadOutputPaths))]
    public void A_bad_output_path_fails_before_the_storm_with_exit_2(string option, string template)
    {
        string file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "not a directory");
        string path = template.Replace("{file}", file, StringComparison.Ordinal).Replace("{dir}", _dir, StringComparison.Ordinal);
        _ = Run("storm", "--cpus", "abc"); // JIT the parser: the clock below times the check, not the first call

        var clock = Stopwatch.StartNew();
        var (exit, output, err) = Run(Storm("--duration", "30", option, path));
        clock.Stop();

        Assert.Equal(2, exit);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}: the storm ran before the check");
        AssertCleanError(err);
        Assert.Contains(option, err, StringComparison.Ordinal);
        Assert.DoesNotContain("deferrt storm:", output, StringComparison.Ordinal);
        Assert.Equal("not a directory", File.ReadAllText(file));
    }

    [Fact]
    public void The_check_leaves_nothing_behind_and_keeps_an_existing_report()
    {
        string existing = Path.Combine(_dir, "old.json");
        File.WriteAllText(existing, "old");
        // A bad --csv after good ones: the check of --json and --hgrm ran and must have removed what it created.
        var (exit, _, _) = Run([.. Small, "--json", Path.Combine(_dir, "new", "deep", "r.json"), "--hgrm", Path.Combine(_dir, "h"), "--csv", _dir]);
        Assert.Equal(2, exit);
        Assert.False(Directory.Exists(Path.Combine(_dir, "new")));
        Assert.False(Directory.Exists(Path.Combine(_dir, "h")));
        var (exit2, _, _) = Run([.. Small, "--json", existing, "--csv", _dir]);
        Assert.Equal(2, exit2);
        Assert.Equal("old", File.ReadAllText(existing));
    }

    [Fact]
    public void An_output_that_cannot_be_written_after_the_run_exits_3()
    {
        // The check passes (the directory can be created); once the storm has started, a file takes the
        // directory's name, so writing the report fails: exit 3, the reason on stderr, no stack trace.
        string sub = Path.Combine(_dir, "sub");
        var output = new CallbackWriter("deferrt storm:", () => File.WriteAllText(sub, "in the way"));
        var error = new StringWriter();
        int exit = CliApp.Run([.. Small, "--paths", "hardirq", "--json", Path.Combine(sub, "report.json")], output, error);
        Assert.True(output.Fired, output.ToString());
        Assert.Equal(3, exit);
        AssertCleanError(error.ToString());
        Assert.Contains("--json", error.ToString(), StringComparison.Ordinal);
        Assert.Contains("PASS", output.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--cpus 1000", "--cpus 1000: must be 1 to")]
    [InlineData("--cpus 0", "--cpus 0: must be 1 to")]
    [InlineData("--cpus abc", "--cpus 'abc': expected a whole number")]
    [InlineData("--duration x", "--duration 'x': expected a number")]
    [InlineData("--rate 1e12", "at most 10,000,000 events per second")]
    [InlineData("--rate -1", "--rate -1: must be more than 0")]
    [InlineData("--rates tasklet=2e7", "at most 10,000,000")]
    [InlineData("--warmup -1", "--warmup must be 0 or more")]
    [InlineData("--compare cpus=1,1000", "--compare cpus 1000: must be 1 to")]
    public void Storm_ranges_are_checked_with_a_clear_message(string args, string message)
    {
        var (exit, output, err) = Run(["storm", .. args.Split(' ')]);
        Assert.Equal(2, exit);
        AssertCleanError(err);
        Assert.Contains(message, err, StringComparison.Ordinal);
        Assert.Contains("run 'deferrt storm --help'", err, StringComparison.Ordinal);
        Assert.Equal("", output);
    }

    [Theory]
    [InlineData("--fault-every -1", "--fault-every -1: must be 0 (off) or more")]
    [InlineData("--cpus 1000", "--cpus 1000: must be 1 to")]
    [InlineData("--writers 0", "--writers 0: must be 1 to")]
    [InlineData("--long-hold-probability 2", "must be 0 to 1")]
    [InlineData("--stutter-ms -5", "--stutter-ms must be 0 (off)")]
    [InlineData("--json /dev/null/x.json", "--json /dev/null/x.json")]
    public void Torture_ranges_are_checked_with_a_clear_message(string args, string message)
    {
        var (exit, output, err) = Run(["torture", .. args.Split(' ')]);
        Assert.Equal(2, exit);
        AssertCleanError(err);
        Assert.Contains(message, err, StringComparison.Ordinal);
        Assert.Equal("", output);
    }

    [Fact]
    public void No_command_prints_the_usage_on_stderr_and_exits_2()
    {
        var (exit, output, err) = Run();
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        foreach (string text in new[] { "storm", "torture", "deferrt help <command>", "Exit codes:", "130" })
        {
            Assert.Contains(text, err, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Help_prints_the_usage_on_stdout_and_exits_0()
    {
        var (exit, output, err) = Run("help");
        Assert.Equal(0, exit);
        Assert.Equal("", err);
        Assert.Contains("storm", output, StringComparison.Ordinal);
        Assert.Contains("torture", output, StringComparison.Ordinal);
        Assert.DoesNotContain("error:", output, StringComparison.Ordinal);

        var (exit2, storm, _) = Run("help", "storm");
        Assert.Equal(0, exit2);
        foreach (string option in new[] { "--hgrm", "--histogram-log", "--json", "Exit codes:", "3    the run finished but an output file could not be written" })
        {
            Assert.Contains(option, storm, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void An_unknown_command_names_itself_and_points_at_the_root_help()
    {
        var (exit, _, err) = Run("strom");
        Assert.Equal(2, exit);
        AssertCleanError(err);
        Assert.Contains("'strom'", err, StringComparison.Ordinal);
        Assert.Contains("run 'deferrt --help'", err, StringComparison.Ordinal);
        Assert.DoesNotContain("Required command", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Hgrm_files_and_the_interval_log_hold_every_event_of_every_path_and_stage()
    {
        string hgrm = Path.Combine(_dir, "hgrm");
        string log = Path.Combine(_dir, "logs", "latency.hlog");
        string json = Path.Combine(_dir, "r.json");
        var (exit, output, err) = Run(Storm("--duration", "1.3", "--paths", "hardirq,napi", "--hgrm", hgrm, "--histogram-log", log, "--json", json));
        Assert.True(exit == 0, output + err);

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var counts = new Dictionary<string, long>();
        foreach (var path in doc.RootElement.GetProperty("runs")[0].GetProperty("paths").EnumerateArray())
        {
            foreach (var (stage, field) in new[] { ("top-half", "topHalf"), ("bh-start", "bottomHalfStart"), ("bh-end", "bottomHalfEnd") })
            {
                var s = path.GetProperty(field);
                counts[$"{path.GetProperty("name").GetString()}/{stage}"] = s.GetProperty("count").GetInt64();
                if (s.GetProperty("count").GetInt64() > 0)
                {
                    Assert.True(s.GetProperty("p999Us").GetDouble() <= s.GetProperty("p9999Us").GetDouble());
                    Assert.True(s.GetProperty("p9999Us").GetDouble() <= s.GetProperty("maxUs").GetDouble());
                }
            }
        }
        Assert.Equal(6, counts.Count);
        Assert.True(counts["hardirq/bh-end"] > 0);

        // .hgrm: the percentile lines (value µs, percentile, total count) rise to the path's count.
        foreach (var (tag, count) in counts)
        {
            string file = Path.Combine(hgrm, tag.Replace('/', '-') + ".hgrm");
            string[] lines = File.ReadAllLines(file);
            Assert.StartsWith("       Value     Percentile TotalCount 1/(1-Percentile)", lines[0], StringComparison.Ordinal);
            var rows = lines.Skip(1).Where(l => l.Length > 0 && !l.StartsWith('#'))
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Select(f => (Value: double.Parse(f[0], CultureInfo.InvariantCulture), Percentile: double.Parse(f[1], CultureInfo.InvariantCulture), Total: long.Parse(f[2], CultureInfo.InvariantCulture)))
                .ToList();
            Assert.Contains(lines, l => l.StartsWith("#[Max", StringComparison.Ordinal) && l.TrimEnd().EndsWith($"Total count    = {count,12}]", StringComparison.Ordinal));
            if (count == 0)
            {
                Assert.Empty(rows);
                continue;
            }
            Assert.True(rows.Count > 10, file);
            Assert.Equal(count, rows[^1].Total);
            Assert.Equal(1.0, rows[^1].Percentile);
            for (int i = 1; i < rows.Count; i++)
            {
                Assert.True(rows[i].Value >= rows[i - 1].Value && rows[i].Percentile >= rows[i - 1].Percentile && rows[i].Total >= rows[i - 1].Total, $"{file}: line {i}");
            }
        }

        // The interval log: UTF-8 text HdrHistogram's reader takes; per tag, the intervals add up to the run.
        byte[] raw = File.ReadAllBytes(log);
        Assert.Equal("#[Histogram log format version"u8.ToArray(), raw[..30]);
        using var stream = File.OpenRead(log);
        using var reader = new HistogramLogReader(stream);
        var histograms = reader.ReadHistograms().ToList();
        Assert.NotEmpty(histograms);
        Assert.All(histograms, h => Assert.True(h.EndTimeStamp >= h.StartTimeStamp));
        var sums = histograms.GroupBy(h => h.Tag).ToDictionary(g => g.Key, g => g.Sum(h => h.TotalCount));
        Assert.Equal(counts.Keys.Order(), sums.Keys.Order());
        foreach (var (tag, count) in counts)
        {
            Assert.True(count == sums[tag], $"{tag}: run {count}, intervals {sums[tag]}");
        }
    }

    [Fact]
    public void The_report_fits_80_columns_without_cutting_a_number()
    {
        string json = Path.Combine(_dir, "r.json");
        var output = new StringWriter();
        int exit = CliApp.Run([.. Small, "--json", json], output, width: 80);
        string text = output.ToString();
        Assert.True(exit == 0, text);
        string[] lines = text.Split('\n');
        Assert.All(lines, l => Assert.True(l.TrimEnd('\r').Length <= 80, $"{l.Length} columns: {l}"));

        Assert.Contains("── storm: preset gentle ", text, StringComparison.Ordinal);
        Assert.DoesNotContain("storm: storm", text, StringComparison.Ordinal);
        Assert.Contains("p99.99", text, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var run = doc.RootElement.GetProperty("runs")[0];
        // Numbers whole: the total and each CPU's hardirq entries appear as one token in the tables.
        string total = run.GetProperty("totals").GetProperty("generated").GetInt64().ToString("N0", CultureInfo.InvariantCulture);
        Assert.Contains(lines, l => l.TrimStart().StartsWith("total", StringComparison.Ordinal) && l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(total));
        foreach (var cpu in run.GetProperty("cpus").EnumerateArray())
        {
            string entries = cpu.GetProperty("hardirqEntries").GetInt64().ToString("N0", CultureInfo.InvariantCulture);
            Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is [var c, _, var e, ..] && c == cpu.GetProperty("cpu").GetInt32().ToString(CultureInfo.InvariantCulture) && e == entries);
        }
        foreach (string table in new[] { "every event accounted", "latency from intended time", "per CPU during the storm" })
        {
            Assert.Contains(table, text, StringComparison.Ordinal);
        }
    }

    /// <summary>A writer that runs <paramref name="action"/> once, on the writing thread, when <paramref name="marker"/> is written.</summary>
    private sealed class CallbackWriter(string marker, Action action) : StringWriter
    {
        public bool Fired { get; private set; }

        public override void Write(string? value)
        {
            base.Write(value);
            if (!Fired && ToString().Contains(marker, StringComparison.Ordinal))
            {
                Fired = true;
                action();
            }
        }

        public override void Write(char value)
        {
            base.Write(value);
        }
    }
}
