using System.Globalization;
using DeferRuntime.Cli.Storm.Report;
using DeferRuntime.Platform;

namespace DeferRuntime.Cli.Storm;

/// <summary>
/// <c>--device-cores auto|none|LIST</c>: which OS cores the device threads (the storm generator, the NIC's
/// sender and device thread) run on, apart from the virtual CPUs. They stand in for hardware: sharing a core
/// with a busy cpu/N, the "hardware" is late whenever that CPU is busy (the lag shows as gen lag, in the
/// latencies from intended time), which a real device never is.
/// </summary>
/// <remarks>
/// <para><c>auto</c> (default): the last core this process may run on goes to the devices when there is one
/// to spare (more cores than virtual CPUs); the virtual CPUs then default to the remaining cores (at least
/// 1). <c>none</c>: devices unpinned, sharing the CPUs' cores (the behaviour before the option). A list
/// pins the devices there and keeps the CPUs on the other cores (on all of them if the list leaves none).</para>
/// <para>How the CPUs are kept off the device cores: the runtime pins cpu/N to the calling thread's allowed
/// cores (sched_getaffinity) at boot, so the runner restricts its own affinity to the CPU cores while it
/// boots the runtime (threads it creates inherit that mask), then restores it.</para>
/// </remarks>
internal sealed record DeviceCorePlan(string Spec, IReadOnlyList<int> DeviceCores, IReadOnlyList<int> CpuCores, string? Note)
{
    public const string Auto = "auto";
    public const string None = "none";

    /// <summary>The cores this process may run on.</summary>
    public static int[] Allowed() => ThreadPlacement.AllowedCores();

    /// <summary>Validates <c>--device-cores</c>; returns it normalized ("auto", "none" or "1,3").</summary>
    public static string Parse(string? spec)
    {
        string s = (spec ?? Auto).Trim().ToLowerInvariant();
        if (s is Auto or None)
        {
            return s;
        }
        var cores = new SortedSet<int>();
        foreach (string part in s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int core) || core > 1023)
            {
                throw new FormatException($"--device-cores {spec}: expected auto, none or a comma-separated list of core numbers (0 to 1023)");
            }
            cores.Add(core);
        }
        if (cores.Count == 0)
        {
            throw new FormatException($"--device-cores {spec}: expected auto, none or a comma-separated list of core numbers");
        }
        var allowed = Allowed();
        foreach (int core in cores.Where(c => !allowed.Contains(c)))
        {
            throw new FormatException($"--device-cores {spec}: core {core} is not one this process may run on ({string.Join(",", allowed)})");
        }
        return string.Join(",", cores);
    }

    /// <summary>The default number of virtual CPUs under <paramref name="spec"/>: the cores left to them (at least 1).</summary>
    public static int DefaultCpus(string spec)
    {
        var allowed = Allowed();
        return spec switch
        {
            None => allowed.Length,
            Auto => allowed.Length > 1 ? allowed.Length - 1 : allowed.Length,
            _ => Math.Max(1, allowed.Except(ParseList(spec)).Count()),
        };
    }

    /// <summary>Where the devices and <paramref name="cpus"/> virtual CPUs go under <paramref name="spec"/>.</summary>
    public static DeviceCorePlan Resolve(string spec, int cpus)
    {
        var allowed = Allowed();
        switch (spec)
        {
            case None:
                return new(spec, [], allowed, null);
            case Auto:
                return cpus < allowed.Length
                    ? new(spec, [allowed[^1]], allowed[..^1], null)
                    : new(spec, [], allowed, string.Create(CultureInfo.InvariantCulture,
                        $"auto: no core to spare ({cpus} virtual CPUs on {allowed.Length} cores), the device threads share the CPUs' cores"));
            default:
                var devices = ParseList(spec);
                var rest = allowed.Except(devices).ToArray();
                return rest.Length > 0
                    ? new(spec, devices, rest, null)
                    : new(spec, devices, allowed, "the device cores are all the cores there are: the CPUs share them");
        }
    }

    private static int[] ParseList(string spec) =>
        spec.Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>
    /// Runs <paramref name="boot"/> with the calling thread restricted to <see cref="CpuCores"/> when devices
    /// have cores of their own (the runtime takes its CPUs' cores from the booting thread), then restores it.
    /// </summary>
    public T BootOnCpuCores<T>(Func<T> boot)
    {
        int[]? saved = DeviceCores.Count > 0 ? ThreadPlacement.CurrentThreadCores() : null;
        if (saved is null || ThreadPlacement.PinCurrentThreadToCores(CpuCores.ToArray()) is not null)
        {
            return boot();
        }
        try
        {
            return boot();
        }
        finally
        {
            _ = ThreadPlacement.PinCurrentThreadToCores(saved);
        }
    }

    /// <summary>The topology the report shows: per core what runs there, and the warnings.</summary>
    public TopologyInfo Describe(IReadOnlyList<(int Cpu, int Core)> cpus, bool pinned, IReadOnlyList<string> deviceThreads, IReadOnlyList<string> pinErrors)
    {
        var warnings = new List<string>();
        var cores = new SortedDictionary<int, (List<int> Cpus, List<string> Devices)>();
        if (pinned)
        {
            foreach (var (cpu, core) in cpus)
            {
                Slot(cores, core).Cpus.Add(cpu);
            }
        }
        foreach (int core in DeviceCores)
        {
            Slot(cores, core).Devices.AddRange(deviceThreads);
        }
        if (Note is not null)
        {
            warnings.Add(Note);
        }
        if (deviceThreads.Count > 0)
        {
            if (DeviceCores.Count == 0)
            {
                warnings.Add($"device threads ({string.Join(", ", deviceThreads)}) share cores with the virtual CPUs{(Spec == None ? " (--device-cores none)" : "")}: a busy CPU delays the \"hardware\"; that lag shows as gen lag, in the latencies from intended time");
            }
            else if (pinned && cpus.Any(c => DeviceCores.Contains(c.Core)))
            {
                warnings.Add($"device threads share core(s) {string.Join(",", DeviceCores.Where(d => cpus.Any(c => c.Core == d)))} with virtual CPUs");
            }
        }
        int cpuCoreCount = pinned ? cpus.Select(c => c.Core).Distinct().Count() : CpuCores.Count;
        if (cpus.Count > cpuCoreCount)
        {
            warnings.Add(string.Create(CultureInfo.InvariantCulture, $"{cpus.Count} virtual CPUs on {cpuCoreCount} cores: CPUs share cores (their latencies include waiting for each other)"));
        }
        if (!pinned)
        {
            warnings.Add("virtual CPUs not pinned (--no-pin): the OS moves them between cores");
        }
        warnings.AddRange(pinErrors.Select(e => $"device thread not pinned: {e}"));
        return new TopologyInfo(
            Spec, DeviceCores, cpus.Select(c => pinned ? c.Core : (int?)null).ToArray(),
            cores.Select(kv => new CoreUse(kv.Key, kv.Value.Cpus, kv.Value.Devices)).ToArray(), pinErrors, warnings);
    }

    private static (List<int> Cpus, List<string> Devices) Slot(SortedDictionary<int, (List<int>, List<string>)> cores, int core)
    {
        if (!cores.TryGetValue(core, out var slot))
        {
            slot = ([], []);
            cores[core] = slot;
        }
        return slot;
    }
}
