using System.Text.Json;
using DeferRuntime.Cli;

namespace DeferRuntime.Tests.Cli;

/// <summary>
/// deferrt storm, run in process at small sizes: exit codes, the JSON schema and its accounting
/// identities, each injected fault reported. Nothing passes or fails by timing: every check is a count or
/// a flag; the faults wait for what they prove (bounded by a hang guard).
/// </summary>
public sealed class StormCommandTests : IDisposable
{
    // Small and gentle: two CPUs, priorities left alone so parallel tests share the machine evenly.
    private static readonly string[] Small =
        ["storm", "--cpus", "2", "--duration", "0.3", "--warmup", "0.05", "--rate", "400", "--priorities", "none", "--no-progress"];

    private readonly string _dir = Directory.CreateTempSubdirectory("deferrt-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Exit, string Output, JsonElement Json) Run(params string[] extra)
    {
        string json = Path.Combine(_dir, $"report-{Guid.NewGuid():N}.json");
        // The small defaults, less those the test sets itself (single-valued options may appear once).
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
        var output = new StringWriter();
        int exit = CliApp.Run([.. args, .. extra, "--json", json], output);
        Assert.True(File.Exists(json), $"no JSON written; output:\n{output}");
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        return (exit, output.ToString(), doc.RootElement.Clone());
    }

    [Fact]
    public void Storm_accounts_for_every_event_on_every_path_and_writes_the_documented_json()
    {
        string csv = Path.Combine(_dir, "report.csv");
        var (exit, output, json) = Run("--csv", csv);

        Assert.True(exit == 0, output);
        Assert.Equal(2, json.GetProperty("schemaVersion").GetInt32());
        Assert.False(json.GetProperty("interrupted").GetBoolean());
        Assert.Equal("storm", json.GetProperty("command").GetString());
        Assert.Equal("single", json.GetProperty("mode").GetString());
        Assert.Equal(0, json.GetProperty("exitCode").GetInt32());
        var run = json.GetProperty("runs")[0];
        Assert.True(run.GetProperty("passed").GetBoolean(), output);
        foreach (string field in new[] { "machine", "options", "placements", "generator", "paths", "totals", "identities", "cpus", "napi", "faults", "gc", "tables" })
        {
            Assert.True(run.TryGetProperty(field, out _), $"runs[0].{field} missing");
        }

        string[] names = run.GetProperty("paths").EnumerateArray().Select(p => p.GetProperty("name").GetString()!).ToArray();
        Assert.Equal(["hardirq", "tasklet", "softirq", "threaded", "wq-bound", "wq-unbound", "bh-wq", "napi"], names);
        long generatedSum = 0, handledSum = 0;
        foreach (var path in run.GetProperty("paths").EnumerateArray())
        {
            long generated = path.GetProperty("generated").GetInt64(), handled = path.GetProperty("handled").GetInt64(), lost = path.GetProperty("lost").GetInt64();
            Assert.True(generated > 0, $"{path.GetProperty("name")}: nothing generated");
            Assert.Equal(generated, handled + lost);
            Assert.Equal(0, lost);
            // Every event took one trip through each stage (napi: only frames the top half moved have a top-half latency).
            Assert.Equal(handled, path.GetProperty("bottomHalfEnd").GetProperty("count").GetInt64());
            Assert.Equal(handled, path.GetProperty("bottomHalfStart").GetProperty("count").GetInt64());
            if (path.GetProperty("name").GetString() != "napi")
            {
                Assert.Equal(handled, path.GetProperty("topHalf").GetProperty("count").GetInt64());
                // The device's view: each assertion delivered, coalesced or latched; each handler run one delivery (or a re-raise).
                Assert.Equal(generated + path.GetProperty("reraises").GetInt64(),
                    path.GetProperty("delivered").GetInt64() + path.GetProperty("coalesced").GetInt64() + path.GetProperty("latched").GetInt64() + path.GetProperty("reraises").GetInt64());
            }
            foreach (string stage in new[] { "topHalf", "bottomHalfStart", "bottomHalfEnd" })
            {
                var s = path.GetProperty(stage);
                if (s.GetProperty("count").GetInt64() > 0)
                {
                    Assert.True(s.GetProperty("p50Us").GetDouble() <= s.GetProperty("p99Us").GetDouble());
                    Assert.True(s.GetProperty("p99Us").GetDouble() <= s.GetProperty("maxUs").GetDouble());
                }
            }
            generatedSum += generated;
            handledSum += handled;
        }
        var totals = run.GetProperty("totals");
        Assert.Equal(generatedSum, totals.GetProperty("generated").GetInt64());
        Assert.Equal(handledSum, totals.GetProperty("handled").GetInt64());
        Assert.Equal(0, totals.GetProperty("lost").GetInt64());
        Assert.All(run.GetProperty("identities").EnumerateArray(), i => Assert.True(i.GetProperty("holds").GetBoolean(), i.GetProperty("name").GetString() + ": " + i.GetProperty("detail").GetString()));

        Assert.Equal(2, run.GetProperty("cpus").GetArrayLength());
        Assert.True(run.GetProperty("cpus")[0].GetProperty("time").TryGetProperty("hardIrqMs", out _));
        Assert.Contains(run.GetProperty("placements").EnumerateArray(), p => p.GetProperty("thread").GetString() == "cpu/0");
        Assert.Contains("storm-tasklet", run.GetProperty("tables").GetProperty("interrupts").GetString(), StringComparison.Ordinal);
        Assert.Contains("BLOCK", run.GetProperty("tables").GetProperty("softirqs").GetString(), StringComparison.Ordinal);
        var napi = run.GetProperty("napi");
        Assert.Equal(0, napi.GetProperty("badFrames").GetInt64());

        Assert.Contains("PASS", output, StringComparison.Ordinal);
        Assert.Contains("/proc/interrupts", output, StringComparison.Ordinal);
        string[] csvLines = File.ReadAllLines(csv);
        Assert.StartsWith("run,path,irq,", csvLines[0], StringComparison.Ordinal);
        Assert.Equal(1 + 8, csvLines.Length);
    }

    [Fact]
    public void Throwing_handlers_are_survived_and_every_throw_is_reported()
    {
        var (exit, output, json) = Run("--fault", "throw-every=10");
        Assert.True(exit == 0, output);
        var run = json.GetProperty("runs")[0];
        var faults = run.GetProperty("faults");
        long injected = faults.GetProperty("throwsInjected").GetInt64();
        Assert.True(injected >= run.GetProperty("paths").GetArrayLength(), $"{injected} throws"); // at least one per path
        Assert.Equal(injected, faults.GetProperty("throwsReported").GetInt64());
        Assert.Equal(0, run.GetProperty("totals").GetProperty("lost").GetInt64());
        Assert.All(run.GetProperty("paths").EnumerateArray(), p => Assert.True(p.GetProperty("injectedFaults").GetInt64() > 0, p.GetProperty("name").GetString()));
    }

    [Fact]
    public void A_line_whose_handler_returns_irq_none_is_disabled_by_the_spurious_detector()
    {
        var (exit, output, json) = Run("--paths", "hardirq,tasklet", "--fault", "irq-none");
        Assert.True(exit == 0, output);
        var report = json.GetProperty("runs")[0].GetProperty("faults").GetProperty("irqNone");
        Assert.True(report.GetProperty("disabled").GetBoolean());
        Assert.Contains("nobody cared", report.GetProperty("warning").GetString(), StringComparison.Ordinal);
        Assert.True(report.GetProperty("handlerRuns").GetInt64() >= 99_900);
        Assert.Contains("DISABLED by the spurious detector", output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_self_raising_softirq_is_taken_over_by_ksoftirqd_and_work_still_runs()
    {
        var (exit, output, json) = Run("--paths", "softirq,wq-bound,napi", "--fault", "self-raising-softirq");
        Assert.True(exit == 0, output);
        var run = json.GetProperty("runs")[0];
        var report = run.GetProperty("faults").GetProperty("selfRaisingSoftirq");
        Assert.True(report.GetProperty("ksoftirqdTakeovers").GetInt64() > 0);
        Assert.True(report.GetProperty("workProgressed").GetBoolean());
        Assert.True(run.GetProperty("cpus")[0].GetProperty("ksoftirqdTakeovers").GetInt64() > 0);
        Assert.Equal(0, run.GetProperty("totals").GetProperty("lost").GetInt64());
    }

    [Fact]
    public void A_stuck_work_item_is_reported_by_the_stall_watchdog_while_other_pools_run()
    {
        var (exit, output, json) = Run("--paths", "wq-bound,wq-unbound", "--fault", "stuck-work", "--wq-watchdog-ms", "150");
        Assert.True(exit == 0, output);
        var run = json.GetProperty("runs")[0];
        var report = run.GetProperty("faults").GetProperty("stuckWork");
        Assert.True(report.GetProperty("watchdogReported").GetBoolean());
        Assert.Contains("BUG: workqueue lockup", report.GetProperty("report").GetString(), StringComparison.Ordinal);
        Assert.Contains("'storm-stuck'", report.GetProperty("report").GetString(), StringComparison.Ordinal);
        Assert.True(report.GetProperty("highpriPoolRan").GetBoolean());
        Assert.True(report.GetProperty("unboundPoolRan").GetBoolean());
        Assert.True(report.GetProperty("victimRanAfter").GetBoolean());
        Assert.Equal(0, run.GetProperty("totals").GetProperty("lost").GetInt64());
    }

    [Fact]
    public void Events_not_handled_by_the_drain_timeout_are_lost_and_the_exit_code_says_so()
    {
        // Half a second of work per event: even the first event (the generator always makes one) cannot be
        // done by the end of 0.3 s of storm plus a 50 ms drain, however fast or slow the machine.
        var (exit, output, json) = Run("--paths", "wq-bound", "--rate", "10", "--work-us", "500000", "--drain-timeout", "0.05", "--warmup", "0");
        Assert.Equal(1, exit);
        Assert.Equal(1, json.GetProperty("exitCode").GetInt32());
        var run = json.GetProperty("runs")[0];
        Assert.False(run.GetProperty("passed").GetBoolean());
        var path = run.GetProperty("paths")[0];
        Assert.True(path.GetProperty("lost").GetInt64() > 0);
        Assert.Equal(path.GetProperty("generated").GetInt64(), path.GetProperty("handled").GetInt64() + path.GetProperty("lost").GetInt64());
        Assert.Contains("LOST", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Compare_runs_the_storm_under_both_option_sets_and_reports_ratios()
    {
        var (exit, output, json) = Run("--paths", "hardirq,tasklet", "--duration", "0.15", "--compare", "idle=poll,halt", "--repeat", "2");
        Assert.True(exit == 0, output);
        Assert.Equal("compare", json.GetProperty("mode").GetString());
        var runs = json.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(["A1", "B1", "A2", "B2"], runs.Select(r => $"{r.GetProperty("side").GetString()}{r.GetProperty("repeat").GetInt32()}"));
        Assert.Equal(["idle=poll#1", "idle=halt#1", "idle=poll#2", "idle=halt#2"], runs.Select(r => r.GetProperty("label").GetString()));
        Assert.Equal("poll", runs[0].GetProperty("options").GetProperty("idlePolicy").GetString());
        Assert.Equal("halt", runs[1].GetProperty("options").GetProperty("idlePolicy").GetString());
        Assert.Equal("poll", runs[2].GetProperty("options").GetProperty("idlePolicy").GetString());
        var comparison = json.GetProperty("comparison");
        Assert.Equal("idle", comparison.GetProperty("key").GetString());
        Assert.Equal("idle=poll", comparison.GetProperty("a").GetString());
        Assert.Equal(2, comparison.GetProperty("repeatsA").GetInt32());
        Assert.Equal(2, comparison.GetProperty("repeatsB").GetInt32());
        Assert.True(comparison.GetProperty("achievedRateA").GetDouble() > 0);
        var row = comparison.GetProperty("rows").EnumerateArray().Single(r => r.GetProperty("path").GetString() == "tasklet" && r.GetProperty("metric").GetString() == "end p99 µs");
        Assert.True(row.GetProperty("aMin").GetDouble() <= row.GetProperty("a").GetDouble());
        Assert.True(row.GetProperty("a").GetDouble() <= row.GetProperty("aMax").GetDouble());
        Assert.Contains("B / A", output, StringComparison.Ordinal);
        Assert.Contains("min-max", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Plot_writes_a_png_cdf_and_histogram_per_path()
    {
        string plots = Path.Combine(_dir, "plots");
        var (exit, output, _) = Run("--paths", "hardirq,napi", "--plot", plots);
        Assert.True(exit == 0, output);
        foreach (string name in new[] { "hardirq-cdf.png", "hardirq-histogram.png", "napi-cdf.png", "napi-histogram.png" })
        {
            byte[] png = File.ReadAllBytes(Path.Combine(plots, name));
            Assert.True(png.Length > 1000, name);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        }
    }

    [Fact]
    public void Every_stage_is_stamped_for_the_event_it_measures_so_no_sample_is_clamped()
    {
        // Bursts of 64 back to back: top halves drain several events per run, most asserted after the
        // run's entry stamp. Each is timed from a stamp taken after its assert (none at or below the clock's
        // resolution, none clamped), and from its intended time as well as its assert.
        var (exit, output, json) = Run("--paths", "hardirq,tasklet,softirq,napi", "--arrival", "bursty", "--burst", "64", "--rate", "20000");
        Assert.True(exit == 0, output);
        foreach (var path in json.GetProperty("runs")[0].GetProperty("paths").EnumerateArray())
        {
            string name = path.GetProperty("name").GetString()!;
            Assert.Equal(0, path.GetProperty("unorderedSamples").GetInt64());
            long handled = path.GetProperty("handled").GetInt64();
            Assert.Equal(handled, path.GetProperty("generatorLag").GetProperty("count").GetInt64());
            Assert.Equal(handled, path.GetProperty("bottomHalfEndFromAssert").GetProperty("count").GetInt64());
            foreach (string stage in new[] { "topHalf", "bottomHalfStart", "bottomHalfEnd" })
            {
                var fromIntended = path.GetProperty(stage);
                var fromAssert = path.GetProperty(stage + "FromAssert");
                Assert.Equal(fromIntended.GetProperty("count").GetInt64(), fromAssert.GetProperty("count").GetInt64());
                // The intended time is never after the assert: its latencies are never the smaller.
                Assert.True(fromIntended.GetProperty("maxUs").GetDouble() >= fromAssert.GetProperty("maxUs").GetDouble(), $"{name} {stage}");
            }
        }
        Assert.Contains("Stamps before their event: 0.", output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_stalled_generator_shows_as_latency_from_intended_time_and_as_gen_lag_not_from_assert()
    {
        var stall = TimeSpan.FromMilliseconds(250);
        var settings = new DeferRuntime.Cli.Storm.StormSettings
        {
            Preset = "gentle", Cpus = 2, Duration = TimeSpan.FromSeconds(0.6), Warmup = TimeSpan.Zero,
            Rates = DeferRuntime.Cli.Storm.StormPathKinds.All.ToDictionary(k => k, _ => 2_000.0),
            Arrival = DeferRuntime.Devices.StormArrival.Constant, BurstLength = 16,
            Paths = [DeferRuntime.Cli.Storm.StormPathKind.HardIrq, DeferRuntime.Cli.Storm.StormPathKind.Tasklet],
            IdlePolicy = IdlePolicy.Hybrid, Pin = true, Priorities = PriorityPolicy.None, CpuNice = 0, KsoftirqdNice = 19,
            LetKsoftirqdDoItsJob = true, Work = TimeSpan.Zero, WatchdogThreshold = TimeSpan.FromSeconds(30),
            Faults = DeferRuntime.Cli.Storm.Faults.FaultPlan.Parse([]), Seed = 1, DrainTimeout = TimeSpan.FromSeconds(30),
            DeviceCores = "none", GeneratorStallAfterEvents = 200, GeneratorStall = stall,
        };
        var run = DeferRuntime.Cli.Storm.StormRunner.Run(settings, "stall", DeferRuntime.Cli.Storm.StormProgress.Create(Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings { Out = new Spectre.Console.AnsiConsoleOutput(TextWriter.Null) }), false));
        Assert.True(run.Passed, string.Join("; ", run.Problems));
        Assert.True(run.Generator.FellBehind);
        Assert.True(run.Generator.MaxLagUs >= stall.TotalMicroseconds);
        foreach (var path in run.Paths)
        {
            // Events that fell due during the stall waited for the generator: from their intended time
            // the wait is latency (no coordinated omission), and gen lag says it was the generator's.
            Assert.True(path.GeneratorLag!.MaxUs >= stall.TotalMicroseconds * 0.99, $"{path.Name}: gen lag max {path.GeneratorLag.MaxUs} µs");
            Assert.True(path.BottomHalfEnd.MaxUs >= stall.TotalMicroseconds * 0.99, $"{path.Name}: bh end max {path.BottomHalfEnd.MaxUs} µs");
            Assert.True(path.BottomHalfEndFromAssert!.MaxUs < path.BottomHalfEnd.MaxUs, $"{path.Name}: from assert {path.BottomHalfEndFromAssert.MaxUs} µs");
            Assert.Equal(0, path.Lost);
        }
    }

    [Fact]
    public void Device_cores_none_shares_the_cpus_cores_and_says_so()
    {
        var (exit, output, json) = Run("--paths", "hardirq,napi", "--device-cores", "none");
        Assert.True(exit == 0, output);
        var topology = json.GetProperty("runs")[0].GetProperty("topology");
        Assert.Equal("none", topology.GetProperty("deviceCores").GetString());
        Assert.Equal(0, topology.GetProperty("deviceThreadCores").GetArrayLength());
        Assert.Contains(topology.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("share cores with the virtual CPUs", StringComparison.Ordinal));
        Assert.Contains("topology (--device-cores none)", output, StringComparison.Ordinal);
        Assert.Contains("warning: device threads (storm, nic-sender, nic/storm-nic) share cores with the virtual CPUs", output, StringComparison.Ordinal);
    }

    [Fact]
    public void By_default_the_devices_get_a_core_of_their_own_when_there_is_one_to_spare()
    {
        string jsonPath = Path.Combine(_dir, "default.json");
        var output = new StringWriter();
        int exit = CliApp.Run(["storm", "--duration", "0.3", "--warmup", "0", "--rate", "400", "--priorities", "none", "--no-progress", "--paths", "hardirq,napi", "--json", jsonPath], output);
        Assert.True(exit == 0, output.ToString());
        using var doc = JsonDocument.Parse(File.ReadAllText(jsonPath));
        var run = doc.RootElement.GetProperty("runs")[0];
        var topology = run.GetProperty("topology");
        int[] allowed = DeferRuntime.Platform.ThreadPlacement.AllowedCores();
        Assert.Equal("auto", topology.GetProperty("deviceCores").GetString());
        if (allowed.Length >= 2)
        {
            // The last core to the devices, the CPUs on the rest: one fewer CPU than cores by default.
            Assert.Equal([allowed[^1]], topology.GetProperty("deviceThreadCores").EnumerateArray().Select(c => c.GetInt32()).ToArray());
            Assert.Equal(allowed.Length - 1, run.GetProperty("options").GetProperty("cpus").GetInt32());
            Assert.DoesNotContain(topology.GetProperty("cpuCores").EnumerateArray(), c => c.ValueKind == JsonValueKind.Number && c.GetInt32() == allowed[^1]);
            Assert.DoesNotContain(topology.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("share", StringComparison.Ordinal));
            Assert.Contains($"core {allowed[^1]}: storm, nic-sender, nic/storm-nic", output.ToString(), StringComparison.Ordinal);
        }
        else
        {
            Assert.Contains(topology.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("no core to spare", StringComparison.Ordinal));
        }

        // More CPUs than cores: the CPUs share cores, and the devices have none to spare.
        var crowded = Run("--paths", "hardirq", "--cpus", (allowed.Length + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
        var warnings = crowded.Json.GetProperty("runs")[0].GetProperty("topology").GetProperty("warnings").EnumerateArray().Select(w => w.GetString()!).ToArray();
        Assert.Contains(warnings, w => w.Contains("virtual CPUs on", StringComparison.Ordinal) && w.Contains("CPUs share cores", StringComparison.Ordinal));
        Assert.Contains(warnings, w => w.Contains("no core to spare", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("storm", "--preset", "hurricane")]
    [InlineData("storm", "--fault", "explode")]
    [InlineData("storm", "--paths", "carrier-pigeon")]
    [InlineData("storm", "--compare", "idle=poll")]
    [InlineData("storm", "--compare", "colour=red,blue")]
    [InlineData("storm", "--rates", "tasklet=-5")]
    [InlineData("storm", "--duration", "-1")]
    [InlineData("storm", "--duration", "0", "--compare", "idle=poll,halt")]
    [InlineData("storm", "--compare", "idle=poll,halt", "--repeat", "0")]
    [InlineData("storm", "--compare", "idle=poll,halt", "--repeat", "21")]
    [InlineData("storm", "--repeat", "3")]
    [InlineData("storm", "--device-cores", "banana")]
    [InlineData("storm", "--device-cores", "1023")]
    [InlineData("storm", "--no-such-option")]
    [InlineData("no-such-command")]
    public void Bad_command_lines_exit_2_with_a_message(params string[] args)
    {
        var output = new StringWriter();
        Assert.Equal(2, CliApp.Run(args, output));
        Assert.Contains("error", output.ToString(), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Help_lists_the_storm_options()
    {
        var output = new StringWriter();
        Assert.Equal(0, CliApp.Run(["storm", "--help"], output));
        foreach (string option in new[] { "--preset", "--cpus", "--device-cores", "--duration", "--rate", "--arrival", "--paths", "--idle-policy", "--no-pin", "--priorities", "--fault", "--json", "--csv", "--plot", "--compare", "--repeat" })
        {
            Assert.Contains(option, output.ToString(), StringComparison.Ordinal);
        }
    }
}
