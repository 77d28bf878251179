using System.Globalization;

namespace DeferRuntime.Torture;

/// <summary>
/// The torture tests a run includes, after the kernel's torture modules: locktorture for the locks, the
/// same harness (kernel/torture.c) for tasklets, workqueues, per-CPU data and shutdown. <see cref="All"/> is the default.
/// </summary>
[Flags]
public enum TortureSuites
{
    /// <summary>No suite (with <see cref="TortureOptions.Busted"/> still set, only lock_busted runs).</summary>
    None = 0,

    /// <summary>locktorture: every lock type of <see cref="TortureOptions.LockTypes"/>.</summary>
    Locks = 1 << 0,

    /// <summary>Tasklets scheduled from many threads and CPUs: never concurrent with themselves, no schedule lost.</summary>
    Tasklets = 1 << 1,

    /// <summary>Queue/cancel/flush/requeue storms on bound, unbound, ordered, max_active-limited and BH workqueues.</summary>
    Workqueues = 1 << 2,

    /// <summary>Runtime.Dispose() while load keeps coming: everything accepted runs, the rest is refused.</summary>
    Shutdown = 1 << 3,

    /// <summary>Per-CPU counters updated with plain increments by tasks, softirqs and hard IRQs of each CPU, each under the protection its context needs: no update lost.</summary>
    PerCpu = 1 << 4,

    /// <summary>Every suite.</summary>
    All = Locks | Tasklets | Workqueues | Shutdown | PerCpu,
}

/// <summary>
/// The module parameters of locktorture (nwriters_stress, stutter, shuffle_interval, long_hold, ...) for a
/// <see cref="TortureRunner.Run"/>, plus the suites beyond locks. Every default is what a run with no
/// arguments uses; <see cref="Validate"/> names the rule a bad value breaks.
/// </summary>
public sealed class TortureOptions
{
    /// <summary>The value of <see cref="LockTypes"/> that selects every lock type except lock_busted (locktorture's torture_type, for all types).</summary>
    public const string AllLockTypes = "all";

    /// <summary>Lock types to torture (names from <see cref="TortureLockTypes.Names"/>), or "all". lock_busted runs only when named or with <see cref="Busted"/>.</summary>
    public IReadOnlyList<string> LockTypes { get; set; } = [AllLockTypes];

    /// <summary>Which suites run.</summary>
    public TortureSuites Suites { get; set; } = TortureSuites.All;

    /// <summary>Virtual CPUs of each runtime the suites boot.</summary>
    public int CpuCount { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// nwriters_stress: writer threads per lock type, and the load threads of the other suites. Null: twice
    /// the CPUs, as locktorture; lock types with a read side get CPUs writers and CPUs readers instead
    /// (locktorture's split for rw locks), unless set. The percpu suite spreads its bound threads evenly,
    /// rounding up to a multiple of the CPUs and at least two per CPU.
    /// </summary>
    public int? Writers { get; set; }

    /// <summary>nreaders_stress: reader threads of lock types with a read side (rwsem_lock). Null: the CPU count.</summary>
    public int? Readers { get; set; }

    /// <summary>How long each test runs: each lock type, and each other suite's load phase.</summary>
    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>stutter: load runs this long, then every load thread pauses this long, and again (rcutorture's stutter_wait). Zero disables it.</summary>
    public TimeSpan Stutter { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>shuffle_interval: how often every load thread moves to another virtual CPU and is re-pinned to that CPU's core. Zero disables it.</summary>
    public TimeSpan ShuffleInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>long_hold: how long an occasional long hold keeps the lock (busy-waiting, like locktorture's mdelay). Zero disables long holds.</summary>
    public TimeSpan LongHold { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>The chance that an acquisition is a long hold (locktorture: 1 in nwriters × 2000 × long_hold).</summary>
    public double LongHoldProbability { get; set; } = 1e-5;

    /// <summary>Seed of every load thread's random stream; null picks one, which the report records so a run can be repeated.</summary>
    public int? Seed { get; set; }

    /// <summary>
    /// Also runs lock_busted, a lock that fails to exclude, and has the percpu suite break a rule (tasks
    /// update its hard-IRQ counter under preempt_disable only): the run must then fail, which proves the checkers.
    /// </summary>
    public bool Busted { get; set; }

    /// <summary>Fault injection: every Nth tasklet callback, work function and softirq handler throws (0: none). The runtime must keep going and count each one in Runtime.Faults.</summary>
    public int FaultEvery { get; set; }

    /// <summary>Pin runtime and load threads to cores (RuntimeOptions.Pinning); where the OS refuses, the report says why.</summary>
    public bool Pinning { get; set; } = true;

    /// <summary>Adjusts the options of each runtime a suite boots (after CpuCount and Pinning are set from these options).</summary>
    public Action<RuntimeOptions>? ConfigureRuntime { get; set; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the option and the rule it breaks.</summary>
    public void Validate()
    {
        if (CpuCount < 1)
        {
            throw new ArgumentException($"torture: CpuCount is {CpuCount}; a run needs at least one CPU.", nameof(CpuCount));
        }
        if (Writers is < 1)
        {
            throw new ArgumentException($"torture: Writers is {Writers}; locktorture must run at least one writer.", nameof(Writers));
        }
        if (Readers is < 0)
        {
            throw new ArgumentException($"torture: Readers is {Readers}; it is zero or more.", nameof(Readers));
        }
        if (Busted && Writers is < 2)
        {
            throw new ArgumentException("torture: Busted needs at least 2 writers: lock_busted is proved broken by forcing two writers into it at once.", nameof(Writers));
        }
        if (Duration <= TimeSpan.Zero)
        {
            throw new ArgumentException($"torture: Duration is {Duration}; it must be positive.", nameof(Duration));
        }
        if (Stutter < TimeSpan.Zero || ShuffleInterval < TimeSpan.Zero || LongHold < TimeSpan.Zero)
        {
            throw new ArgumentException("torture: Stutter, ShuffleInterval and LongHold are zero (off) or positive.");
        }
        if (LongHold > TimeSpan.FromSeconds(1))
        {
            throw new ArgumentException($"torture: LongHold is {LongHold}; a hold busy-waits with the lock held, so it is at most 1 s.", nameof(LongHold));
        }
        if (double.IsNaN(LongHoldProbability) || LongHoldProbability < 0 || LongHoldProbability > 1)
        {
            throw new ArgumentException($"torture: LongHoldProbability is {LongHoldProbability.ToString(CultureInfo.InvariantCulture)}; it is a probability, 0 to 1.", nameof(LongHoldProbability));
        }
        if (FaultEvery < 0)
        {
            throw new ArgumentException($"torture: FaultEvery is {FaultEvery}; it is 0 (off) or N for every Nth call.", nameof(FaultEvery));
        }
        _ = TortureLockTypes.Resolve(LockTypes, Busted);
    }
}
