using System.Text.Json.Serialization;
using DeferRuntime.Cli.Storm.Faults;
using HdrHistogram;

namespace DeferRuntime.Cli.Storm.Report;

// The storm report: what --json writes (camelCase, schema below) and what the console, CSV, plot and
// compare renderers read. Schema changes that rename or remove a field, or change its meaning, bump
// StormDocument.CurrentSchemaVersion; adding a field does not.

/// <summary>The --json document: one storm run, or the two runs of --compare and their ratios.</summary>
/// <param name="SchemaVersion">Version of this layout (<see cref="CurrentSchemaVersion"/>).</param>
/// <param name="Command">"storm".</param>
/// <param name="Mode">"single" or "compare".</param>
/// <param name="StartedAt">When the command started (UTC).</param>
/// <param name="ExitCode">The process exit code: 0 when every run passed.</param>
/// <param name="Runs">The runs, in order (under --compare: A1, B1, A2, B2, ... each with its side and repeat).</param>
/// <param name="Comparison">The comparison under --compare (medians, ranges, ratios of medians), else null.</param>
/// <param name="Interrupted">Ctrl-C (SIGINT) or SIGTERM ended the storm early: the runs drained and are reported in full, over the time they ran.</param>
internal sealed record StormDocument(
    int SchemaVersion, string Command, string Mode, DateTimeOffset StartedAt, int ExitCode,
    IReadOnlyList<StormRunResult> Runs, ComparisonResult? Comparison, bool Interrupted = false)
{
    // 2: latencies (topHalf, bottomHalfStart, bottomHalfEnd) are from each event's intended time, not its
    // assert (that view is now *FromAssert); generator.lateEvents and lateLagMs count without re-anchoring.
    public const int CurrentSchemaVersion = 2;
}

/// <summary>One storm run.</summary>
/// <param name="Label">"storm", or under --compare the option set ("idle=poll").</param>
/// <param name="Passed">Every event accounted (lost 0), every identity held, every injected fault reported as expected.</param>
/// <param name="Problems">Why not, in words.</param>
internal sealed record StormRunResult(
    string Label, bool Passed, IReadOnlyList<string> Problems,
    MachineInfo Machine, OptionsInfo Options, IReadOnlyList<PlacementInfo> Placements, GeneratorInfo Generator,
    IReadOnlyList<PathResult> Paths, TotalsInfo Totals, IReadOnlyList<IdentityCheck> Identities,
    IReadOnlyList<CpuResult> Cpus, double? UnboundWorkersCpuMs, NapiResult? Napi, FaultsResult Faults, GcInfo Gc,
    ProcTables Tables)
{
    /// <summary>Ctrl-C or SIGTERM ended this run's storm early (it drained and is reported over the time it ran).</summary>
    public bool Interrupted { get; init; }

    /// <summary>Under --compare, the side this run measured ("A" or "B"); null otherwise.</summary>
    public string? Side { get; init; }

    /// <summary>Under --compare, which repeat of its side (1-based); null otherwise.</summary>
    public int? Repeat { get; init; }

    /// <summary>Which core ran which virtual CPUs and device threads, and the warnings about sharing.</summary>
    public TopologyInfo? Topology { get; init; }
}

/// <summary>The machine and process.</summary>
internal sealed record MachineInfo(
    string HostName, string Os, string Framework, string Architecture, int ProcessorCount, IReadOnlyList<int> CpuCores,
    long StopwatchFrequency, string ToolVersion);

/// <summary>The options the run used (after the preset and the command line).</summary>
internal sealed record OptionsInfo(
    string Preset, int Cpus, double DurationSeconds, double WarmupSeconds, string Arrival, int BurstLength,
    IReadOnlyDictionary<string, double> Rates, IReadOnlyList<string> Paths, string IdlePolicy, bool Pinning,
    string Priorities, int CpuNice, int KsoftirqdNice, bool LetKsoftirqdDoItsJob, double WorkUs, double WatchdogMs,
    IReadOnlyList<string> Faults, int Seed, int Hz, bool IrqTimeAccounting);

/// <summary>What the OS granted one runtime thread (Runtime.Placements).</summary>
internal sealed record PlacementInfo(string Thread, int Cpu, int? Core, bool Pinned, string? PinError, string Priority, bool PriorityGranted, string? PriorityError);

