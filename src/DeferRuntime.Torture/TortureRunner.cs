using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using DeferRuntime.Torture.Harness;
using DeferRuntime.Torture.Locks;
using DeferRuntime.Torture.Suites;

namespace DeferRuntime.Torture;

/// <summary>
/// The torture tool's engine, after kernel/locking/locktorture.c and kernel/torture.c: runs each selected
/// test (every lock type, then the tasklet, workqueue, per-CPU and shutdown suites) on a runtime of its own, for
/// <see cref="TortureOptions.Duration"/> each, and returns the report. The command line registers a
/// <c>torture</c> subcommand that maps its options onto <see cref="TortureOptions"/> and exits 0 only
/// when <see cref="TortureReport.Passed"/>.
/// </summary>
/// <remarks>
/// Each test boots its own runtime so that one test's failure (a hung writer, a leaked binding, a
/// fault) cannot leak into the next, and so that Runtime.Faults counts exactly what that test caused.
/// Tests run one after another: they load every core, and two at once would measure each other.
/// </remarks>
public static class TortureRunner
{
    /// <summary>The name of the tasklet suite's test in reports and progress.</summary>
    public const string TaskletTest = "tasklet";

    /// <summary>The name of the workqueue suite's test in reports and progress.</summary>
    public const string WorkqueueTest = "workqueue";

    /// <summary>The name of the per-CPU data suite's test in reports and progress.</summary>
    public const string PerCpuTest = "percpu";

    /// <summary>The name of the shutdown-under-load suite's test in reports and progress.</summary>
    public const string ShutdownTest = "shutdown";

    /// <summary>The tests <paramref name="options"/> selects, in run order (for a progress display).</summary>
    public static IReadOnlyList<string> PlanTests(TortureOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var tests = new List<string>(LockTypesToRun(options));
        if (options.Suites.HasFlag(TortureSuites.Tasklets))
        {
            tests.Add(TaskletTest);
        }
        if (options.Suites.HasFlag(TortureSuites.Workqueues))
        {
            tests.Add(WorkqueueTest);
        }
        if (options.Suites.HasFlag(TortureSuites.PerCpu))
        {
            tests.Add(PerCpuTest);
        }
        if (options.Suites.HasFlag(TortureSuites.Shutdown))
        {
            tests.Add(ShutdownTest);
        }
        return tests;
    }

    /// <summary>
    /// Runs the tests <paramref name="options"/> selects and reports. Progress goes to
    /// <paramref name="progress"/> a few times a second; cancelling stops the running test early (its
    /// result is kept) and skips the rest, and the report is then not <see cref="TortureReport.Passed"/>.
    /// Throws <see cref="ArgumentException"/> for invalid options, before anything runs.
    /// </summary>
    public static TortureReport Run(TortureOptions options, IProgress<TortureProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var started = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        int seed = options.Seed ?? RandomNumberGenerator.GetInt32(int.MaxValue);
        var lockTypes = LockTypesToRun(options);
        var tests = PlanTests(options);
        var run = new TortureRun(options, seed, progress, tests.Count, cancellationToken);

        var locks = new List<LockTortureResult>();
        TaskletTortureResult? tasklets = null;
        WorkqueueTortureResult? workqueues = null;
        PerCpuTortureResult? perCpu = null;
        ShutdownTortureResult? shutdown = null;
        bool cancelled = false;
        for (int i = 0; i < tests.Count; i++)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                cancelled = true;
                break;
            }
            run.TestIndex = i;
            string test = tests[i];
            switch (test)
            {
                case TaskletTest:
                    tasklets = TaskletTorture.Run(run);
                    break;
                case WorkqueueTest:
                    workqueues = WorkqueueTorture.Run(run);
                    break;
                case PerCpuTest:
                    perCpu = PerCpuTorture.Run(run);
                    break;
                case ShutdownTest:
                    shutdown = ShutdownTorture.Run(run);
                    break;
                default:
                    locks.Add(LockTortureTest.Run(run, test));
                    break;
            }
        }
        cancelled |= cancellationToken.IsCancellationRequested;

        return new TortureReport
        {
            Started = started,
            ElapsedSeconds = clock.Elapsed.TotalSeconds,
            Settings = new TortureSettings
            {
                LockTypes = lockTypes,
                Tests = tests,
                CpuCount = options.CpuCount,
                Writers = options.Writers,
                Readers = options.Readers,
                DurationSeconds = options.Duration.TotalSeconds,
                StutterSeconds = options.Stutter.TotalSeconds,
                ShuffleIntervalSeconds = options.ShuffleInterval.TotalSeconds,
                LongHoldMilliseconds = options.LongHold.TotalMilliseconds,
                LongHoldProbability = options.LongHoldProbability,
                Seed = seed,
                Busted = lockTypes.Contains(TortureLockTypes.LockBusted),
                FaultEvery = options.FaultEvery,
                Pinning = options.Pinning,
            },
            Environment = new TortureEnvironment
            {
                ProcessorCount = Environment.ProcessorCount,
                OperatingSystem = RuntimeInformation.OSDescription,
                Framework = RuntimeInformation.FrameworkDescription,
                Placement = run.PlacementSummary ?? "no runtime was booted",
            },
            Locks = locks,
            Tasklets = tasklets,
            Workqueues = workqueues,
            PerCpu = perCpu,
            Shutdown = shutdown,
            Cancelled = cancelled,
        };
    }

    /// <summary>The lock suite's types, plus lock_busted when <see cref="TortureOptions.Busted"/> asks for it even without the suite.</summary>
    private static IReadOnlyList<string> LockTypesToRun(TortureOptions options)
    {
        if (options.Suites.HasFlag(TortureSuites.Locks))
        {
            return TortureLockTypes.Resolve(options.LockTypes, options.Busted);
        }
        return options.Busted ? [TortureLockTypes.LockBusted] : [];
    }
}
