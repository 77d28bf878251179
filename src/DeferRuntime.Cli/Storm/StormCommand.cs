using System.CommandLine;
using System.Globalization;
using DeferRuntime.Cli.Storm.Faults;
using DeferRuntime.Cli.Storm.Report;
using DeferRuntime.Devices;
using Spectre.Console;

namespace DeferRuntime.Cli.Storm;

/// <summary>
/// <c>deferrt storm</c>: drives synthetic interrupt storms through a driver of each bottom-half kind and
/// reports latency, accounting, /proc tables, ksoftirqd, NAPI, CPU time and what the OS granted. No
/// argument is required: <c>--preset gentle</c> is the default.
/// </summary>
internal static class StormCommand
{
    // Exit codes: see ExitCodes (0 passed, 1 a check failed, 2 usage, 3 an output not written, 130 interrupted).
    public const int ExitFailed = ExitCodes.CheckFailed;
    public const int ExitUsage = ExitCodes.Usage;
    // 130 (128 + SIGINT): Ctrl-C or SIGTERM ended the storm; the report and files are complete.
    public const int ExitInterrupted = ExitCodes.Interrupted;

    private static readonly string PathNames = string.Join(", ", StormPathKinds.All.Select(k => k.CliName()));

    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "gentle (default): 2,000 events/s per path for 3 s; storm: 40,000/s Poisson for 5 s; overload: 400,000/s bursty for 5 s", DefaultValueFactory = _ => "gentle" };
        preset.AcceptOnlyFromAmong(StormPresets.Names);
        var cpus = new Option<int?>("--cpus") { Description = "Virtual CPUs (default: the processor count, less the device cores)" };
        var deviceCores = new Option<string>("--device-cores") { Description = "Cores of the device threads (generator, NIC sender and device): auto (default: the last core, if there is one to spare), none (share the CPUs' cores) or a list (e.g. 3 or 2,3)", DefaultValueFactory = _ => DeviceCorePlan.Auto };
        var duration = new Option<double?>("--duration") { Description = "Seconds of measured storm (default: the preset's; 0: until Ctrl-C)" };
        var warmup = new Option<double?>("--warmup") { Description = "Seconds of warm-up storm before it, not measured (default: the preset's; 0 for none)" };
        var rate = new Option<double?>("--rate") { Description = "Events per second per path (default: the preset's)" };
        var rates = new Option<string[]>("--rates") { Description = $"Per-path rates, path=N[,path=N] (paths: {PathNames})", AllowMultipleArgumentsPerToken = true };
        var arrival = new Option<string?>("--arrival") { Description = "constant, poisson or bursty (default: the preset's)" };
        arrival.AcceptOnlyFromAmong("constant", "poisson", "bursty");
        var burst = new Option<int?>("--burst") { Description = "Events per burst under bursty arrivals (default: the preset's)" };
        var paths = new Option<string[]>("--paths") { Description = $"Which paths, comma-separated, or all (default): {PathNames}", AllowMultipleArgumentsPerToken = true };
        var idle = new Option<string>("--idle-policy") { Description = "How idle CPUs wait: poll, hybrid (default) or halt", DefaultValueFactory = _ => "hybrid" };
        idle.AcceptOnlyFromAmong("poll", "hybrid", "halt");
        var pin = new Option<bool>("--pin") { Description = "Pin each CPU's threads to a core (default)" };
        var noPin = new Option<bool>("--no-pin") { Description = "Do not pin" };
        var priorities = new Option<string>("--priorities") { Description = "OS priorities to ask for: none, nice (default) or fifo", DefaultValueFactory = _ => "nice" };
        priorities.AcceptOnlyFromAmong("none", "nice", "fifo");
        var cpuNice = new Option<int>("--cpu-nice") { Description = "Nice of cpu/N (default -10)", DefaultValueFactory = _ => -10 };
        var ksoftirqdNice = new Option<int>("--ksoftirqd-nice") { Description = "Nice of ksoftirqd/N (default 19; 0 as current Linux)", DefaultValueFactory = _ => 19 };
        var letKsoftirqd = new Option<bool>("--let-ksoftirqd-do-its-job") { Description = "While ksoftirqd runs, irq exit leaves it all but HI and TASKLET (default true; false as Linux 6.5+)", DefaultValueFactory = _ => true };
        var work = new Option<double>("--work-us") { Description = "Simulated work per event in the bottom half, µs (default 0)", DefaultValueFactory = _ => 0 };
        var watchdog = new Option<double?>("--wq-watchdog-ms") { Description = "Workqueue stall watchdog threshold, ms (default 30000; 500 with --fault stuck-work)" };
        var faults = new Option<string[]>("--fault") { Description = $"Inject a fault (repeatable): {FaultPlan.Help}", AllowMultipleArgumentsPerToken = true };
        var seed = new Option<int>("--seed") { Description = "Seed of Poisson arrivals (default 1)", DefaultValueFactory = _ => 1 };
        var drain = new Option<double>("--drain-timeout") { Description = "Seconds to wait after generation for every event to be handled; what is left is lost (default 30)", DefaultValueFactory = _ => 30 };
        var json = new Option<string?>("--json") { Description = "Write the report as JSON (schemaVersion 2) to this file" };
        var csv = new Option<string?>("--csv") { Description = "Write one CSV row per path (and run) to this file" };
        var plot = new Option<string?>("--plot") { Description = "Write PNG latency CDFs and histograms per path into this directory" };
        var compare = new Option<string?>("--compare") { Description = "Run the storm under two option sets, alternating A, B --repeat times each, and print medians, min-max and B/A ratios of the medians: key=A,B with key idle, pin, priorities, arrival, cpus, ksoftirqd-nice, let-ksoftirqd, work-us (e.g. idle=poll,halt)" };
        var repeat = new Option<int?>("--repeat") { Description = $"With --compare: runs per side, alternating A, B, A, B, ... (default {CliLimits.DefaultRepeat}, 1 to {CliLimits.MaxRepeat}); the report gives each side's median and min-max and the ratio of the medians" };
        var noProgress = new Option<bool>("--no-progress") { Description = "No live progress" };
        var brief = new Option<bool>("--brief") { Description = "Leave out the placements and /proc tables" };

        var command = new Command("storm", "Drive synthetic interrupt storms through a driver of each bottom-half kind (hard IRQ, tasklet, softirq, threaded IRQ, bound/unbound/BH workqueue, NAPI NIC on loopback UDP) and report latency, accounting, /proc tables, ksoftirqd, NAPI, CPU time and OS placement.")
        {
            preset, cpus, deviceCores, duration, warmup, rate, rates, arrival, burst, paths, idle, pin, noPin, priorities, cpuNice, ksoftirqdNice,
            letKsoftirqd, work, watchdog, faults, seed, drain, json, csv, plot, compare, repeat, noProgress, brief,
        };
        var outputOptions = new StormOutputs.Options();
        foreach (var option in outputOptions.All)
        {
            command.Add(option);
        }
        command.SetAction(parse =>
        {
            var console = CliApp.Console;
            StormSettings settings;
            (string Key, string A, string B)? comparison = null;
            int repeats = 1;
            StormOutputs outputs;
            try
            {
                if (parse.GetValue(pin) && parse.GetValue(noPin))
                {
                    throw new FormatException("--pin and --no-pin together");
                }
                string presetName = parse.GetValue(preset)!;
                var p = StormPresets.Get(presetName);
                var faultPlan = FaultPlan.Parse(parse.GetValue(faults) ?? []);
                var pathList = StormPresets.ParsePaths(parse.GetValue(paths) is { Length: > 0 } given ? given : ["all"]);
                double perPath = CliLimits.Rate(parse.GetValue(rate) ?? p.Rate, "--rate");
                var rateTable = StormPathKinds.All.ToDictionary(k => k, _ => perPath);
                foreach (var (kind, r) in StormPresets.ParseRates(parse.GetValue(rates) ?? []))
                {
                    rateTable[kind] = r;
                }
                string devices = DeviceCorePlan.Parse(parse.GetValue(deviceCores));
                settings = new StormSettings
                {
                    Preset = presetName,
                    Cpus = CliLimits.Cpus(parse.GetValue(cpus) ?? Math.Min(DeviceCorePlan.DefaultCpus(devices), CliLimits.MaxCpus), "--cpus"),
                    DeviceCores = devices,
                    Duration = Seconds(parse.GetValue(duration) ?? p.Duration.TotalSeconds, "--duration", allowZero: true),
                    Warmup = Seconds(parse.GetValue(warmup) ?? p.Warmup.TotalSeconds, "--warmup", allowZero: true),
                    Rates = rateTable,
                    Arrival = parse.GetValue(arrival) is { } a ? Enum.Parse<StormArrival>(a, ignoreCase: true) : p.Arrival,
                    BurstLength = Positive(parse.GetValue(burst) ?? p.Burst, "--burst", 1 << 20),
                    Paths = pathList.Count > 0 ? pathList : throw new FormatException("--paths: no path chosen"),
                    IdlePolicy = Enum.Parse<IdlePolicy>(parse.GetValue(idle)!, ignoreCase: true),
                    Pin = !parse.GetValue(noPin),
                    Priorities = Enum.Parse<PriorityPolicy>(parse.GetValue(priorities)!, ignoreCase: true),
                    CpuNice = Nice(parse.GetValue(cpuNice), "--cpu-nice"),
                    KsoftirqdNice = Nice(parse.GetValue(ksoftirqdNice), "--ksoftirqd-nice"),
                    LetKsoftirqdDoItsJob = parse.GetValue(letKsoftirqd),
                    Work = TimeSpan.FromMicroseconds(parse.GetValue(work) is var w && w >= 0 && double.IsFinite(w) ? w : throw new FormatException("--work-us must be 0 or more")),
                    WatchdogThreshold = TimeSpan.FromMilliseconds(parse.GetValue(watchdog) ?? (faultPlan.StuckWork ? 500 : 30_000)),
                    Faults = faultPlan,
                    Seed = parse.GetValue(seed),
                    DrainTimeout = Seconds(parse.GetValue(drain), "--drain-timeout", allowZero: false),
                };
                if (settings.WatchdogThreshold <= TimeSpan.Zero)
                {
                    throw new FormatException("--wq-watchdog-ms must be positive");
                }
                if (parse.GetValue(compare) is { } spec)
                {
                    if (settings.RunsUntilStopped)
                    {
                        throw new FormatException("--duration 0 (until Ctrl-C) cannot be used with --compare");
                    }
                    comparison = ParseCompare(spec);
                    _ = StormCompare.Apply(settings, comparison.Value.Key, comparison.Value.A);
                    _ = StormCompare.Apply(settings, comparison.Value.Key, comparison.Value.B);
                    repeats = CliLimits.Repeat(parse.GetValue(repeat) ?? CliLimits.DefaultRepeat, "--repeat");
                }
                else if (parse.GetValue(repeat) is { } r)
                {
                    throw new CliUsageException(string.Create(CultureInfo.InvariantCulture, $"--repeat {r}: only with --compare (it repeats the two sides)"));
                }
                // Every output path before the storm: a typo costs nothing.
                outputs = outputOptions.Get(parse, parse.GetValue(json), parse.GetValue(csv), parse.GetValue(plot));
                outputs.Check();
            }
            catch (Exception e) when (e is FormatException or ArgumentException or CliUsageException)
            {
                return CliApp.UsageError(e.Message, "storm");
            }

            return Execute(console, settings, comparison, repeats, outputs, progress: !parse.GetValue(noProgress), full: !parse.GetValue(brief));
        });
        return command;
    }

    /// <summary>The runs of a storm in order: one, or under --compare A1, B1, A2, B2, ... <paramref name="repeats"/> of each side.</summary>
    internal static IReadOnlyList<(string Label, string? Side, int? Repeat, StormSettings Settings)> Plan(
        StormSettings settings, (string Key, string A, string B)? comparison, int repeats)
    {
        if (comparison is not { } c)
        {
            return [("storm", null, null, settings)];
        }
        var a = StormCompare.Apply(settings, c.Key, c.A);
        var b = StormCompare.Apply(settings, c.Key, c.B);
        var plan = new List<(string, string?, int?, StormSettings)>();
        for (int i = 1; i <= repeats; i++)
        {
            string suffix = repeats == 1 ? "" : "#" + i.ToString(CultureInfo.InvariantCulture);
            plan.Add(($"{c.Key}={c.A}{suffix}", "A", i, a));
            plan.Add(($"{c.Key}={c.B}{suffix}", "B", i, b));
        }
        return plan;
    }

    private static int Execute(IAnsiConsole console, StormSettings settings, (string Key, string A, string B)? comparison, int repeats,
        StormOutputs outputs, bool progress, bool full)
    {
        using var intervals = outputs.CreateIntervalLog();
        var startedAt = DateTimeOffset.UtcNow;
        var runs = new List<StormRunResult>();
        using var interrupt = StormInterrupt.Listen(Console.Error);
        foreach (var (label, side, repeat, s) in Plan(settings, comparison, repeats))
        {
            string which = side is null ? "" : $" [{side}{repeat}: {label}]";
            console.MarkupLine(Markup.Escape($"deferrt storm{which}: {StormRunner.Describe(s)}; paths {string.Join(",", s.Paths.Select(p => p.CliName()))}, {s.TotalRate:N0} events/s in all"));
            var run = StormRunner.Run(s, label, StormProgress.Create(console, progress), intervals, interrupt) with { Side = side, Repeat = repeat };
            ConsoleReport.Render(console, run, full && comparison is null);
            runs.Add(run);
            if (interrupt.Requested)
            {
                break; // under --compare, no further run starts
            }
        }
        bool interrupted = interrupt.Requested;
        ComparisonResult? compared = null;
        var aRuns = runs.Where(r => r.Side == "A").ToList();
        var bRuns = runs.Where(r => r.Side == "B").ToList();
        if (comparison is { } cmp && aRuns.Count > 0 && bRuns.Count > 0)
        {
            compared = CompareReport.Build(cmp.Key, aRuns, bRuns);
            console.WriteLine();
            CompareReport.Render(console, compared);
        }
        int exit = interrupted ? ExitInterrupted : runs.All(r => r.Passed) ? 0 : ExitFailed;
        if (interrupted)
        {
            console.MarkupLine(Markup.Escape($"interrupted: the storm ended early, drained and is reported in full over the time it ran{(runs.All(r => r.Passed) ? "" : "; a check FAILED (see above)")}; exit code {ExitInterrupted}"));
        }
        var document = new StormDocument(StormDocument.CurrentSchemaVersion, "storm", comparison is null ? "single" : "compare", startedAt, exit, runs, compared, interrupted);
        exit = outputs.Write(console, CliApp.Error, exit, document, intervals);
        return exit;
    }

    private static (string Key, string A, string B) ParseCompare(string spec)
    {
        int eq = spec.IndexOf('=', StringComparison.Ordinal);
        string[] values = eq > 0 ? spec[(eq + 1)..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : [];
        if (eq <= 0 || values.Length != 2)
        {
            throw new FormatException($"--compare {spec}: expected key=A,B (e.g. idle=poll,halt)");
        }
        return (spec[..eq].Trim().ToLowerInvariant(), values[0], values[1]);
    }

    private static int Positive(int value, string name, int max) =>
        value >= 1 && value <= max ? value : throw new FormatException($"{name} must be 1 to {max.ToString(CultureInfo.InvariantCulture)}");

    private static int Nice(int value, string name) =>
        value is >= -20 and <= 19 ? value : throw new FormatException($"{name} must be -20 to 19");

    private static TimeSpan Seconds(double value, string name, bool allowZero) =>
        double.IsFinite(value) && (value > 0 || (allowZero && value == 0)) && value <= 86_400
            ? TimeSpan.FromSeconds(value)
            : throw new FormatException($"{name} must be {(allowZero ? "0 or more" : "positive")} seconds");
}

