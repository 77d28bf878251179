using System.Globalization;
using System.Text;

namespace DeferRuntime.Devices;

/// <summary>What a storm did: per-line counts, whether the generator could pace the requested rate, and the GC activity during the run.</summary>
/// <param name="Lines">Per-line counts, in <see cref="StormOptions.Lines"/> order.</param>
/// <param name="Elapsed">Generation time (to the end of the duration, or to the last event of a counted run).</param>
/// <param name="RequestedRate">Sum of the lines' requested rates, events per second.</param>
/// <param name="AchievedRate">Events generated per second of <paramref name="Elapsed"/>.</param>
/// <param name="FellBehind">The generator fell more than <see cref="StormOptions.MaxLag"/> behind its schedule: the requested rate was more than it could pace.</param>
/// <param name="MaxLag">The furthest behind a deadline the generator found itself (an event's intended time to when it got to it).</param>
/// <param name="LateEvents">Events asserted more than MaxLag after their intended time (the schedule never restarts: each keeps its intended time, and its lag counts in latency from it).</param>
/// <param name="LateLag">The generator's stalls (stretches of events more than MaxLag late), each by its largest lag, summed: how long it was away.</param>
/// <param name="LateRunDelay">Of <paramref name="LateLag"/>, the time the generator waited for a CPU of this OS (its run delay across the stalls); the rest the OS counted as the thread running or asleep, which on a VM is mostly the vCPU not running. Null where the OS does not say (not Linux).</param>
/// <param name="Generated">Events generated over all lines.</param>
/// <param name="Handled">Events the drivers drained over all lines.</param>
/// <param name="BacklogStalls">Times generation waited because a line's backlog reached <see cref="StormOptions.BacklogLimit"/>.</param>
/// <param name="Abandoned">Backlogged events never handed over because the generator was disposed while its driver did not drain (0 in a healthy run).</param>
/// <param name="Completed">Generation is over and the backlog handed over; the GC and allocation figures are final.</param>
/// <param name="Gen0Collections">Gen-0 collections during the run (the GC is our SMI: it stalls every CPU thread).</param>
/// <param name="Gen1Collections">Gen-1 collections during the run.</param>
/// <param name="Gen2Collections">Gen-2 collections during the run.</param>
/// <param name="GcPause">Total GC pause time during the run.</param>
/// <param name="GeneratorAllocatedBytes">Bytes the storm thread allocated during the run: a little one-time runtime setup, nothing per event unless a backlog had to grow.</param>
public sealed record StormReport(
    IReadOnlyList<StormLineStats> Lines, TimeSpan Elapsed, double RequestedRate, double AchievedRate, bool FellBehind,
    TimeSpan MaxLag, long LateEvents, TimeSpan LateLag, TimeSpan? LateRunDelay, long Generated, long Handled, long BacklogStalls, long Abandoned, bool Completed,
    int Gen0Collections, int Gen1Collections, int Gen2Collections, TimeSpan GcPause, long GeneratorAllocatedBytes)
{
    /// <summary>Stretches of events more than <see cref="StormOptions.MaxLag"/> late (each a stall of the generator, caught up afterwards).</summary>
    public long Stalls { get; init; }

    /// <summary>How long past the end of its duration the generator went on asserting events due within it (it was behind at the end); zero when on time.</summary>
    public TimeSpan CatchUp { get; init; }

    /// <summary>The OS cores the storm thread was pinned to (<see cref="StormOptions.DeviceCores"/>); empty when not pinned.</summary>
    public IReadOnlyList<int> DeviceCores { get; init; } = [];

    /// <summary>Why the storm thread could not be pinned to <see cref="DeviceCores"/>, or null.</summary>
    public string? PinError { get; init; }

    /// <summary>
    /// Where the stalls' lag went: "12.3 ms late in all, 0.4 ms of it waiting for a CPU of this OS;
    /// the rest the OS counted as the generator running or asleep (on a VM: its vCPU not running)".
    /// </summary>
    public string DescribeLateLag() => DescribeLateLag(LateLag, LateRunDelay);

    /// <summary>As <see cref="DescribeLateLag()"/>, from the two figures (the CLI's report has them as milliseconds).</summary>
    public static string DescribeLateLag(TimeSpan lateLag, TimeSpan? lateRunDelay)
    {
        string total = string.Create(CultureInfo.InvariantCulture, $"{lateLag.TotalMilliseconds:N1} ms late in all");
        return lateRunDelay is { } waited
            ? string.Create(CultureInfo.InvariantCulture,
                $"{total}, {waited.TotalMilliseconds:N1} ms of it waiting for a CPU of this OS; the rest the OS counted as the generator running or asleep (on a VM: its vCPU not running)")
            : total;
    }

    /// <summary>A table of the lines and a summary line, for a console.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        sb.AppendLine(" irq  arrival        rate/s   generated    asserted   delivered   coalesced     latched     handled  max backlog");
        foreach (var l in Lines)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"{l.Irq,4}  {l.Arrival,-8} {l.RatePerSecond,12:N0} {l.Generated,11} {l.Asserted,11} {l.Delivered,11} {l.Coalesced,11} {l.Latched,11} {l.Handled,11} {l.MaxBacklog,12}");
            sb.AppendLine();
        }
        sb.Append(CultureInfo.InvariantCulture,
            $"requested {RequestedRate:N0}/s, achieved {AchievedRate:N0}/s over {Elapsed.TotalMilliseconds:N1} ms; max lag {MaxLag.TotalMicroseconds:N0} µs");
        sb.AppendLine(FellBehind ? $" -- FELL BEHIND: {Stalls} stalls, {LateEvents} events more than the allowed lag late (each timed from its intended time); {DescribeLateLag()}" : "");
        sb.Append(CultureInfo.InvariantCulture,
            $"GC during the run: {Gen0Collections}/{Gen1Collections}/{Gen2Collections} (gen0/1/2), pause {GcPause.TotalMilliseconds:N2} ms; generator allocated {GeneratorAllocatedBytes} B");
        if (BacklogStalls != 0)
        {
            sb.Append(CultureInfo.InvariantCulture, $"; stalled {BacklogStalls} times on a full backlog (the drivers could not keep up)");
        }
        if (Abandoned != 0)
        {
            sb.Append(CultureInfo.InvariantCulture, $"; {Abandoned} backlogged events ABANDONED (the driver stopped draining)");
        }
        sb.AppendLine();
        return sb.ToString();
    }
}