/// <summary>The synthetic storm generator (all paths but napi).</summary>
/// <param name="RequestedRate">Events per second asked for over its lines.</param>
/// <param name="AchievedRate">Events per second it generated.</param>
/// <param name="FellBehind">It fell more than 1 ms behind its schedule at least once; the events due meanwhile kept their intended time, so the lag is in the latencies.</param>
/// <param name="MaxLagUs">The furthest behind its schedule it found itself, µs.</param>
/// <param name="LateEvents">Events asserted more than 1 ms after their intended time.</param>
/// <param name="LateLagMs">The stalls (stretches of late events), each by its largest lag, summed.</param>
/// <param name="LateRunDelayMs">Of it, the time the generator waited for a CPU of this OS; the rest the OS counted as the thread running or asleep (on a VM: its vCPU not running). Null where the OS does not say.</param>
/// <param name="DeviceThreadPriority">The priority the device threads (generator, NIC sender) ran at, and whether the OS granted it.</param>
/// <param name="Stalls">Stretches of events more than 1 ms late.</param>
/// <param name="CatchUpMs">How long past the end of the duration it went on, asserting events due within it.</param>
internal sealed record GeneratorInfo(
    double RequestedRate, double AchievedRate, double ElapsedSeconds, bool FellBehind, double MaxLagUs, long LateEvents,
    double LateLagMs, double? LateRunDelayMs, long BacklogStalls, long Abandoned, long AllocatedBytes, string DeviceThreadPriority,
    long Stalls = 0, double CatchUpMs = 0);

/// <summary>Where the device threads and the virtual CPUs ran (--device-cores).</summary>
/// <param name="DeviceCores">The setting: "auto", "none" or a core list.</param>
/// <param name="DeviceThreadCores">The OS cores the device threads (storm generator, NIC sender and device thread) were pinned to; empty: not pinned, they share the CPUs' cores.</param>
/// <param name="CpuCores">Per virtual CPU, its core (pinned) or null.</param>
/// <param name="Cores">Per OS core used: what runs there.</param>
/// <param name="PinErrors">Device threads the OS refused to pin, and why.</param>
/// <param name="Warnings">Device threads sharing a core with CPUs, more virtual CPUs than cores, refused pins.</param>
internal sealed record TopologyInfo(
    string DeviceCores, IReadOnlyList<int> DeviceThreadCores, IReadOnlyList<int?> CpuCores, IReadOnlyList<CoreUse> Cores,
    IReadOnlyList<string> PinErrors, IReadOnlyList<string> Warnings);

/// <summary>One OS core: the virtual CPUs pinned there and the device threads.</summary>
internal sealed record CoreUse(int Core, IReadOnlyList<int> Cpus, IReadOnlyList<string> DeviceThreads);

