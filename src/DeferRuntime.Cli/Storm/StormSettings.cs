using System.Globalization;
using DeferRuntime.Cli.Storm.Faults;
using DeferRuntime.Devices;

namespace DeferRuntime.Cli.Storm;

/// <summary>Everything one storm run needs, resolved from a preset and the command line.</summary>
internal sealed record StormSettings
{
    public required string Preset { get; init; }
    public required int Cpus { get; init; }
    /// <summary>Measured storm; zero: until Ctrl-C (SIGINT) or SIGTERM.</summary>
    public required TimeSpan Duration { get; init; }
    public required TimeSpan Warmup { get; init; }
    /// <summary>Events per second, per path.</summary>
    public required IReadOnlyDictionary<StormPathKind, double> Rates { get; init; }
    public required StormArrival Arrival { get; init; }
    public required int BurstLength { get; init; }
    public required IReadOnlyList<StormPathKind> Paths { get; init; }
    public required IdlePolicy IdlePolicy { get; init; }
    public required bool Pin { get; init; }
    public required PriorityPolicy Priorities { get; init; }
    public required int CpuNice { get; init; }
    public required int KsoftirqdNice { get; init; }
    public required bool LetKsoftirqdDoItsJob { get; init; }
    /// <summary>Simulated work per event in the bottom half.</summary>
    public required TimeSpan Work { get; init; }
    public required TimeSpan WatchdogThreshold { get; init; }
    public required FaultPlan Faults { get; init; }
    public required int Seed { get; init; }
    /// <summary>How long to wait, after generation, for every event to be handled before the rest counts as lost.</summary>
    public required TimeSpan DrainTimeout { get; init; }

    /// <summary>--device-cores, normalized: "auto", "none" or a core list (see <see cref="DeviceCorePlan"/>).</summary>
    public string DeviceCores { get; init; } = DeviceCorePlan.Auto;

    /// <summary>Test hook: the measured storm's generator stops for <see cref="GeneratorStall"/> after this many events (0: never).</summary>
    public long GeneratorStallAfterEvents { get; init; }

    /// <summary>How long the <see cref="GeneratorStallAfterEvents"/> stall lasts.</summary>
    public TimeSpan GeneratorStall { get; init; }

    /// <summary>--duration 0: the storm runs until interrupted.</summary>
    public bool RunsUntilStopped => Duration == TimeSpan.Zero;

    public double TotalRate => Paths.Sum(p => Rates[p]);
}

/// <summary>The presets: a gentle default, a storm, and an overload past what the CPUs can take.</summary>
internal static class StormPresets
{
    public static readonly string[] Names = ["gentle", "storm", "overload"];

    /// <summary>Rate per path, arrivals, duration and warm-up of <paramref name="preset"/>.</summary>
    public static (double Rate, StormArrival Arrival, int Burst, TimeSpan Duration, TimeSpan Warmup) Get(string preset) => preset switch
    {
        // A few thousand interrupts per second per driver: what a busy but healthy machine sees.
        "gentle" => (2_000, StormArrival.Constant, 16, TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(300)),
        // Tens of thousands per driver, Poisson: every path batches, NAPI polls, coalescing shows.
        "storm" => (40_000, StormArrival.Poisson, 16, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(500)),
        // More than one generator thread and the CPUs can take, in bursts: the generator falls behind,
        // queues fill, ksoftirqd takes over; every event must still be accounted.
        "overload" => (400_000, StormArrival.Bursty, 64, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(500)),
        _ => throw new FormatException($"unknown preset '{preset}'; expected {string.Join(", ", Names)}"),
    };

    /// <summary>Parses <c>--rates path=N,path=N</c> overrides.</summary>
    public static Dictionary<StormPathKind, double> ParseRates(IEnumerable<string> specs)
    {
        var rates = new Dictionary<StormPathKind, double>();
        foreach (string spec in specs.SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            int eq = spec.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || !StormPathKinds.TryParse(spec[..eq], out var kind) ||
                !double.TryParse(spec[(eq + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double rate) || !double.IsFinite(rate) || rate <= 0 || rate > CliLimits.MaxRate)
            {
                throw new FormatException($"--rates {spec}: expected path=events-per-second with a path of {string.Join(", ", StormPathKinds.All.Select(k => k.CliName()))} and a rate more than 0 and at most {CliLimits.MaxRate.ToString("N0", CultureInfo.InvariantCulture)}");
            }
            rates[kind] = rate;
        }
        return rates;
    }

    /// <summary>Parses <c>--paths</c> (names, comma-separated, or "all").</summary>
    public static List<StormPathKind> ParsePaths(IEnumerable<string> specs)
    {
        var paths = new List<StormPathKind>();
        foreach (string spec in specs.SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            if (spec.Equals("all", StringComparison.OrdinalIgnoreCase))
            {
                paths.AddRange(StormPathKinds.All);
                continue;
            }
            if (!StormPathKinds.TryParse(spec, out var kind))
            {
                throw new FormatException($"--paths {spec}: unknown path; expected all or {string.Join(", ", StormPathKinds.All.Select(k => k.CliName()))}");
            }
            paths.Add(kind);
        }
        return paths.Distinct().Order().ToList();
    }
}