/// <summary>The option sets --compare can vary.</summary>
internal static class StormCompare
{
    public static StormSettings Apply(StormSettings s, string key, string value)
    {
        string v = value.Trim().ToLowerInvariant();
        return key switch
        {
            "idle" or "idle-policy" => s with { IdlePolicy = Enum.TryParse<IdlePolicy>(v, ignoreCase: true, out var p) && Enum.IsDefined(p) ? p : throw Bad(key, value, "poll, hybrid, halt") },
            "pin" => s with { Pin = OnOff(key, value) },
            "priorities" => s with { Priorities = Enum.TryParse<PriorityPolicy>(v, ignoreCase: true, out var pr) && Enum.IsDefined(pr) ? pr : throw Bad(key, value, "none, nice, fifo") },
            "arrival" => s with { Arrival = Enum.TryParse<StormArrival>(v, ignoreCase: true, out var a) && Enum.IsDefined(a) ? a : throw Bad(key, value, "constant, poisson, bursty") },
            "cpus" => s with { Cpus = int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? CliLimits.Cpus(n, "--compare cpus") : throw Bad(key, value, $"1 to {CliLimits.MaxCpus}") },
            "ksoftirqd-nice" => s with { KsoftirqdNice = int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int nice) && nice is >= -20 and <= 19 ? nice : throw Bad(key, value, "-20 to 19") },
            "let-ksoftirqd" => s with { LetKsoftirqdDoItsJob = OnOff(key, value) },
            "work-us" => s with { Work = double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double us) && us >= 0 && double.IsFinite(us) ? TimeSpan.FromMicroseconds(us) : throw Bad(key, value, "0 or more µs") },
            _ => throw new FormatException($"--compare: unknown key '{key}'; expected idle, pin, priorities, arrival, cpus, ksoftirqd-nice, let-ksoftirqd or work-us"),
        };
    }

    private static bool OnOff(string key, string value) => value.Trim().ToLowerInvariant() switch
    {
        "on" or "true" or "yes" or "1" => true,
        "off" or "false" or "no" or "0" => false,
        _ => throw Bad(key, value, "on, off"),
    };

    private static FormatException Bad(string key, string value, string expected) => new($"--compare {key}: '{value}' is not one of {expected}");
}
