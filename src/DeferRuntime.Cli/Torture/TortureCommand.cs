using System.CommandLine;
using System.Globalization;
using DeferRuntime.Cli.Storm;
using DeferRuntime.Cli.Storm.Faults;
using DeferRuntime.Torture;
using Spectre.Console;

namespace DeferRuntime.Cli.Torture;

/// <summary>
/// <c>deferrt torture</c>: locktorture's run of every lock type (and the tasklet, workqueue, per-CPU data
/// and shutdown-under-load suites) through <see cref="TortureRunner"/>, printed in locktorture's format.
/// Exit code 0 only when every check held; <c>--busted</c> adds lock_busted, which must fail.
/// </summary>
internal static class TortureCommand
{
    public static Command Create()
    {
        var types = new Option<string[]>("--types") { Description = $"Lock types, comma-separated, or all (default): {string.Join(", ", TortureLockTypes.Names)}", AllowMultipleArgumentsPerToken = true };
        var suites = new Option<string[]>("--suites") { Description = "Suites, comma-separated, or all (default): locks, tasklets, workqueues, percpu, shutdown", AllowMultipleArgumentsPerToken = true };
        var cpus = new Option<int?>("--cpus") { Description = "Virtual CPUs (default: the processor count)" };
        var writers = new Option<int?>("--writers") { Description = "nwriters_stress (default: 2x CPUs)" };
        var readers = new Option<int?>("--readers") { Description = "nreaders_stress for rwsem_lock (default: the CPU count)" };
        var duration = new Option<double>("--duration") { Description = "Seconds per test (default 2)", DefaultValueFactory = _ => 2 };
        var stutter = new Option<double>("--stutter-ms") { Description = "stutter: every this many ms all writers pause as long (default 250; 0 off)", DefaultValueFactory = _ => 250 };
        var shuffle = new Option<double>("--shuffle-ms") { Description = "shuffle_interval: ms between re-placements of the threads on CPUs (default 100; 0 off)", DefaultValueFactory = _ => 100 };
        var longHold = new Option<double>("--long-hold-ms") { Description = "long_hold: ms an occasional hold lasts (default 5; 0 off)", DefaultValueFactory = _ => 5 };
        var longHoldP = new Option<double>("--long-hold-probability") { Description = "Chance of a long hold per acquisition (default 1e-5)", DefaultValueFactory = _ => 1e-5 };
        var seed = new Option<int?>("--seed") { Description = "Seed of the random delays (default: random, printed)" };
        var busted = new Option<bool>("--busted") { Description = "Add lock_busted, a lock that does not exclude, and break a rule in percpu (a hard-IRQ counter under preempt_disable only): the run must report both failing (proves the checkers)" };
        var faultEvery = new Option<int>("--fault-every") { Description = "Tasklet callbacks, work functions and softirq handlers throw every Nth call (default 0: off)", DefaultValueFactory = _ => 0 };
        var faults = new Option<string[]>("--fault") { Description = "After the suites, run a fault test (repeatable, comma-separated): irq-none (the spurious detector must disable the line), self-raising-softirq (ksoftirqd must take over, work must progress), stuck-work (the stall watchdog must report it, other pools must run), throw-every=N (as --fault-every)", AllowMultipleArgumentsPerToken = true };
        var noPin = new Option<bool>("--no-pin") { Description = "Do not pin threads (shuffles then only move them between virtual CPUs)" };
        var json = new Option<string?>("--json") { Description = "Write the report as JSON to this file" };

        var command = new Command("torture", "locktorture-style runs of every lock type (writers 2x CPUs, stutter, shuffle, long holds; per-thread counts, '???' when max/2 > min, Fail count, '!!!' on failure), and the same for tasklets, workqueues, per-CPU data and shutdown under load. Exit 0 only when every check holds.")
        {
            types, suites, cpus, writers, readers, duration, stutter, shuffle, longHold, longHoldP, seed, busted, faultEvery, faults, noPin, json,
        };
        command.SetAction(parse =>
        {
            var console = CliApp.Console;
            TortureOptions options;
            FaultPlan faultPlan;
            try
            {
                faultPlan = FaultPlan.Parse(parse.GetValue(faults) ?? []);
                options = new TortureOptions
                {
                    LockTypes = SplitList(parse.GetValue(types), "all"),
                    Suites = ParseSuites(SplitList(parse.GetValue(suites), "all")),
                    CpuCount = parse.GetValue(cpus) ?? Environment.ProcessorCount,
                    Writers = parse.GetValue(writers),
                    Readers = parse.GetValue(readers),
                    Duration = Seconds(parse.GetValue(duration), "--duration"),
                    Stutter = Millis(parse.GetValue(stutter), "--stutter-ms"),
                    ShuffleInterval = Millis(parse.GetValue(shuffle), "--shuffle-ms"),
                    LongHold = Millis(parse.GetValue(longHold), "--long-hold-ms"),
                    LongHoldProbability = parse.GetValue(longHoldP),
                    Seed = parse.GetValue(seed),
                    Busted = parse.GetValue(busted),
                    FaultEvery = parse.GetValue(faultEvery) is > 0 and var every ? every : checked((int)faultPlan.ThrowEvery),
                    Pinning = !parse.GetValue(noPin),
                };
                options.Validate();
            }
            catch (Exception e) when (e is FormatException or ArgumentException)
            {
                console.WriteLine($"error: {e.Message}");
                return StormCommand.ExitUsage;
            }

            // Progress: one line per test as it starts (the report follows at the end), so a long run
            // shows where it is whether or not the output is a terminal.
            var progress = new SynchronousProgress(p =>
            {
                if (p.Elapsed == TimeSpan.Zero)
                {
                    console.WriteLine($"[{p.TestIndex + 1}/{p.TestCount}] {p.Test}: {p.Status}");
                }
            });
            var report = TortureRunner.Run(options, progress);
            console.WriteLine();
            console.Write(new Text(report.Render()));
            console.WriteLine();
            bool faultsHeld = FaultTorture.Run(faultPlan, options.CpuCount, console);
            if (parse.GetValue(json) is { } jsonPath)
            {
                File.WriteAllText(jsonPath, report.ToJson());
                console.WriteLine($"JSON report: {jsonPath}");
            }
            return report.Passed && faultsHeld ? 0 : StormCommand.ExitFailed;
        });
        return command;
    }