/// <summary>One path's counts and latencies over the measured storm.</summary>
/// <param name="Name">The path (hardirq, tasklet, softirq, threaded, wq-bound, wq-unbound, bh-wq, napi).</param>
/// <param name="BottomHalf">What its bottom half is.</param>
/// <param name="Irq">Its interrupt line.</param>
/// <param name="RequestedRate">Events per second asked for.</param>
/// <param name="Generated">Events the device generated (napi: datagrams sent).</param>
/// <param name="Delivered">Device assertions delivered to a CPU.</param>
/// <param name="Coalesced">Device assertions merged into one already latched (one run serves several events).</param>
/// <param name="Latched">Device assertions that found the line masked (delivered at unmask).</param>
/// <param name="IrqRuns">Handler runs of the line (the /proc/interrupts count).</param>
/// <param name="Reraises">Assertions by the driver itself after a full queue made room (0 unless overloaded).</param>
/// <param name="Handled">Events whose bottom half finished.</param>
/// <param name="Lost">Generated - Handled after the drain: must be 0.</param>
/// <param name="Batches">Bottom-half runs that processed events.</param>
/// <param name="EventsPerBatch">Handled / Batches.</param>
/// <param name="ThroughputPerSecond">Handled per second of generation.</param>
/// <param name="InjectedFaults">Handler runs that threw under --fault throw-every.</param>
/// <param name="TopHalf">Intended time -> top half taking the event (napi: only frames the top half moved).</param>
/// <param name="BottomHalfStart">Intended time -> start of the bottom-half batch.</param>
/// <param name="BottomHalfEnd">Intended time -> end of the bottom-half batch.</param>
internal sealed record PathResult(
    string Name, string BottomHalf, int Irq, double RequestedRate, long Generated, long Delivered, long Coalesced, long Latched,
    long IrqRuns, long Reraises, long Handled, long Lost, long Batches, double EventsPerBatch, double ThroughputPerSecond,
    long InjectedFaults, LatencyStats TopHalf, LatencyStats BottomHalfStart, LatencyStats BottomHalfEnd)
{
    /// <summary>Assert -> top half: the same stage without the generator's lag.</summary>
    public LatencyStats? TopHalfFromAssert { get; init; }

    /// <summary>Assert -> start of the bottom-half batch.</summary>
    public LatencyStats? BottomHalfStartFromAssert { get; init; }

    /// <summary>Assert -> end of the bottom-half batch.</summary>
    public LatencyStats? BottomHalfEndFromAssert { get; init; }

    /// <summary>The device's own lag per event: intended time -> assert (napi: -> send).</summary>
    public LatencyStats? GeneratorLag { get; init; }

    /// <summary>Samples (all stages) whose stamp was not after the event's assert: 0, since each stage's stamp is taken for the event it measures.</summary>
    public long UnorderedSamples { get; init; }

    /// <summary>The merged histograms (ns), for plots; not in the JSON.</summary>
    [JsonIgnore]
    public IReadOnlyList<LongHistogram> Histograms { get; init; } = [];
}

/// <summary>Latency percentiles of one stage, in µs (HdrHistogram, 3 significant digits).</summary>
internal sealed record LatencyStats(long Count, double P50Us, double P90Us, double P99Us, double P999Us, double P9999Us, double MaxUs, double MeanUs)
{
    public static LatencyStats From(LongHistogram h)
    {
        if (h.TotalCount == 0)
        {
            return new LatencyStats(0, 0, 0, 0, 0, 0, 0, 0);
        }
        static double Us(long ns) => ns / 1000.0;
        return new LatencyStats(
            h.TotalCount, Us(h.GetValueAtPercentile(50)), Us(h.GetValueAtPercentile(90)), Us(h.GetValueAtPercentile(99)),
            Us(h.GetValueAtPercentile(99.9)), Us(h.GetValueAtPercentile(99.99)), Us(h.GetMaxValue()), h.GetMean() / 1000.0);
    }
}

/// <summary>Sums over the paths.</summary>
internal sealed record TotalsInfo(long Generated, long Handled, long Lost, long InjectedFaults);

/// <summary>An accounting identity and whether it held.</summary>
internal sealed record IdentityCheck(string Name, bool Holds, string Detail);

/// <summary>One CPU over the measured storm (deltas), and where its time went.</summary>
/// <param name="KsoftirqdTakeovers">Times softirq processing overflowed its budget and woke ksoftirqd.</param>
/// <param name="Time">CPU time split, ms (null parts: not measured).</param>
internal sealed record CpuResult(int Cpu, int Core, long HardirqEntries, long KsoftirqdTakeovers, long Parks, long LocalTimerInterrupts, long IpiCalls, CpuTimeInfo Time);

/// <summary>Time in ms: hard-IRQ and softirq (irq time accounting, wall), and the CPU time of ksoftirqd, bound kworkers, irq threads and cpu/N itself.</summary>
internal sealed record CpuTimeInfo(double? HardIrqMs, double? SoftirqMs, double? KsoftirqdMs, double? WorkersMs, double? IrqThreadsMs, double? CpuThreadMs);

