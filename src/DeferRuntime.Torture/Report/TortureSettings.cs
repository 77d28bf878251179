namespace DeferRuntime.Torture;

/// <summary>
/// The parameters a run actually used, as locktorture prints its module parameters at the start and end
/// of a test ("--- End of test: SUCCESS: nwriters_stress=4 stutter=5 ..."); with the seed, a run can be
/// repeated.
/// </summary>
public sealed class TortureSettings
{
    /// <summary>Lock types run, in order.</summary>
    public IReadOnlyList<string> LockTypes { get; init; } = [];

    /// <summary>Tests run, in order (lock types, then "tasklet", "workqueue", "percpu", "shutdown").</summary>
    public IReadOnlyList<string> Tests { get; init; } = [];

    /// <summary>Virtual CPUs of each runtime.</summary>
    public int CpuCount { get; init; }

    /// <summary>Writers asked for (null: the default, twice the CPUs; CPUs for lock types with readers).</summary>
    public int? Writers { get; init; }

    /// <summary>Readers asked for (null: the default, the CPU count).</summary>
    public int? Readers { get; init; }

    /// <summary>Duration of each test, in seconds.</summary>
    public double DurationSeconds { get; init; }

    /// <summary>Stutter period, in seconds (0: off).</summary>
    public double StutterSeconds { get; init; }

    /// <summary>Shuffle interval, in seconds (0: off).</summary>
    public double ShuffleIntervalSeconds { get; init; }

    /// <summary>Long hold, in milliseconds (0: off).</summary>
    public double LongHoldMilliseconds { get; init; }

    /// <summary>Chance that an acquisition is a long hold.</summary>
    public double LongHoldProbability { get; init; }

    /// <summary>The seed of the load threads' random streams.</summary>
    public int Seed { get; init; }

    /// <summary>lock_busted was run.</summary>
    public bool Busted { get; init; }

    /// <summary>Every Nth handler or work-function call threw (0: no fault injection).</summary>
    public int FaultEvery { get; init; }

    /// <summary>Pinning was asked for.</summary>
    public bool Pinning { get; init; }
}

/// <summary>The system under test, as the kernel's torture scripts (tools/testing/selftests/rcutorture) record it: the machine, and what the OS granted the runtime's threads at boot.</summary>
public sealed class TortureEnvironment
{
    /// <summary>Environment.ProcessorCount.</summary>
    public int ProcessorCount { get; init; }

    /// <summary>The OS, as RuntimeInformation describes it.</summary>
    public string OperatingSystem { get; init; } = "";

    /// <summary>The .NET runtime.</summary>
    public string Framework { get; init; } = "";

    /// <summary>What the OS granted the first runtime's threads: pinning and priorities, and why not where refused.</summary>
    public string Placement { get; init; } = "";
}