    private static string[] SplitList(string[]? values, string fallback)
    {
        var items = (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();
        return items.Length == 0 ? [fallback] : items;
    }

    private static TortureSuites ParseSuites(string[] names)
    {
        var suites = TortureSuites.None;
        foreach (var name in names)
        {
            suites |= name.ToLowerInvariant() switch
            {
                "all" => TortureSuites.All,
                "locks" => TortureSuites.Locks,
                "tasklets" => TortureSuites.Tasklets,
                "workqueues" => TortureSuites.Workqueues,
                "percpu" => TortureSuites.PerCpu,
                "shutdown" => TortureSuites.Shutdown,
                _ => throw new FormatException($"--suites: unknown suite '{name}' (locks, tasklets, workqueues, percpu, shutdown or all)"),
            };
        }
        return suites;
    }

    private static TimeSpan Seconds(double value, string option) =>
        double.IsFinite(value) && value > 0 ? TimeSpan.FromSeconds(value) : throw new FormatException($"{option} must be a positive number of seconds, not {value.ToString(CultureInfo.InvariantCulture)}");

    private static TimeSpan Millis(double value, string option) =>
        double.IsFinite(value) && value >= 0 ? TimeSpan.FromMilliseconds(value) : throw new FormatException($"{option} must be 0 (off) or a positive number of milliseconds, not {value.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; would post to the thread pool, out of order).</summary>
    private sealed class SynchronousProgress(Action<TortureProgress> report) : IProgress<TortureProgress>
    {
        public void Report(TortureProgress value) => report(value);
    }
}
