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
                int every = parse.GetValue(faultEvery);
                if (every < 0)
                {
                    throw new CliUsageException($"--fault-every {every}: must be 0 (off) or more");
                }
                options = new TortureOptions
                {
                    LockTypes = SplitList(parse.GetValue(types), "all"),
                    Suites = ParseSuites(SplitList(parse.GetValue(suites), "all")),
                    CpuCount = CliLimits.Cpus(parse.GetValue(cpus) ?? Math.Min(Environment.ProcessorCount, CliLimits.MaxCpus), "--cpus"),
                    Writers = parse.GetValue(writers) is { } w && (w < 1 || w > 4096) ? throw new CliUsageException($"--writers {w}: must be 1 to 4096") : parse.GetValue(writers),
                    Readers = parse.GetValue(readers) is { } r && (r < 0 || r > 4096) ? throw new CliUsageException($"--readers {r}: must be 0 to 4096") : parse.GetValue(readers),
                    Duration = Seconds(parse.GetValue(duration), "--duration"),
                    Stutter = Millis(parse.GetValue(stutter), "--stutter-ms"),
                    ShuffleInterval = Millis(parse.GetValue(shuffle), "--shuffle-ms"),
                    LongHold = Millis(parse.GetValue(longHold), "--long-hold-ms"),
                    LongHoldProbability = parse.GetValue(longHoldP) is var lp && lp is >= 0 and <= 1 ? lp : throw new CliUsageException($"--long-hold-probability {lp.ToString(CultureInfo.InvariantCulture)}: must be 0 to 1"),
                    Seed = parse.GetValue(seed),
                    Busted = parse.GetValue(busted),
                    FaultEvery = every > 0 ? every : checked((int)faultPlan.ThrowEvery),
                    Pinning = !parse.GetValue(noPin),
                };
                options.Validate();
                if (parse.GetValue(json) is { } jsonFile)
                {
                    OutputPaths.CheckFile("--json", jsonFile);
                }
            }
            catch (Exception e) when (e is FormatException or ArgumentException or CliUsageException)
            {
                // ArgumentException appends " (Parameter 'Name')": the option's own words are enough.
                string message = e is ArgumentException { ParamName: { } name } ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
                return CliApp.UsageError(message, "torture");
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
            int exit = report.Passed && faultsHeld ? ExitCodes.Passed : ExitCodes.CheckFailed;
            if (parse.GetValue(json) is { } jsonPath)
            {
                try
                {
                    Storm.Report.FileReports.CreateDirectoryOf(jsonPath);
                    File.WriteAllText(jsonPath, report.ToJson());
                    console.WriteLine($"JSON report: {jsonPath}");
                }
                catch (Exception e) when (OutputPaths.IsIo(e))
                {
                    CliApp.Error.WriteLine($"error: --json {jsonPath}: could not write: {e.Message}");
                    return exit == ExitCodes.Passed ? ExitCodes.OutputFailed : exit;
                }
            }
            return exit;
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