/// <summary>The NIC path: interrupts against polls.</summary>
/// <param name="Interrupts">Handler runs of the NIC's line.</param>
/// <param name="Schedules">napi_schedule() calls that switched the device to polling.</param>
/// <param name="Polls">Poll calls.</param>
/// <param name="FullWeightPolls">Polls that used the whole weight (still polling).</param>
/// <param name="CompleteDone">Returns to interrupt mode.</param>
/// <param name="PacketsPerInterrupt">Packets / Interrupts: ≫ 1 once NAPI polls.</param>
/// <param name="ReadyWhileMasked">Periods the device had data while its interrupt was masked (interrupts NAPI saved).</param>
/// <param name="TimeSqueeze">NET_RX runs that ran out of budget (all CPUs).</param>
/// <param name="KernelDrops">Datagrams the kernel dropped at the socket (/proc/net/udp), or null where unknown.</param>
/// <param name="Window">Datagrams the sender may have unprocessed.</param>
/// <param name="WindowStalls">Times the sender waited for the driver.</param>
/// <param name="SenderLateArrivals">Sends more than 1 ms behind schedule (the sender could not pace the rate).</param>
internal sealed record NapiResult(
    long Interrupts, long Schedules, long Polls, long FullWeightPolls, long CompleteDone, long Packets, double PacketsPerInterrupt,
    long ReadyWhileMasked, long TimeSqueeze, long? KernelDrops, int Window, long WindowStalls, long SenderLateArrivals, long BadFrames);

/// <summary>Faults injected and what the runtime reported.</summary>
/// <param name="Injected">The --fault values.</param>
/// <param name="ThrowsInjected">Handler runs that threw on purpose.</param>
/// <param name="ThrowsReported">Of those, the ones the runtime's fault log reported (must be equal).</param>
/// <param name="FaultLogTotal">Everything the fault log recorded during the measured storm (oopses and warnings).</param>
/// <param name="Recent">The last few fault-log records, as text.</param>
internal sealed record FaultsResult(
    IReadOnlyList<string> Injected, long ThrowsInjected, long ThrowsReported, long FaultLogTotal,
    SpuriousReport? IrqNone, SelfRaisingReport? SelfRaisingSoftirq, StuckWorkReport? StuckWork, IReadOnlyList<string> Recent);

/// <summary>GC activity during the measured storm (the GC is our SMI: a pause stalls every CPU thread).</summary>
/// <param name="ProcessAllocatedBytes">Bytes the whole process allocated from the start of the measured storm to the end of its drain (the tool's own progress display and bookkeeping included).</param>
internal sealed record GcInfo(int Gen0, int Gen1, int Gen2, double PauseMs, long ProcessAllocatedBytes);

/// <summary>The runtime's /proc renderings at the end of the run (counts since boot, warm-up included).</summary>
internal sealed record ProcTables(string Interrupts, string Softirqs, string SoftnetStat);

/// <summary>--compare: the same storm under two option sets, each run --repeat times (alternating A, B).</summary>
/// <param name="Key">The option compared (idle, pin, priorities, arrival, cpus, ksoftirqd-nice, preset).</param>
internal sealed record ComparisonResult(string Key, string A, string B, IReadOnlyList<RatioRow> Rows)
{
    /// <summary>Runs of A that went into the figures (--repeat, fewer if interrupted).</summary>
    public int RepeatsA { get; init; } = 1;

    /// <summary>Runs of B that went into the figures.</summary>
    public int RepeatsB { get; init; } = 1;

    /// <summary>Median over A's runs of the generator's achieved rate, events/s.</summary>
    public double AchievedRateA { get; init; }

    /// <summary>Median over B's runs of the generator's achieved rate, events/s.</summary>
    public double AchievedRateB { get; init; }

    /// <summary>Set when the achieved rates (medians) differ by more than 5%: the sides were offered different loads.</summary>
    public string? OfferedLoadWarning { get; init; }
}

/// <summary>
/// One metric of one path under A and B: A and B are the medians over each side's runs (with one run per
/// side, that run's value); Ratio = B / A of the medians (null when A is 0).
/// </summary>
internal sealed record RatioRow(string Path, string Metric, double A, double B, double? Ratio)
{
    /// <summary>Smallest value over A's runs.</summary>
    public double? AMin { get; init; }

    /// <summary>Largest value over A's runs.</summary>
    public double? AMax { get; init; }

    /// <summary>Smallest value over B's runs.</summary>
    public double? BMin { get; init; }

    /// <summary>Largest value over B's runs.</summary>
    public double? BMax { get; init; }
}
