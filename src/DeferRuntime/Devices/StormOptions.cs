namespace DeferRuntime.Devices;

/// <summary>How the events of one storm line arrive.</summary>
public enum StormArrival
{
    /// <summary>Evenly spaced: one event every 1/rate seconds (a periodic device).</summary>
    Constant,
    /// <summary>A Poisson process: exponential inter-arrival times with mean 1/rate (independent events, e.g. packets from many hosts).</summary>
    Poisson,
    /// <summary>Bursts of <see cref="StormLine.BurstLength"/> back-to-back events, one burst every BurstLength/rate seconds (same mean rate).</summary>
    Bursty,
}

/// <summary>One line a <see cref="StormGenerator"/> drives.</summary>
/// <param name="Irq">The interrupt line (see <see cref="Interrupts.IrqController.AllocateIrq"/>); each line at most once per storm.</param>
/// <param name="RatePerSecond">Mean events per second; positive and finite.</param>
public sealed record StormLine(int Irq, double RatePerSecond)
{
    /// <summary>The arrival process (default <see cref="StormArrival.Constant"/>).</summary>
    public StormArrival Arrival { get; init; } = StormArrival.Constant;

    /// <summary>Events per burst under <see cref="StormArrival.Bursty"/> (default 16).</summary>
    public int BurstLength { get; init; } = 16;
}

/// <summary>Options of a <see cref="StormGenerator"/>: the lines, and either a duration or an event count.</summary>
public sealed record StormOptions
{
    /// <summary>The lines to drive, each with its rate and arrival process.</summary>
    public required IReadOnlyList<StormLine> Lines { get; init; }

    /// <summary>Generate until this much time has passed since <see cref="StormGenerator.Start"/>. Exactly one of Duration and EventCount.</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>Generate exactly this many events in total over all lines, then stop. Exactly one of Duration and EventCount.</summary>
    public long? EventCount { get; init; }

    /// <summary>
    /// Events each line's FIFO holds between the generator and the driver (default 4096, a power of two).
    /// Events that find it full wait in the generator's backlog (counted), never dropped; see <see cref="BacklogLimit"/>.
    /// </summary>
    public int RingCapacity { get; init; } = 4096;

    /// <summary>
    /// Events a line's backlog may hold (default 1,048,576: 8 MiB) before the generator stops generating and
    /// waits for that line's driver to drain (counted in <see cref="StormReport.BacklogStalls"/>; the time
    /// lost shows as lag). Bounds memory when a driver stalls or the rate is more than the CPUs can handle.
    /// </summary>
    public int BacklogLimit { get; init; } = 1 << 20;

    /// <summary>Seed of the Poisson arrivals, so a storm can be replayed (default 1).</summary>
    public int Seed { get; init; } = 1;

    /// <summary>
    /// How far behind schedule the generator may fall before it reports that it could not pace the requested
    /// rate (default 1 ms). It never restarts its schedule: a late generator asserts the events that fell due
    /// meanwhile as fast as it can, each keeping its intended time, so its lag shows as latency from the
    /// intended time; behind by more than this, it also sets <see cref="StormReport.FellBehind"/> and counts
    /// the stall (<see cref="StormReport.LateEvents"/>, <see cref="StormReport.Stalls"/>).
    /// </summary>
    public TimeSpan MaxLag { get; init; } = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// OS cores to pin the storm thread to (a device, not a CPU of the runtime); null or empty: not pinned,
    /// the thread runs where the OS puts it. A refusal is reported in <see cref="StormReport.PinError"/>, never fatal.
    /// </summary>
    public IReadOnlyList<int>? DeviceCores { get; init; }

    /// <summary>
    /// Test hook: once this many events have been generated, the storm thread stops for
    /// <see cref="StallFor"/> before its next event, as if the OS had taken its CPU. 0: never.
    /// </summary>
    internal long StallAfterEvents { get; init; }

    /// <summary>How long the <see cref="StallAfterEvents"/> stall lasts.</summary>
    internal TimeSpan StallFor { get; init; }

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Lines);
        if (Lines.Count == 0)
        {
            throw new ArgumentException("A storm needs at least one line.", nameof(Lines));
        }
        if (Duration.HasValue == EventCount.HasValue)
        {
            throw new ArgumentException("A storm runs for a Duration or for an EventCount: set exactly one of them.", nameof(Duration));
        }
        if (Duration is { } d && d <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(Duration), d, "Duration must be positive.");
        }
        if (EventCount is { } n && n <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(EventCount), n, "EventCount must be positive.");
        }
        if (RingCapacity < 2 || (RingCapacity & (RingCapacity - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(RingCapacity), RingCapacity, "RingCapacity must be a power of two, at least 2.");
        }
        if (BacklogLimit < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(BacklogLimit), BacklogLimit, "BacklogLimit must be at least 1.");
        }
        if (MaxLag <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxLag), MaxLag, "MaxLag must be positive.");
        }
        var seen = new HashSet<int>();
        foreach (var line in Lines)
        {
            ArgumentNullException.ThrowIfNull(line, nameof(Lines));
            if (!seen.Add(line.Irq))
            {
                throw new ArgumentException($"IRQ {line.Irq} appears twice: one storm source per line, so that its handler drains one FIFO.", nameof(Lines));
            }
            if (!double.IsFinite(line.RatePerSecond) || line.RatePerSecond <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(Lines), line.RatePerSecond, $"IRQ {line.Irq}: the rate must be positive and finite.");
            }
            if (line.BurstLength < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(Lines), line.BurstLength, $"IRQ {line.Irq}: BurstLength must be at least 1.");
            }
            if (!Enum.IsDefined(line.Arrival))
            {
                throw new ArgumentOutOfRangeException(nameof(Lines), line.Arrival, $"IRQ {line.Irq}: unknown arrival process.");
            }
        }
    }
}
